//go:build !windows

package dlflow

import "syscall"

// ErrDiskFull is what a download's error wraps when the output's file
// system has no room left (ENOSPC), for errors.Is. It is the system's own
// error, so errors.Is(err, syscall.ENOSPC) holds as well. A quota that
// is used up (EDQUOT) is not it.
var ErrDiskFull error = syscall.ENOSPC
