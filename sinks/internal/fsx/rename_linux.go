package fsx

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// ErrExist is what Renameat2NoReplace's error wraps when newpath exists.
var ErrExist = errors.New("already exists")

// Renameat2NoReplace renames oldpath to newpath in one step that fails
// with an error wrapping ErrExist when newpath exists
// (renameat2(RENAME_NOREPLACE)); where the kernel or the file system
// lacks that flag, it calls fallback instead.
func Renameat2NoReplace(oldpath, newpath string, fallback func(oldpath, newpath string) error) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: ErrExist}
	case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS):
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	// An old kernel or a file system without RENAME_NOREPLACE.
	return fallback(oldpath, newpath)
}
