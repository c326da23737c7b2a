//go:build unix

package cmd

import (
	"os"
	"os/signal"
	"syscall"
)

// catchSIGPIPE keeps the process alive when the reader of stdout goes
// away: without it, Go's runtime turns a write to a broken pipe on fd 1
// into death by SIGPIPE (see os/signal), with no say in the exit code. With
// it, the write returns EPIPE, which ends the download as a write error
// (exit 23). stop undoes it.
func catchSIGPIPE() (stop func()) {
	ch := make(chan os.Signal, 1) // never read: a full channel drops the signal
	signal.Notify(ch, syscall.SIGPIPE)
	return func() { signal.Stop(ch) }
}
