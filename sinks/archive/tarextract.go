package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/dlflow/dlflow/pipeline"
)

// How a tar.extract sink treats device and FIFO members.
const (
	SpecialsFail = "fail"
	SpecialsSkip = "skip"
)

// TarExtractConfig configures a tar.extract sink.
type TarExtractConfig struct {
	Dir       string            `koanf:"dir" help:"directory to unpack into; default: the run's output (--extract DIR)"`
	Overwrite bool              `koanf:"overwrite" help:"replace an existing directory, once the whole archive is unpacked"`
	Fsync     bool              `koanf:"fsync" help:"make every file and directory durable before the directory appears"`
	Specials  string            `koanf:"specials" help:"device and FIFO members: fail (the run fails) or skip (with a warning)"`
	MaxSize   pipeline.ByteSize `koanf:"max_size" help:"most bytes the archive's files may add up to; 0: no limit"`
	Writers   int               `koanf:"writers" help:"goroutines creating a tar's small files (up to 256KiB) while the stream is read on; 0 or 1: one goroutine does all"`
}

// TarExtract is the tar.extract stage: it unpacks a tar stream (ordered
// bytes, typically from a decompress stage) into a directory as the bytes
// arrive, with no archive on disk. Its guarantees:
//
//   - DIR appears complete or not at all. Members go into a fresh
//     directory next to DIR (".NAME.tmp-RANDOM", made in Start); after a
//     successful run Finish fsyncs what it holds (with fsync: true, the
//     default: syncfs on Linux, each file and directory elsewhere), and
//     Commit renames it to DIR and fsyncs DIR's parent. A run that fails,
//     or is cancelled, removes it: there is no resume for an extraction,
//     since a rerun must read the archive from its start anyway.
//   - An existing DIR is an error (an *OutputExistsError, found by
//     Preflight before any network I/O and again at the rename, which
//     never replaces a DIR that appeared during the run). With overwrite,
//     an existing directory DIR is replaced only in Commit: swapped with
//     the new one in one step on Linux (RENAME_EXCHANGE), elsewhere moved
//     aside and the new one renamed in; the old one is then removed.
//   - A run holds a lock on its temporary directory (and zip spool); the
//     next run on DIR removes those of killed runs, which hold none (see
//     collectLeftovers). Removal holds at most two file descriptors
//     whatever the tree's depth (removeTree).
//   - Members are untrusted input, and nothing is written outside DIR.
//     Refused, with a *MemberError naming the member that wraps
//     ErrUnsafeMember: an absolute name, a name that climbs out with "..",
//     a symlink whose target is absolute or resolves (from the member's
//     directory) outside DIR, a hard link to a name that is not a regular
//     file already extracted, and any member below a symlink the archive
//     made ("evil -> .." then "evil/pwned.txt"). Every file operation also
//     goes through an os.Root on the temporary directory, which refuses
//     any path that resolves outside it.
//   - Devices and FIFOs fail the run (specials: fail, the default) or are
//     skipped with a warning (specials: skip); they are never created.
//   - Modes keep only the permission bits, less group and other write
//     (0o777 becomes 0o755, 0o666 0o644): no setuid, setgid or sticky
//     bit. Directories keep at least rwx for their owner, so that DIR can
//     be removed; a directory member's mode is set when it is made (the
//     last one's, for a directory given twice), DIR's own at the end. File
//     modification times are the archive's. Owners are not restored.
//   - Sizes are counted: the files' bytes may not exceed max_size (when
//     set), and a member whose data ends early fails the run. A sparse
//     member's holes stay holes (copyData). Bombs are the decompress
//     stage's to stop (max_ratio).
//   - The archive must end with its end marker when the server sent no
//     length: an archive cut at a member boundary fails (checkEnd).
//   - Time is linear in a member name's length, however deep, a cancel
//     is seen between reads and every few hundred directories made, and
//     messages show long names shortened (shortName).
//
// A member that names an existing file replaces it (the archive's last
// word wins, as with tar); a directory is never replaced by a non-directory.
// Symlink targets are stored cleaned ("./a/../b" becomes "b").
//
// A zip archive (told by its first bytes) cannot be unpacked as it
// arrives: its index comes last. The sink spools it to a temporary file
// next to DIR (".NAME.zip-RANDOM", removed when the run ends), then unpacks
// it with the same rules; see zipextract.go.
//
// The sink runs with one worker, which reads the stream. With writers
// (4 by default), members of up to 256 KiB are read into memory and their
// files made by that many goroutines while the stream is read on, a
// directory's by one of them at a time (see tarwriters.go; the order an
// archive relies on is kept). It holds one
// copy buffer and the writers' buffers (Memory).
type TarExtract struct {
	dir       string
	overwrite bool
	fsync     bool
	specials  string
	maxSize   int64
	writers   int

	// Set by Start, used by Run, Finish and Commit.
	tmp      string    // the temporary directory, "" when there is none
	root     *os.Root  // on tmp, during the run
	lock     *os.File  // tmp, open and locked while it is this run's
	tree     *pathTree // directories made or found, and symlinks made
	dirModes map[string]fs.FileMode
	files    int64
	bytes    int64
	ready    bool      // Finish synced tmp; Commit may rename it
	w        *writers  // during Run of a tar with writers > 1, else nil
	dirs     *dirCache // during Run of a tar, else nil
}

