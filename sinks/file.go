package sinks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/dlflow/dlflow/pipeline"
	"golang.org/x/sys/unix"
)

// FileSink is the file.sink stage: it writes the download into PATH.tmp and
// renames it to PATH once the whole run succeeded. Its guarantees:
//
//   - PATH appears only by an atomic rename of PATH.tmp, after PATH.tmp was
//     checked complete and fsynced (with fsync: true, the default).
//   - On any failure nothing is created at PATH, and PATH.tmp is kept with
//     the bytes received so far (in sequential mode it is truncated to them,
//     so it is an exact prefix of the resource).
//   - An existing PATH is never replaced without Overwrite, even one that
//     appears while the download runs (rename with RENAME_NOREPLACE).
//   - A symlink at PATH.tmp is never followed nor removed: the run is refused.
//
// In sequential mode the sink takes ordered bytes and writes them as one
// stream, so it must run with one worker. In positional mode it takes bytes in
// any order and writes each chunk at its offset; any number of workers may
// share one file.
type FileSink struct {
	path, tmp   string
	positional  bool
	overwrite   bool
	fsync       bool
	preallocate bool

	// Set by Start, before any replica runs; read-only during Run.
	file *os.File
	fd   int
	size int64 // Resource.Size, or -1 when unknown

	written atomic.Int64
	next    int64 // sequential mode: the offset the next chunk must start at
	ready   bool  // Finish verified and synced the file; Commit may rename it
}

// FileConfig configures a file.sink.
type FileConfig struct {
	Path        string `koanf:"path" help:"file to write; filled from the top-level output (or -o) when unset"`
	Mode        string `koanf:"mode" help:"sequential (ordered bytes, one stream) or positional (bytes at their offsets, any workers)"`
	Overwrite   bool   `koanf:"overwrite" help:"replace an existing output file instead of refusing to run"`
	Fsync       bool   `koanf:"fsync" help:"fsync the file and its directory before the output appears"`
	Preallocate bool   `koanf:"preallocate" help:"reserve the whole file up front when the size is known"`
}

// The modes of a file.sink.
const (
	ModeSequential = "sequential"
	ModePositional = "positional"
)

// ErrOutputExists is what a file sink's error wraps when the output is
// already there and Overwrite is off. Test for it with errors.Is.
var ErrOutputExists = errors.New("output exists")

// OutputExistsError names the output that is in the way; it wraps
// ErrOutputExists.
type OutputExistsError struct {
	Path string
}

func (e *OutputExistsError) Error() string {
	return fmt.Sprintf("output %s exists; pass --overwrite to replace it", e.Path)
}

func (e *OutputExistsError) Unwrap() error { return ErrOutputExists }

// writebackEvery is how much newly written data makes the sink start its
// writeback (sync_file_range), so that the final fsync finds little left to
// flush.
const writebackEvery = 8 << 20

var fileDef = pipeline.Def[FileConfig]{
	Type:     "file.sink",
	Summary:  "writes the download into OUTPUT.tmp and renames it to OUTPUT when complete",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	Defaults: FileConfig{Mode: ModeSequential, Fsync: true, Preallocate: true},
	Ports: func(c FileConfig) (pipeline.Flow, pipeline.Flow) {
		if c.Mode == ModePositional {
			return pipeline.Bytes, pipeline.None
		}
		return pipeline.OrderedBytes, pipeline.None
	},
	New: func(c FileConfig) (pipeline.Stage, error) {
		if c.Path == "" {
			return nil, errors.New("path is required (set output: or -o)")
		}
		switch c.Mode {
		case ModeSequential, ModePositional, "":
		default:
			return nil, fmt.Errorf("mode must be %q or %q, got %q", ModeSequential, ModePositional, c.Mode)
		}
		path := filepath.Clean(c.Path)
		return &FileSink{
			path:        path,
			tmp:         path + ".tmp",
			positional:  c.Mode == ModePositional,
			overwrite:   c.Overwrite,
			fsync:       c.Fsync,
			preallocate: c.Preallocate,
		}, nil
	},
	Memory: func(FileConfig) pipeline.Memory { return pipeline.Memory{} },
}

func init() { builtin(fileDef.Spec()) }

