package bench

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The archive formats of the extract scenario, as the cells name them.
const (
	FormatGzip = "tar.gz"
	FormatZstd = "tar.zst"
)

// ArchiveFormats are the formats each dlflow cell of the extract scenario
// runs with.
var ArchiveFormats = []string{FormatGzip, FormatZstd}

// The trees of the extract scenario (Options.Tree); any other value is a
// directory to tar.
const (
	TreeAuto      = ""          // goroot when suitable, else generated
	TreeGoroot    = "goroot"    // `go env GOROOT`: a real tree of ~15,000 files
	TreeGenerated = "generated" // Options.TreeFiles small files and 4 of Options.TreeLarge
)

// Defaults of the generated tree.
const (
	DefaultTreeFiles = 20000    // small files, 0 to 200 KiB (8 KiB on average)
	DefaultTreeLarge = 24 << 20 // bytes of each of the 4 large files
)

// treeSource is a tree to archive: entries in archive order (a directory
// before what it holds), paths under one top directory.
type treeSource struct {
	desc string // for the scenario's heading
	key  string // names the tree's contents: archives built for the same key are reused
	each func(yield func(e treeEntry, content io.Reader) error) error
}

// chooseTree picks the extract scenario's tree: Options.Tree, where auto
// is GOROOT (a real tree: thousands of small sources, a few large
// binaries) when `go env GOROOT` names one of 5,000 files or more and at
// most 1 GiB, else the generated tree.
func chooseTree(o Options) (treeSource, error) {
	switch o.Tree {
	case TreeGenerated:
		return generatedTree(o.TreeFiles, int64(o.TreeLarge)), nil
	case TreeGoroot, TreeAuto:
		root, err := goroot()
		if err == nil {
			var src treeSource
			if src, err = dirTree(root, "go", "GOROOT "+root); err == nil {
				return src, nil
			}
		}
		if o.Tree == TreeGoroot {
			return treeSource{}, fmt.Errorf("goroot tree: %w", err)
		}
		return generatedTree(o.TreeFiles, int64(o.TreeLarge)), nil
	}
	return dirTree(o.Tree, filepath.Base(o.Tree), o.Tree)
}

// goroot is `go env GOROOT`, when it holds between 5,000 files and 1 GiB.
func goroot() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	root := strings.TrimSpace(string(out))
	var files, bytes int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		files, bytes = files+1, bytes+fi.Size()
		return err
	})
	switch {
	case err != nil:
		return "", err
	case files < 5000 || bytes > 1<<30:
		return "", fmt.Errorf("%s: %d files of %d bytes, want 5,000 files or more and at most 1 GiB", root, files, bytes)
	}
	return root, nil
}

// dirTree archives the directory root under the top directory top. Modes
// lose what an extraction drops (setuid, setgid, sticky, group and other
// write), so that every extractor must give the same tree; a hard link is
// archived as a file, anything but a file, directory or symlink is an
// error.
func dirTree(root, top, name string) (treeSource, error) {
	var files, bytes int64
	var newest time.Time
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			files, bytes = files+1, bytes+fi.Size()
		}
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
		return nil
	})
	if err != nil {
		return treeSource{}, err
	}
	src := treeSource{
		desc: fmt.Sprintf("%s, %d files, %v", name, files, mib(bytes)),
		key:  fmt.Sprintf("dir %s %d %d %d", root, files, bytes, newest.UnixNano()),
	}
	src.each = func(yield func(treeEntry, io.Reader) error) error {
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return yieldPath(root, top, p, yield)
		})
	}
	return src, nil
}

// yieldPath yields the file, directory or symlink p of the tree root.
func yieldPath(root, top, p string, yield func(treeEntry, io.Reader) error) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return err
	}
	e := treeEntry{Path: path.Join(top, filepath.ToSlash(rel)), Mode: fi.Mode()&fs.ModeType | fi.Mode().Perm()&^0o022}
	switch {
	case fi.IsDir():
		return yield(e, nil)
	case fi.Mode()&fs.ModeSymlink != 0:
		if e.Sum, err = os.Readlink(p); err != nil {
			return err
		}
		return yield(e, nil)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: neither a file, a directory nor a symlink (%v)", p, fi.Mode())
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	e.Size = fi.Size()
	return yield(e, io.LimitReader(f, e.Size))
}

