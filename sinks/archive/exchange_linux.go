package archive

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// exchangeDirs swaps the directories a and b in one step
// (renameat2(RENAME_EXCHANGE)): no moment exists without either. It
// returns errNoExchange where the kernel or the file system cannot, and
// an error wrapping fs.ErrNotExist when b does not exist.
func exchangeDirs(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
		return errNoExchange
	}
	return &os.LinkError{Op: "renameat2 exchange", Old: a, New: b, Err: err}
}
