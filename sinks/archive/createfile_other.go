//go:build !linux

package archive

import (
	"io/fs"
	"os"
	"time"
)

// openDirFD has nothing to open: createFile goes through the os.Root.
func openDirFD(*os.Root) (*os.File, error) { return nil, nil }

// createFile creates the file base in d (see rootCreateFile).
func createFile(d *dirRoot, base string, mode fs.FileMode, data []byte, mtime time.Time) error {
	return rootCreateFile(d, base, mode, data, mtime)
}
