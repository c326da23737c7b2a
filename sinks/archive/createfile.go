package archive

import (
	"io/fs"
	"os"
	"time"
)

// rootCreateFile creates the file base in d through its os.Root, with
// data, mode (whatever the umask) and mtime (when not zero).
func rootCreateFile(d *dirRoot, base string, mode fs.FileMode, data []byte, mtime time.Time) error {
	// O_EXCL: never through a symlink, never into a file it did not make.
	f, err := d.root.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Chmod(mode) // the mode asked, whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !mtime.IsZero() {
		_ = d.root.Chtimes(base, mtime, mtime) // a time it cannot set does not spoil the file
	}
	return nil
}
