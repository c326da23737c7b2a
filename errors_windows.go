package dlflow

import "syscall"

// ErrDiskFull is what a download's error wraps when the output's volume
// has no room left (ERROR_DISK_FULL), for errors.Is.
var ErrDiskFull error = syscall.Errno(112) // ERROR_DISK_FULL