// generatedTree is files small files (most under 4 KiB, some to 200 KiB,
// text that compresses about 3 times) in directories of 100, and 4 large
// files of large bytes (half text, half random: a binary's mix), all from
// a fixed seed.
func generatedTree(files int, large int64) treeSource {
	src := treeSource{
		desc: fmt.Sprintf("generated tree, %d files and 4 of %v", files, mib(large)),
		key:  fmt.Sprintf("generated v2 %d %d", files, large),
	}
	src.each = func(yield func(treeEntry, io.Reader) error) error {
		// Sizes and contents come from streams of their own, so that the
		// sizes do not depend on how much content was read.
		r, text := rand.New(rand.NewPCG(seed, 1)), rand.New(rand.NewPCG(seed, 100))
		dir := func(p string) treeEntry { return treeEntry{Path: p, Mode: fs.ModeDir | 0o755} }
		for _, d := range []string{"tree", "tree/big"} {
			if err := yield(dir(d), nil); err != nil {
				return err
			}
		}
		for i := range 4 {
			e := treeEntry{Path: fmt.Sprintf("tree/big/%d.bin", i), Mode: 0o755, Size: large}
			if err := yield(e, &textReader{r: rand.New(rand.NewPCG(seed, uint64(i)+2)), left: large, random: true}); err != nil {
				return err
			}
		}
		for i := range files {
			if i%100 == 0 {
				if err := yield(dir(fmt.Sprintf("tree/d%03d", i/100)), nil); err != nil {
					return err
				}
			}
			e := treeEntry{Path: fmt.Sprintf("tree/d%03d/f%05d.txt", i/100, i), Mode: 0o644, Size: smallSize(r)}
			if i%10 == 0 {
				e.Mode = 0o755
			}
			if err := yield(e, &textReader{r: text, left: e.Size}); err != nil {
				return err
			}
		}
		return nil
	}
	return src
}

// smallSize is a small file's size: 70% under 4 KiB, 27% 4 to 24 KiB, 3%
// 24 to 200 KiB.
func smallSize(r *rand.Rand) int64 {
	switch p := r.IntN(100); {
	case p < 70:
		return r.Int64N(4 << 10)
	case p < 97:
		return 4<<10 + r.Int64N(20<<10)
	}
	return 24<<10 + r.Int64N(176<<10)
}

// words are what the generated text is made of.
var words = strings.Fields(`the of and to in is that for it as with was on be by this are from or at an
	func return if else err nil for range var const type struct interface package import go defer chan
	select case default switch break continue map string int byte error len make append copy new`)

// textReader reads left bytes of words picked by r; random mixes in runs
// of random bytes, half the bytes.
type textReader struct {
	r      *rand.Rand
	left   int64
	random bool
	buf    []byte
}

func (t *textReader) Read(p []byte) (int, error) {
	if t.left == 0 {
		return 0, io.EOF
	}
	for len(t.buf) < len(p) && int64(len(t.buf)) < t.left {
		if t.random && t.r.IntN(2) == 0 {
			for range 64 {
				t.buf = append(t.buf, byte(t.r.Uint32()))
			}
			continue
		}
		for range 16 {
			t.buf = append(append(t.buf, words[t.r.IntN(len(words))]...), " \n"[min(t.r.IntN(12), 1)^1])
		}
	}
	n := copy(p, t.buf[:min(int64(len(t.buf)), t.left)])
	t.buf, t.left = t.buf[:copy(t.buf, t.buf[n:])], t.left-int64(n)
	return n, nil
}

// treeArchives are the extract scenario's archives of a tree: a file per
// format in dir, and the tree they unpack to.
type treeArchives struct {
	desc  string
	dir   string
	files map[string]string // format -> file in dir
	tree  manifest
}

// archiveName is the file name of the archive of a format.
func archiveName(format string) string { return "tree." + format }

