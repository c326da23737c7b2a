package archive

import (
	"errors"
	"io/fs"
	"os"

	"github.com/dlflow/dlflow/sinks"
)

// renameDirChecked renames oldpath to newpath after checking that newpath
// does not exist. A directory that appears between the check and the
// rename is replaced if it is empty (POSIX rename); without an atomic
// no-replace rename, nothing closes that window.
func renameDirChecked(oldpath, newpath string) error {
	if _, err := os.Lstat(newpath); err == nil {
		return &sinks.OutputExistsError{Path: newpath}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(oldpath, newpath)
}
