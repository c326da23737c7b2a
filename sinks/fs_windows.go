package sinks

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// openRegular opens path with flag, and returns it only when it is a
// regular file: otherwise it closes it and returns a *notRegularError. It
// opens a symlink or junction itself instead of its target
// (FILE_FLAG_OPEN_REPARSE_POINT), which then fails the regular-file check.
// Unlike os.OpenFile it shares delete access, so that PATH.tmp can be
// renamed while the sink holds it open and locked. perm is ignored: new
// files get the directory's default ACL.
func openRegular(path string, flag int, perm fs.FileMode) (*os.File, error) {
	name, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var access uint32
	switch flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_RDONLY:
		access = windows.GENERIC_READ
	case os.O_WRONLY:
		access = windows.GENERIC_WRITE
	default:
		access = windows.GENERIC_READ | windows.GENERIC_WRITE
	}
	var disposition uint32
	switch {
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		disposition = windows.CREATE_NEW
	case flag&(os.O_CREATE|os.O_TRUNC) == os.O_CREATE|os.O_TRUNC:
		disposition = windows.CREATE_ALWAYS
	case flag&os.O_CREATE != 0:
		disposition = windows.OPEN_ALWAYS
	case flag&os.O_TRUNC != 0:
		disposition = windows.TRUNCATE_EXISTING
	default:
		disposition = windows.OPEN_EXISTING
	}
	share := uint32(windows.FILE_SHARE_READ | windows.FILE_SHARE_WRITE | windows.FILE_SHARE_DELETE)
	h, err := windows.CreateFile(name, access, share, nil, disposition,
		windows.FILE_ATTRIBUTE_NORMAL|windows.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return regularOnly(os.NewFile(uintptr(h), path))
}

// links is 1: counting a file's names on Windows takes a call per file,
// and the hard-link guard it serves (see openTmp) matters where PATH is
// made with link and remove, which Windows does not do.
func links(fi fs.FileInfo) uint64 { return 1 }

// renameNoReplace renames oldpath to newpath; without
// MOVEFILE_REPLACE_EXISTING, MoveFileEx refuses an existing newpath.
func renameNoReplace(oldpath, newpath string) error {
	from, err := windows.UTF16PtrFromString(oldpath)
	if err != nil {
		return err
	}
	to, err := windows.UTF16PtrFromString(newpath)
	if err != nil {
		return err
	}
	err = windows.MoveFileEx(from, to, windows.MOVEFILE_WRITE_THROUGH)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, windows.ERROR_ALREADY_EXISTS), errors.Is(err, windows.ERROR_FILE_EXISTS):
		return &OutputExistsError{Path: newpath}
	}
	return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
}
