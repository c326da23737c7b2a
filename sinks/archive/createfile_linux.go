package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Creating a file through an os.Root costs 11 system calls on Linux where
// tar makes 5: os.File's setup tries the poller (2 fcntl to set
// O_NONBLOCK, an epoll_ctl that fails for a regular file, 2 fcntl to undo
// it), and Root.Chtimes reads the name as a symlink first (readlinkat).
// createFile makes the same calls on the directory's descriptor directly:
// openat, write, fchmod, utimensat, close. It is as safe: base is one
// component (memberPath's), d is the directory at its path (directories
// are never replaced during a run), and O_CREAT|O_EXCL|O_NOFOLLOW never
// follows a symlink nor opens a file it did not make.

// openDirFD opens the directory of r for createFile.
func openDirFD(r *os.Root) (*os.File, error) { return r.Open(".") }

// createFile creates the file base in d, with data, mode (whatever the
// umask) and mtime (when not zero).
func createFile(d *dirRoot, base string, mode fs.FileMode, data []byte, mtime time.Time) error {
	if d.fd == nil {
		return rootCreateFile(d, base, mode, data, mtime)
	}
	err := createAt(int(d.fd.Fd()), base, mode, data, mtime)
	runtime.KeepAlive(d.fd)
	if err != nil {
		return &os.PathError{Op: "create", Path: base, Err: err}
	}
	return nil
}

func createAt(dirfd int, base string, mode fs.FileMode, data []byte, mtime time.Time) error {
	perm := uint32(mode.Perm())
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	})
	if err != nil {
		return err
	}
	for len(data) > 0 && err == nil {
		var n int
		if n, err = ignoringEINTR(func() (int, error) { return unix.Write(fd, data) }); err == nil && n == 0 {
			err = fmt.Errorf("write returned 0 of %d bytes", len(data))
		}
		data = data[max(n, 0):]
	}
	if err == nil {
		_, err = ignoringEINTR(func() (int, error) { return 0, unix.Fchmod(fd, perm) }) // the mode asked, whatever the umask
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil || mtime.IsZero() {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	_ = unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW) // a time it cannot set does not spoil the file
	return nil
}

// ignoringEINTR calls f until it returns an error other than EINTR.
func ignoringEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}
