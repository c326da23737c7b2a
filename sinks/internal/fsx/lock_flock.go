//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package fsx

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// LockFile takes an exclusive lock on f without waiting, or returns
// ErrLocked when another open of the file holds one. It is flock(2), not
// fcntl(2): a flock belongs to the open file, so two downloads in one
// process exclude each other as two processes do, and closing another
// descriptor of the same file (the direct one) does not drop it. Closing f
// releases it. (On NFS, Linux emulates flock with fcntl locks, which do
// not exclude opens within one process.)
func LockFile(f *os.File) error {
	fd := int(f.Fd())
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return ErrLocked
		}
		return err
	}
}