// Path is the output the sink writes; Path()+".tmp" is the file it fills.
func (s *FileSink) Path() string { return s.path }

// Bytes is the number of bytes written to PATH.tmp in the current (or last)
// run.
func (s *FileSink) Bytes() int64 { return s.written.Load() }

// Preflight refuses a run that cannot end well, before any network I/O: the
// output's directory must exist and take a new file, the output must not
// exist (unless Overwrite) nor be a directory, and PATH.tmp must not be a
// symlink.
func (s *FileSink) Preflight(env *pipeline.Env) error {
	dir := filepath.Dir(s.path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output directory %s is not a directory", dir)
	}
	if err := s.checkOutput(); err != nil {
		return err
	}
	// A real probe, not access(2): it also catches read-only mounts, ACLs,
	// quotas and full inode tables.
	probe, err := os.CreateTemp(dir, ".dlflow-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	name := probe.Name()
	cerr := probe.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("output directory %s: remove probe file: %w", dir, err)
	}
	if cerr != nil {
		return fmt.Errorf("output directory %s: %w", dir, cerr)
	}
	return nil
}

// checkOutput reports what is in the way at PATH and PATH.tmp.
func (s *FileSink) checkOutput() error {
	st, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case st.IsDir():
		return fmt.Errorf("output %s is a directory; name a file", s.path)
	case st.Mode()&fs.ModeSymlink == 0 && !st.Mode().IsRegular():
		// A rename would replace a device or a pipe, such as /dev/null.
		return fmt.Errorf("output %s is not a regular file", s.path)
	case !s.overwrite:
		return &OutputExistsError{Path: s.path}
	}
	if st, err := os.Lstat(s.tmp); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return symlinkError(s.tmp)
	}
	return nil
}

func symlinkError(path string) error {
	return fmt.Errorf("%s is a symlink; refusing to follow it (remove it and run again)", path)
}

// Start creates PATH.tmp exclusively and preallocates it when the size is
// known. A stale regular PATH.tmp is removed first, because this sink does
// not resume yet. On error nothing is left open, and a PATH.tmp that Start
// created is removed (it holds no data).
func (s *FileSink) Start(ctx context.Context, env *pipeline.Env) error {
	s.file, s.fd, s.next, s.ready = nil, -1, 0, false
	s.written.Store(0)
	s.size = -1
	if env.Resource.SizeKnown() {
		s.size = env.Resource.Size
	}
	if err := s.checkOutput(); err != nil {
		return err
	}

	f, err := s.create(env)
	if err != nil {
		return err
	}
	fd := int(f.Fd())
	if s.preallocate && s.size > 0 {
		err := unix.Fallocate(fd, 0, 0, s.size)
		if err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			f.Close()
			os.Remove(s.tmp)
			return fmt.Errorf("preallocate %d bytes for %s: %w", s.size, s.tmp, err)
		}
	}
	s.file, s.fd = f, fd
	return nil
}

func (s *FileSink) create(env *pipeline.Env) (*os.File, error) {
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	f, err := os.OpenFile(s.tmp, flags, 0o644)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return f, err
	}
	// O_EXCL fails on any existing name, symlinks included, without
	// following them; look at what is there.
	st, lerr := os.Lstat(s.tmp)
	switch {
	case lerr != nil:
		return nil, err
	case st.Mode()&fs.ModeSymlink != 0:
		return nil, symlinkError(s.tmp)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s exists and is not a regular file", s.tmp)
	}
	env.Log.Warn().Str("path", s.tmp).Int64("bytes", st.Size()).
		Msg("removing a partial download left by an earlier run; this sink does not resume yet")
	if err := os.Remove(s.tmp); err != nil {
		return nil, err
	}
	return os.OpenFile(s.tmp, flags, 0o644)
}

// Run writes the chunks it receives into PATH.tmp and releases them. In
// sequential mode a chunk that does not start where the previous one ended
// is an error (a bug upstream), as is a second replica.
func (s *FileSink) Run(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
	if s.file == nil {
		return errors.New("file sink: Run without a successful Start")
	}
	if !s.positional && io.Replica > 0 {
		return errors.New("sequential mode writes one stream; set workers: 1, or mode: positional to write in parallel")
	}
	var wb writeback
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c, ok := <-io.Chunks:
			if !ok {
				return nil
			}
			err := s.write(c)
			n := int64(len(c.Data))
			off := c.Offset
			c.Release()
			if err != nil {
				return err
			}
			if s.fsync {
				wb.add(s.fd, off, n)
			}
		}
	}
}

