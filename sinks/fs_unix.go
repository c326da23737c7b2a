//go:build unix

package sinks

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openRegular opens path with flag and perm, and returns it only when it is
// a regular file: otherwise it closes it and returns a *notRegularError.
// It never follows a symlink at path (O_NOFOLLOW) and never waits in
// open(2): O_NONBLOCK makes a FIFO open at once instead of blocking until
// a writer comes (a FIFO at PATH.tmp.state once hung a download forever),
// and fstat then refuses it. The descriptor of a regular file is made
// blocking again, so that it behaves like any other.
func openRegular(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK, perm)
	if err != nil {
		return nil, err
	}
	if f, err = regularOnly(f); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// links is the number of names fi's file has.
func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
