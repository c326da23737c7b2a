package cmd

import (
	"errors"
	"syscall"
)

// errorNoData is ERROR_NO_DATA, "the pipe is being closed": what a write
// to a pipe whose reader went away returns on Windows (syscall does not
// name it).
const errorNoData = syscall.Errno(232)

// brokenPipeErrno reports the Windows errors of a pipe whose reader went
// away, which are not EPIPE.
func brokenPipeErrno(err error) bool {
	return errors.Is(err, errorNoData) || errors.Is(err, syscall.ERROR_BROKEN_PIPE)
}