// copyBufferSize is the sink's buffer between the archive and the files.
const copyBufferSize = 256 << 10

// peekSize is the read-ahead that tells a zip from a tar; reads past it go
// straight through.
const peekSize = 4 << 10

var tarExtractDef = pipeline.Def[TarExtractConfig]{
	Type:     "tar.extract",
	Provides: []pipeline.Capability{pipeline.ProvidesExtract},
	Summary:  "unpacks a tar stream into a directory that appears when complete",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	Defaults: TarExtractConfig{Fsync: true, Specials: SpecialsFail, Writers: DefaultWriters},
	New: func(c TarExtractConfig) (pipeline.Stage, error) {
		if c.Dir == "" {
			return nil, errors.New("no directory: set config dir or the run's output")
		}
		if base := filepath.Base(filepath.Clean(c.Dir)); base == "." || base == ".." || base == string(filepath.Separator) {
			return nil, fmt.Errorf("dir %q names no new directory: give the name of the directory to create", c.Dir)
		}
		if c.Specials != SpecialsFail && c.Specials != SpecialsSkip {
			return nil, fmt.Errorf("specials must be fail or skip, got %q", c.Specials)
		}
		if c.MaxSize < 0 {
			return nil, fmt.Errorf("max_size must not be negative, got %v", c.MaxSize)
		}
		if c.Writers < 0 || c.Writers > 64 {
			return nil, fmt.Errorf("writers must be from 0 to 64, got %d", c.Writers)
		}
		return &TarExtract{dir: filepath.Clean(c.Dir), overwrite: c.Overwrite, fsync: c.Fsync, specials: c.Specials,
			maxSize: int64(c.MaxSize), writers: c.Writers}, nil
	},
	Memory: func(c TarExtractConfig) pipeline.Memory {
		return pipeline.Memory{PerReplica: copyBufferSize + peekSize + writerMemory(c.Writers)}
	},
	MaxWorkers: func(TarExtractConfig) (int, string) { return 1, "a tar stream is read in order" },
}

// init registers tar.extract in pipeline.DefaultRegistry: importing the
// package is what makes the stage type known, as importing a database/sql
// driver makes it known. A second registration of the name panics.
func init() { pipeline.MustRegister(pipeline.DefaultRegistry, tarExtractDef) }

// Register adds the tar.extract stage type to r, for a program that builds
// its graphs from a registry of its own instead of
// pipeline.DefaultRegistry. It fails when r has the name already.
func Register(r *pipeline.Registry) error { return pipeline.Register(r, tarExtractDef) }

// TakeSettings fills an unset dir from the run's output and takes the
// run's overwrite.
func (c *TarExtractConfig) TakeSettings(s pipeline.Settings) {
	if c.Dir == "" {
		c.Dir = s.Output
	}
	c.Overwrite = c.Overwrite || s.Overwrite
}

var (
	_ pipeline.SettingsTaker = (*TarExtractConfig)(nil)
	_ pipeline.Preflighter   = (*TarExtract)(nil)
	_ pipeline.Starter       = (*TarExtract)(nil)
	_ pipeline.Finisher      = (*TarExtract)(nil)
	_ pipeline.Committer     = (*TarExtract)(nil)
)

// Dir is the directory the sink unpacks into.
func (s *TarExtract) Dir() string { return s.dir }

// Files and Bytes count the regular files and their bytes unpacked by the
// current (or last) run.
func (s *TarExtract) Files() int64 { return s.files }

// Bytes is the size of the files unpacked by the current (or last) run.
func (s *TarExtract) Bytes() int64 { return s.bytes }

