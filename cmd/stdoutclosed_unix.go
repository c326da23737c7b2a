//go:build unix

package cmd

import (
	"os"

	"golang.org/x/sys/unix"
)

// stdoutClosed reports whether f, the process's fd 1, was closed when the
// process started (`dlflow URL -o - >&-`). The Go runtime does not leave
// it closed: before main it opens /dev/null, read-write, on any of fds 0
// to 2 that is closed (runtime.checkfds), and every byte written there
// would be thrown away with exit 0. A shell's `> /dev/null` and os/exec's
// nil Stdout open /dev/null write-only, so fd 1 on /dev/null opened
// read-write is taken for the runtime's stand-in. `1<>/dev/null`, or a
// parent that daemon(3)ized itself and passed its read-write /dev/null
// on, looks the same and is refused too: -o /dev/null says it plainly.
func stdoutClosed(f *os.File) bool {
	fd := int(f.Fd())
	if fd != 1 {
		return false
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_ACCMODE != unix.O_RDWR {
		return false
	}
	var have, null unix.Stat_t
	if unix.Fstat(fd, &have) != nil || unix.Stat(os.DevNull, &null) != nil {
		return false
	}
	return have.Mode&unix.S_IFMT == unix.S_IFCHR && have.Rdev == null.Rdev
}
