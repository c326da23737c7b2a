package archive

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// syncTree makes everything under dir durable with one syncfs(2) of its
// file system: one call, where an fsync per file costs a disk flush per
// file (an archive of 70,000 files would take minutes). It also flushes
// other writers' data on that file system, which costs time, not
// correctness. Since Linux 5.8 it reports writeback errors.
func syncTree(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		err := unix.Syncfs(int(d.Fd()))
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return &os.PathError{Op: "syncfs", Path: dir, Err: err}
			}
			return nil
		}
	}
}

// renameDirNoReplace renames the directory oldpath to newpath in one step
// that fails with an *OutputExistsError when newpath exists (rename(2)
// alone would replace an empty directory).
func renameDirNoReplace(oldpath, newpath string) error {
	err := fsx.Renameat2NoReplace(oldpath, newpath, renameDirChecked)
	if errors.Is(err, fsx.ErrExist) {
		return &sinks.OutputExistsError{Path: newpath}
	}
	return err
}