// Run unpacks the tar stream of its input; see TarExtract.
func (s *TarExtract) Run(ctx context.Context, env *pipeline.Env, io_ pipeline.IO) error {
	in := pipeline.NewReader(ctx, io_)
	defer in.Close()
	buf := env.Buffers.Pool(copyBufferSize).Get(0)
	defer buf.Release()
	br := bufio.NewReaderSize(in, peekSize)
	if head, _ := br.Peek(4); isZip(head) {
		return s.unzip(ctx, env, br, buf.Data)
	}
	s.dirs = newDirCache()
	if s.writers > 1 {
		s.w = newWriters(ctx, s.writers)
	}
	defer func() {
		if s.w != nil {
			_ = s.w.close() // after a failure: Finish may remove nothing a writer still writes
			s.w = nil
		}
		s.closeDirs()
	}()
	er := &endReader{r: br}
	tr := tar.NewReader(er)
	last := ""
	for {
		hdr, err := tr.Next()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, io.EOF):
			if err := s.w.closeIfAny(); err != nil {
				return err
			}
			if err := s.checkEnd(env, er, last); err != nil {
				return err
			}
			env.Log.Debug().Int64("files", s.files).Int64("bytes", s.bytes).Msg("archive unpacked")
			return nil
		case err != nil && !errors.Is(err, tar.ErrInsecurePath): // memberPath words that one
			if last == "" {
				return fmt.Errorf("not a tar archive, or a damaged one: %w", err)
			}
			return fmt.Errorf("tar archive damaged or cut short after member %q: %w", shortName(last), err)
		}
		last = hdr.Name
		if err := s.member(ctx, env, hdr, &tarData{tr, er}, buf.Data); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if me := (*MemberError)(nil); errors.As(err, &me) {
				return err // a writer's, about an earlier member
			}
			return &MemberError{Member: hdr.Name, Err: err}
		}
	}
}

// member unpacks one member.
func (s *TarExtract) member(ctx context.Context, env *pipeline.Env, hdr *tar.Header, r io.Reader, buf []byte) error {
	name, err := memberPath(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			s.dirModes["."] = dirMode(hdr)
			return nil
		}
		return unsafeMember("a %s in place of the directory itself", typeName(hdr.Typeflag))
	}
	if err := s.belowSymlink(name); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return s.mkdir(ctx, name, hdr)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return s.file(ctx, name, hdr, r, buf)
	case tar.TypeSymlink:
		target, err := symlinkTarget(name, hdr.Linkname)
		if err != nil {
			return err
		}
		if err := s.clear(ctx, name); err != nil {
			return err
		}
		if err := s.root.Symlink(target, name); err != nil {
			return err
		}
		s.tree.node(name, true).symlink = true
		return nil
	case tar.TypeLink:
		return s.link(ctx, name, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if s.specials == SpecialsSkip {
			env.Log.Warn().Str("member", shortName(hdr.Name)).Str("type", typeName(hdr.Typeflag)).Msg("skipped: an archive may not create device or FIFO files")
			return nil
		}
		return unsafeMember("%s: an archive may not create device or FIFO files", typeName(hdr.Typeflag))
	case tar.TypeXGlobalHeader:
		return nil // PAX records for the members that follow; archive/tar applies them
	}
	return fmt.Errorf("unsupported member type %q", hdr.Typeflag)
}

// belowSymlink refuses a name under a symlink the archive made: writing
// through it would put the member wherever the link points.
func (s *TarExtract) belowSymlink(name string) error {
	if p := s.tree.symlinkAbove(name); p != "" {
		return unsafeMember("its parent %q is a symlink", shortName(p))
	}
	return nil
}

// mkdirParents makes the missing directories above name. It remembers
// the directories it made, which stay directories (clear never removes
// one), so that the members of a directory cost no MkdirAll each: it
// resolves every component of the path, a system call or more apiece.
// Both the lookup and the making take time linear in the name's length,
// and a cancel stops the making within a few hundred directories.
func (s *TarExtract) mkdirParents(ctx context.Context, name string) error {
	dir := path.Dir(name)
	if s.tree.dirsUpTo(dir) {
		return nil
	}
	// A writer may be creating a file where a directory is to be made.
	if err := s.w.settleAll(); err != nil {
		return err
	}
	if err := mkdirAllAt(ctx, s.root, dir); err != nil {
		return err
	}
	s.tree.markDirs(dir)
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}