// buildArchives writes src as a .tar.gz and a .tar.zst into dir, and its
// manifest, in one pass over the tree; an earlier build in dir of the
// same tree (its key) is reused. The .tar.zst is the zstd command's
// (level 3, as `tar --zstd` makes it) where installed, else klauspost's
// default level; the .tar.gz klauspost's default level (gzip -6's format).
func buildArchives(src treeSource, dir string) (*treeArchives, error) {
	a := &treeArchives{desc: src.desc, dir: dir, files: map[string]string{}}
	for _, f := range ArchiveFormats {
		a.files[f] = filepath.Join(dir, archiveName(f))
	}
	keyFile, manifestFile := filepath.Join(dir, "tree.key"), filepath.Join(dir, "tree.manifest.json")
	if key, err := os.ReadFile(keyFile); err == nil && string(key) == src.key {
		if data, err := os.ReadFile(manifestFile); err == nil && json.Unmarshal(data, &a.tree) == nil {
			return a, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	os.Remove(keyFile)
	tree, err := writeArchives(src, a.files)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(tree, func(a, b treeEntry) int { return compareStrings(a.Path, b.Path) })
	a.tree = tree
	data, err := json.Marshal(tree)
	if err == nil {
		err = os.WriteFile(manifestFile, data, 0o644)
	}
	if err == nil {
		err = os.WriteFile(keyFile, []byte(src.key), 0o644)
	}
	return a, err
}

// writeArchives writes the tar of src through each compressor into its
// file and returns the tree's manifest, in archive order.
func writeArchives(src treeSource, files map[string]string) (manifest, error) {
	gz, err := os.Create(files[FormatGzip])
	if err != nil {
		return nil, err
	}
	defer gz.Close()
	gzw, err := gzip.NewWriterLevel(gz, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	zst, err := newZstdWriter(files[FormatZstd])
	if err != nil {
		return nil, err
	}
	defer zst.Close()
	tw := tar.NewWriter(io.MultiWriter(gzw, zst))
	var tree manifest
	err = src.each(func(e treeEntry, content io.Reader) error {
		e, err := writeMember(tw, e, content)
		tree = append(tree, e)
		return err
	})
	for _, c := range []io.Closer{tw, gzw, zst, gz} {
		err = errors.Join(err, c.Close())
	}
	return tree, err
}

// writeMember writes the entry e as a tar member, with its content, and
// returns it with a file's sum.
func writeMember(tw *tar.Writer, e treeEntry, content io.Reader) (treeEntry, error) {
	hdr := &tar.Header{Name: e.Path, Mode: int64(e.Mode.Perm()), ModTime: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Format: tar.FormatPAX}
	switch {
	case e.Mode.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.Path+"/"
	case e.Mode&fs.ModeSymlink != 0:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Sum
	default:
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.Size
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return e, fmt.Errorf("%s: %w", e.Path, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return e, nil
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), content)
	if err == nil && n != e.Size {
		err = fmt.Errorf("%s: %d bytes, not %d: it changed while archived", e.Path, n, e.Size)
	}
	e.Sum = hex.EncodeToString(h.Sum(nil))
	return e, err
}

// zstdWriter compresses into a file: through the zstd command where it
// is installed, else klauspost's encoder.
type zstdWriter struct {
	io.Writer
	close func() error
}

func (z *zstdWriter) Close() error {
	if z.close == nil {
		return nil
	}
	err := z.close()
	z.close = nil
	return err
}

func newZstdWriter(name string) (*zstdWriter, error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	if bin, err := exec.LookPath("zstd"); err == nil {
		cmd := exec.Command(bin, "-q", "-3", "-T0", "-c")
		cmd.Stdout = f
		in, err := cmd.StdinPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		return &zstdWriter{Writer: in, close: func() error {
			return errors.Join(in.Close(), cmd.Wait(), f.Close())
		}}, nil
	}
	enc, err := zstd.NewWriter(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &zstdWriter{Writer: enc, close: func() error { return errors.Join(enc.Close(), f.Close()) }}, nil
}
