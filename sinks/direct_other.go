//go:build !linux

package sinks

import (
	"errors"
	"os"
)

// openDirect returns nil: direct I/O is used on Linux only, elsewhere every
// write goes through the page cache.
func openDirect(f *os.File, path string) (*directFile, error) { return nil, nil }

// writevAt is never called: openDirect returns no directFile here.
func (d *directFile) writevAt(iov [][]byte, off int64) (int, error) {
	return 0, errors.New("direct I/O is not supported on this system")
}