// mkdirAllAt is root.MkdirAll(dir, 0o755) one directory at a time, each
// made in the one above it through a root of its own (at most two open
// at once), with ctx checked every 256 directories.
func mkdirAllAt(ctx context.Context, root *os.Root, dir string) error {
	r := root
	defer func() {
		if r != root {
			r.Close()
		}
	}()
	for i, rest := 0, dir; rest != ""; i++ {
		c, after, _ := strings.Cut(rest, "/")
		rest = after
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := r.Mkdir(c, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		next, err := r.OpenRoot(c)
		if err != nil {
			return err
		}
		if r != root {
			r.Close()
		}
		r = next
	}
	return nil
}

func (s *TarExtract) mkdir(ctx context.Context, name string, hdr *tar.Header) error {
	if err := s.w.settle(name); err != nil {
		return err
	}
	if err := s.mkdirParents(ctx, name); err != nil {
		return err
	}
	d, base, err := s.parent(name)
	if err != nil {
		return err
	}
	st, err := d.root.Lstat(base)
	switch {
	case err == nil && st.IsDir():
	case err == nil || !errors.Is(err, fs.ErrNotExist):
		if err := s.clear(ctx, name); err != nil {
			return err
		}
		fallthrough
	default:
		if err := d.root.Mkdir(base, 0o700); err != nil {
			return err
		}
	}
	// Its mode now, through its parent (one name to resolve): it keeps
	// rwx for its owner, so the members below it still go in; a path
	// from the root at the end would cost a system call per component.
	if err := d.root.Chmod(base, dirMode(hdr)); err != nil {
		return err
	}
	s.tree.markDirs(name)
	return nil
}

// clear makes room for a non-directory member at name: it makes the
// parents, and removes a file or symlink an earlier member left there. A
// directory in the way is an error: replacing it could turn a directory
// that later members climb through into a symlink.
func (s *TarExtract) clear(ctx context.Context, name string) error {
	if err := s.w.settle(name); err != nil { // an earlier member of that name
		return err
	}
	if err := s.mkdirParents(ctx, name); err != nil {
		return err
	}
	d, base, err := s.parent(name)
	if err != nil {
		return err
	}
	st, err := d.root.Lstat(base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("a directory of that name is already there")
	}
	if n := s.tree.node(name, false); n != nil {
		n.symlink = false
	}
	return d.root.Remove(base)
}

func (s *TarExtract) file(ctx context.Context, name string, hdr *tar.Header, r io.Reader, buf []byte) error {
	if hdr.Size < 0 {
		return fmt.Errorf("negative size %d", hdr.Size)
	}
	if s.maxSize > 0 && s.bytes+hdr.Size > s.maxSize {
		return fmt.Errorf("the files add up to more than max_size (%v)", pipeline.ByteSize(s.maxSize))
	}
	if err := s.clear(ctx, name); err != nil {
		return err
	}
	mode := fileMode(hdr)
	d, base, err := s.parent(name)
	if err != nil {
		return err
	}
	if s.w != nil && hdr.Size <= writerJobMax && !isSparse(hdr) {
		return s.submitFile(d, base, name, hdr, r, mode)
	}
	// O_EXCL: never through a symlink, never into a file it did not make.
	f, err := d.root.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	n, err := copyData(ctx, f, r, isSparse(hdr), buf)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("got %d of its %d bytes", n, hdr.Size)
	}
	if err == nil {
		err = f.Chmod(mode) // the mode asked, whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.files++
	s.bytes += n
	if !hdr.ModTime.IsZero() {
		_ = d.root.Chtimes(base, hdr.ModTime, hdr.ModTime) // a time it cannot set does not spoil the file
	}
	return nil
}

// onlyWriter hides os.File's ReadFrom, whose generic path allocates a
// buffer per file: io.CopyBuffer then uses the sink's.
type onlyWriter struct{ w io.Writer }

func (w onlyWriter) Write(p []byte) (int, error) { return w.w.Write(p) }

func (s *TarExtract) link(ctx context.Context, name string, hdr *tar.Header) error {
	if err := s.w.settleAll(); err != nil { // the target may be a writer's
		return err
	}
	target, err := memberPath(hdr.Linkname)
	if err != nil {
		return linkError(hdr.Linkname, err)
	}
	if err := s.belowSymlink(target); err != nil {
		return linkError(hdr.Linkname, err)
	}
	st, err := s.root.Lstat(target)
	if err != nil || !st.Mode().IsRegular() {
		return unsafeMember("hard link to %q, which is not a file extracted before it", hdr.Linkname)
	}
	if target == name {
		return nil // a link to itself: it is there
	}
	if err := s.clear(ctx, name); err != nil {
		return err
	}
	return s.root.Link(target, name)
}
