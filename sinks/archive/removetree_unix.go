//go:build unix

package archive

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// removeTree removes the directory dir and everything in it, of any
// depth, holding at most two file descriptors and never following a
// symlink. os.RemoveAll holds one descriptor per level, so a tree deeper
// than the descriptor limit (an archive member 100,000 directories deep)
// fails with "too many open files" and is left behind. This one goes
// down one directory at a time, and back up through "..": the tree is a
// run's own temporary directory, which nothing else moves meanwhile. Its
// errors name the directory by dir and its depth, never by a path of a
// megabyte.
func removeTree(dir string) error {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !st.IsDir():
		return os.Remove(dir)
	}
	d, err := openDirAt(unix.AT_FDCWD, dir)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	// Each level down: the name of the directory entered, and the
	// subdirectories of its parent still to remove.
	type level struct {
		name    string
		pending []string
	}
	var stack []level
	var pending []string
	fresh := true // pending is to be read from d
	for {
		if fresh {
			if pending, err = clearFiles(d); err != nil {
				d.Close()
				return treeError("remove in", dir, len(stack), err)
			}
			fresh = false
		}
		if len(pending) > 0 { // go down
			sub := pending[0]
			child, err := openDirAt(int(d.Fd()), sub)
			d.Close()
			if err != nil {
				return treeError("open", dir, len(stack)+1, err)
			}
			stack = append(stack, level{sub, pending[1:]})
			d, fresh = child, true
			continue
		}
		if len(stack) == 0 {
			d.Close()
			return os.Remove(dir)
		}
		parent, err := openDirAt(int(d.Fd()), "..")
		d.Close()
		if err != nil {
			return treeError("open", dir, len(stack)-1, err)
		}
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if err := unix.Unlinkat(int(parent.Fd()), top.name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			parent.Close()
			return treeError("remove in", dir, len(stack), err)
		}
		d, pending = parent, top.pending
	}
}

// clearFiles removes what the directory d holds but directories, and
// returns the names of those.
func clearFiles(d *os.File) ([]string, error) {
	des, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, de := range des {
		if de.IsDir() {
			dirs = append(dirs, de.Name())
			continue
		}
		if err := unix.Unlinkat(int(d.Fd()), de.Name(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", shortName(de.Name()), err)
		}
	}
	return dirs, nil
}

// openDirAt opens the directory name in fd, never through a symlink.
func openDirAt(fd int, name string) (*os.File, error) {
	for {
		d, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			return os.NewFile(uintptr(d), name), nil
		case !errors.Is(err, unix.EINTR):
			return nil, err
		}
	}
}

func treeError(op, dir string, depth int, err error) error {
	return fmt.Errorf("%s %s, %d directories down: %w", op, dir, depth, err)
}