func (s *FileSink) write(c pipeline.Chunk) error {
	if c.Offset < 0 {
		return fmt.Errorf("chunk at negative offset %d", c.Offset)
	}
	if s.size >= 0 && c.End() > s.size {
		return fmt.Errorf("chunk [%d,%d) ends past the resource size %d", c.Offset, c.End(), s.size)
	}
	var n int
	var err error
	if s.positional {
		n, err = s.file.WriteAt(c.Data, c.Offset)
	} else {
		if c.Offset != s.next {
			return fmt.Errorf("out-of-order bytes: chunk starts at %d, expected %d (a bug in the stage feeding the sink)", c.Offset, s.next)
		}
		n, err = s.file.Write(c.Data)
		s.next += int64(n)
	}
	s.written.Add(int64(n))
	return err
}

// writeback starts the kernel's writeback of what one replica wrote, every
// writebackEvery bytes, over the span its recent chunks covered. It is a
// hint: errors are ignored, the final fsync reports any real I/O error.
type writeback struct {
	lo, hi, pending int64
}

func (w *writeback) add(fd int, off, n int64) {
	if w.pending == 0 {
		w.lo, w.hi = off, off+n
	} else {
		w.lo, w.hi = min(w.lo, off), max(w.hi, off+n)
	}
	w.pending += n
	if w.pending < writebackEvery {
		return
	}
	_ = unix.SyncFileRange(fd, w.lo, w.hi-w.lo, unix.SYNC_FILE_RANGE_WRITE)
	w.pending = 0
}

// Finish closes PATH.tmp. After a successful run it first checks that every
// byte of the resource was written and fsyncs the file; only then may Commit
// rename it. After a failure it keeps PATH.tmp as partial data.
func (s *FileSink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	f := s.file
	if f == nil {
		return nil
	}
	s.file, s.fd = nil, -1
	written := s.written.Load()

	err := runErr
	if err == nil {
		err = s.complete(f, written)
	} else if !s.positional {
		// Preallocation made the file longer than the data; cut it so that
		// PATH.tmp is exactly the prefix that was received.
		_ = f.Truncate(written)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		env.Log.Info().Str("path", s.tmp).Int64("bytes", written).Msg("kept partial download")
		if runErr != nil {
			return nil // the run already reports its error
		}
		return err
	}
	s.ready = true
	return nil
}

func (s *FileSink) complete(f *os.File, written int64) error {
	if s.size >= 0 && written != s.size {
		if !s.positional {
			_ = f.Truncate(written)
		}
		return fmt.Errorf("incomplete: wrote %d of %d bytes", written, s.size)
	}
	if s.size < 0 && !s.positional {
		if err := f.Truncate(written); err != nil {
			return err
		}
	}
	if s.fsync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// Commit renames PATH.tmp to PATH and, with fsync on, fsyncs the directory
// so that the rename is durable. Without Overwrite an output that appeared
// during the run is left alone and the error wraps ErrOutputExists.
func (s *FileSink) Commit(ctx context.Context, env *pipeline.Env) error {
	if !s.ready {
		return errors.New("file sink: Commit without a successful Finish")
	}
	s.ready = false
	if err := s.rename(); err != nil {
		return err
	}
	if s.fsync {
		if err := syncDir(filepath.Dir(s.path)); err != nil {
			return err
		}
	}
	env.Log.Debug().Str("path", s.path).Int64("bytes", s.written.Load()).Msg("output complete")
	return nil
}

func (s *FileSink) rename() error {
	if s.overwrite {
		return os.Rename(s.tmp, s.path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, s.tmp, unix.AT_FDCWD, s.path, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return &OutputExistsError{Path: s.path}
	case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS):
		return &os.LinkError{Op: "rename", Old: s.tmp, New: s.path, Err: err}
	}
	// No renameat2 here: a hard link also refuses an existing name.
	if err := os.Link(s.tmp, s.path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &OutputExistsError{Path: s.path}
		}
		return err
	}
	return os.Remove(s.tmp)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
