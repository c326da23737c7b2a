package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
)

// treeEntry is one member of a tree, as the extract scenario checks it: a
// directory, a regular file or a symlink, by its slash-separated path
// below the directory the archive is unpacked into.
type treeEntry struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"` // type bits and permissions
	Size int64       `json:"size"` // a file's; 0 for the others
	Sum  string      `json:"sum"`  // sha256 (hex) of a file's content; a symlink's target
}

// describe is what a mismatch prints of the entry.
func (e treeEntry) describe() string {
	switch {
	case e.Mode.IsDir():
		return fmt.Sprintf("directory %v", e.Mode)
	case e.Mode&fs.ModeSymlink != 0:
		return fmt.Sprintf("symlink to %q", e.Sum)
	}
	return fmt.Sprintf("file %v, %d bytes, sha256 %.16s", e.Mode, e.Size, e.Sum)
}

// manifest is a tree, its entries sorted by path.
type manifest []treeEntry

// files and bytes count the regular files and their bytes.
func (m manifest) files() (n int, bytes int64) {
	for _, e := range m {
		if e.Mode.IsRegular() {
			n, bytes = n+1, bytes+e.Size
		}
	}
	return n, bytes
}

// treeMismatchError is an extracted tree that differs from the source:
// the first path (in order) where it does, with what each side has there
// ("nothing" for an entry one side lacks).
type treeMismatchError struct {
	path, got, want string
}

func (e *treeMismatchError) Error() string {
	return fmt.Sprintf("tree mismatch at %s: got %s, want %s", e.path, e.got, e.want)
}

// verifyTree checks that the tree below dir is want: the same paths, each
// of the same type, permissions, size and content (symlinks: target). It
// returns the bytes of the files; a difference is a *treeMismatchError.
func verifyTree(dir string, want manifest) (int64, error) {
	got, err := readManifest(dir)
	if err != nil {
		return 0, err
	}
	i, k := 0, 0
	for i < len(got) || k < len(want) {
		switch {
		case k == len(want) || i < len(got) && got[i].Path < want[k].Path:
			return 0, &treeMismatchError{path: got[i].Path, got: got[i].describe(), want: "nothing"}
		case i == len(got) || got[i].Path > want[k].Path:
			return 0, &treeMismatchError{path: want[k].Path, got: "nothing", want: want[k].describe()}
		case got[i] != want[k]:
			return 0, &treeMismatchError{path: want[k].Path, got: got[i].describe(), want: want[k].describe()}
		}
		i, k = i+1, k+1
	}
	_, bytes := want.files()
	return bytes, nil
}

// readManifest reads the tree below dir (dir itself is not an entry),
// hashing the files on every core. Anything but a directory, a regular
// file or a symlink is an error.
func readManifest(dir string) (manifest, error) {
	var m manifest
	var files []int // indexes of m to hash
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		e := treeEntry{Path: filepath.ToSlash(rel), Mode: fi.Mode() & (fs.ModeType | fs.ModePerm)}
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
			files = append(files, len(m))
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.Sum, err = os.Readlink(p); err != nil {
				return err
			}
		case !fi.IsDir():
			return fmt.Errorf("%s: neither a file, a directory nor a symlink (%v)", p, fi.Mode())
		}
		m = append(m, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = parallel(len(files), func(i int) error {
		e := &m[files[i]]
		sum, err := hashFile(filepath.Join(dir, filepath.FromSlash(e.Path)))
		e.Sum = sum
		return err
	})
	// WalkDir's lexical order per directory is not the order of whole
	// paths ("a/b" sorts after "a-c" as a path, before it in a walk).
	slices.SortFunc(m, func(a, b treeEntry) int { return compareStrings(a.Path, b.Path) })
	return m, err
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parallel calls do(i) for i in [0, n) on every core and returns the
// first error.
func parallel(n int, do func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range min(runtime.NumCPU(), max(n, 1)) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := do(i); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// hashFile is the hex sha256 of the file at p.
func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
