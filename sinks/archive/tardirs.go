package archive

import (
	"os"
	"path"
	"sync/atomic"
)

// An os.Root resolves a path one component at a time, with an openat and
// a close for each directory on the way, and again for every call: with
// the path it made for each of Lstat, OpenFile and Chtimes, unpacking Go's
// distribution (15,000 files, 1,700 directories) made 256,000 openat
// calls where tar makes 17,000 (strace -c). So the files of a directory
// are made through a root opened on that directory, kept open while its
// members come (an archive keeps a directory's members together): each
// call then resolves one name. Directories are never removed or replaced
// during a run (clear refuses to), so an open one stays the one at its
// path; names below a symlink are refused before any is opened.

// maxOpenDirs bounds the directories held open.
const maxOpenDirs = 64

// dirRoot is a directory of the extraction, open.
type dirRoot struct {
	root *os.Root
	// fd is the directory open for createFile where the system has a
	// faster way than root to create a file (Linux: see createfile_linux.go);
	// nil elsewhere, and for the zip's root.
	fd   *os.File
	refs atomic.Int32 // writers' jobs on it; it is not closed before they end
	used uint64       // when the owner last took it, for eviction
}

// close closes d, unless it is the extraction's root (closed by Finish).
func (d *dirRoot) close(root *os.Root) {
	if d.fd != nil {
		d.fd.Close()
	}
	if d.root != root {
		d.root.Close()
	}
}

// dirCache is the directories held open, by path from memberPath. Only
// the goroutine that reads the archive uses it; writers only hold and
// release (refs) the dirRoots it hands them.
type dirCache struct {
	dirs map[string]*dirRoot
	tick uint64
}

func newDirCache() *dirCache { return &dirCache{dirs: map[string]*dirRoot{}} }

// parent is the open directory above name (made already, see
// mkdirParents) and name's last component. Without a cache (zip), it is
// the root itself and the whole name.
func (s *TarExtract) parent(name string) (*dirRoot, string, error) {
	if s.dirs == nil {
		return &dirRoot{root: s.root}, name, nil
	}
	dir, base := path.Split(name)
	if dir == "" {
		dir = "."
	} else {
		dir = dir[:len(dir)-1]
	}
	c := s.dirs
	c.tick++
	if d := c.dirs[dir]; d != nil {
		d.used = c.tick
		return d, base, nil
	}
	if len(c.dirs) >= maxOpenDirs {
		if err := s.evictDir(); err != nil {
			return nil, "", err
		}
	}
	d := &dirRoot{used: c.tick}
	if dir == "." {
		d.root = s.root
	} else {
		r, err := s.openDir(dir)
		if err != nil {
			return nil, "", err
		}
		d.root = r
	}
	fd, err := openDirFD(d.root)
	if err != nil {
		d.close(s.root)
		return nil, "", err
	}
	d.fd = fd
	c.dirs[dir] = d
	return d, base, nil
}

// openDir opens the directory dir (made already), from its parent when
// that is held open: one openat, where a path from the root takes one per
// component. Directories are never replaced during a run, so the parent
// held is the one at its path.
func (s *TarExtract) openDir(dir string) (*os.Root, error) {
	if up, base := path.Split(dir); up != "" {
		if pd := s.dirs.dirs[up[:len(up)-1]]; pd != nil {
			return pd.root.OpenRoot(base)
		}
	}
	return s.root.OpenRoot(dir)
}

// evictDir closes the directory used longest ago that no writer holds,
// waiting for the writers when they hold all.
func (s *TarExtract) evictDir() error {
	for range 2 {
		var oldest string
		var od *dirRoot
		for dir, d := range s.dirs.dirs {
			if d.refs.Load() == 0 && (od == nil || d.used < od.used) {
				oldest, od = dir, d
			}
		}
		if od != nil {
			od.close(s.root)
			delete(s.dirs.dirs, oldest)
			return nil
		}
		if err := s.w.settleAll(); err != nil {
			return err
		}
	}
	return nil
}

// closeDirs closes the directories held open; the writers have stopped.
func (s *TarExtract) closeDirs() {
	if s.dirs == nil {
		return
	}
	for _, d := range s.dirs.dirs {
		d.close(s.root)
	}
	s.dirs = nil
}
