//go:build unix

package sinks

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
	fd, err := openDirAt(unix.AT_FDCWD, dir)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	// Each level down: the name of the directory entered, and the
	// entries of its parent still to look at.
	type level struct {
		name    string
		pending []string
	}
	var stack []level
	var pending []string
	fresh := true // pending is to be read from fd
	for {
		if fresh {
			if pending, err = readNames(fd); err != nil {
				unix.Close(fd)
				return treeError("read", dir, len(stack), err)
			}
			fresh = false
		}
		sub, rest, err := clearEntries(fd, pending)
		if err != nil {
			unix.Close(fd)
			return treeError("remove in", dir, len(stack), err)
		}
		if sub != "" { // a directory with something in it: go down
			child, err := openDirAt(fd, sub)
			unix.Close(fd)
			if err != nil {
				return treeError("open", dir, len(stack)+1, err)
			}
			stack = append(stack, level{sub, rest})
			fd, fresh = child, true
			continue
		}
		if len(stack) == 0 {
			unix.Close(fd)
			return os.Remove(dir)
		}
		parent, err := openDirAt(fd, "..")
		unix.Close(fd)
		if err != nil {
			return treeError("open", dir, len(stack)-1, err)
		}
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if err := unix.Unlinkat(parent, top.name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			unix.Close(parent)
			return treeError("remove in", dir, len(stack), err)
		}
		fd, pending = parent, top.pending
	}
}

// clearEntries removes the entries names of the directory fd that are
// not directories, and the empty directories, until it meets a directory
// with something in it: it returns that one's name and the names after
// it, or "" when it removed them all.
func clearEntries(fd int, names []string) (sub string, rest []string, err error) {
	for i, name := range names {
		err := unix.Unlinkat(fd, name, 0)
		if err == nil || errors.Is(err, unix.ENOENT) {
			continue
		}
		if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
			return "", nil, fmt.Errorf("%s: %w", shortName(name), err)
		}
		// A directory (Linux says EISDIR, POSIX EPERM): try it empty.
		err = unix.Unlinkat(fd, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST):
			return name, names[i+1:], nil
		default:
			return "", nil, fmt.Errorf("%s: %w", shortName(name), err)
		}
	}
	return "", nil, nil
}

// readNames lists the directory fd, through a descriptor of its own.
func readNames(fd int) ([]string, error) {
	d, err := openDirAt(fd, ".")
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

func openDirAt(fd int, name string) (int, error) {
	for {
		d, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return d, err
		}
	}
}

func treeError(op, dir string, depth int, err error) error {
	return fmt.Errorf("%s %s, %d directories down: %w", op, dir, depth, err)
}
