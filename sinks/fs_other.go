//go:build !unix && !windows

package sinks

import (
	"io/fs"
	"os"
)

// openRegular opens path and returns it only when it is a regular file.
// Without O_NOFOLLOW and O_NONBLOCK here (Plan 9, WASI), a symlink is
// refused by a check before the open, which a concurrent change can
// outrun.
func openRegular(path string, flag int, perm fs.FileMode) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, &notRegularError{Path: path, Mode: fi.Mode()}
	}
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	return regularOnly(f)
}

func links(fi fs.FileInfo) uint64 { return 1 }
