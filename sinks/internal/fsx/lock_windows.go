package fsx

import (
	"errors"
	"math"
	"os"

	"golang.org/x/sys/windows"
)

// LockFile takes an exclusive lock on f without waiting, or returns
// ErrLocked when another handle holds it. Windows locks are mandatory
// for the bytes they cover, so the lock covers one byte far past any
// file's end, which nobody reads or writes. A lock belongs to its handle:
// two downloads in one process exclude each other. Closing f releases it.
func LockFile(f *os.File) error {
	const off uint64 = math.MaxInt64 - 1
	ol := windows.Overlapped{Offset: uint32(off & math.MaxUint32), OffsetHigh: uint32(off >> 32)}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return ErrLocked
	}
	return err
}
