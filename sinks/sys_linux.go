package sinks

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// preallocate reserves size bytes for f, so that a full disk fails the run
// at once instead of midway, and the file's blocks are laid out together.
// On a resumed file it only reserves what is still missing: fallocate
// without flags never touches existing data. A file system that cannot
// preallocate is not an error: the writes then allocate as they go.
func preallocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return nil
	}
	return err
}

// writebackHints: the file sink may start and wait for the writeback of a
// file's range (see writeback.go).
const writebackHints = true

// startWriteback asks the kernel to start writing [off, off+n) of fd to
// the disk now, without waiting for it, so that the final fsync finds
// little left to flush. It is a hint: an error is ignored, the fsync
// reports any real one. It may still block while the device's queue is
// full, so the file sink calls it from a goroutine of its own.
func startWriteback(fd int, off, n int64) {
	_ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// awaitWriteback writes what is dirty in [off, off+n) of fd and waits
// until all of the range is written back. It neither flushes the disk's
// cache nor writes metadata: a pace, not durability. Errors are ignored
// like startWriteback's.
func awaitWriteback(fd int, off, n int64) {
	_ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}

// datasync makes f's data durable, and the metadata needed to read it back
// (its size), but not its times: cheaper than fsync for a checkpoint.
func datasync(f *os.File) error {
	fd := int(f.Fd())
	for {
		err := unix.Fdatasync(fd)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// renameNoReplace renames oldpath to newpath in one step that fails, with
// an *OutputExistsError, when newpath exists: an output that appeared
// during the run is never replaced.
func renameNoReplace(oldpath, newpath string) error {
	return renameat2NoReplace(oldpath, newpath, linkRename)
}

// renameat2NoReplace is renameNoReplace with the way to go where the
// kernel or the file system lacks RENAME_NOREPLACE: fallback. An existing
// newpath is an *OutputExistsError.
func renameat2NoReplace(oldpath, newpath string, fallback func(oldpath, newpath string) error) error {
	err := fsx.Renameat2NoReplace(oldpath, newpath, fallback)
	if errors.Is(err, fsx.ErrExist) {
		return &OutputExistsError{Path: newpath}
	}
	return err
}
