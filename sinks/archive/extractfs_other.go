//go:build !linux

package archive

import (
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// syncTree makes everything under dir durable: each file, then each
// directory (where the system syncs directories, see syncDir).
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return fsx.SyncDir(p)
		case !d.Type().IsRegular():
			return nil
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// renameDirNoReplace renames the directory oldpath to newpath unless
// newpath exists (see renameDirChecked).
func renameDirNoReplace(oldpath, newpath string) error { return renameDirChecked(oldpath, newpath) }
