package sinks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// Preflight refuses a run that cannot end well, before any network I/O: the
// output's name must leave room for the sink's suffixes (see MaxSuffix),
// its directory must exist and take a new file, the output must not exist
// (unless Overwrite) nor be a directory, and PATH.tmp must not be a
// symlink. It creates PATH.tmp, locked, for the run that follows (see
// reserve.go); Release removes it if no run took it. A sink handed a
// Reservation (FileConfig.Reserved) was checked by Reserve already.
func (s *FileSink) Preflight(ctx context.Context, env *pipeline.Env) error {
	if s.reserved != nil && !s.ownsReserved && s.reserved.holds() {
		return nil
	}
	if s.ownsReserved {
		// Preflight again (a graph that ran, say): what the last one made
		// is gone or is made again.
		if err := s.reserved.Release(); err != nil {
			return err
		}
	}
	if err := s.preflight(); err != nil {
		return err
	}
	s.ownsReserved = true
	return nil
}

// preflight is Preflight's checks and reservation.
func (s *FileSink) preflight() error {
	if err := s.checkName(); err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := fsx.IsDir(dir); err != nil {
		return err
	}
	if err := s.checkOutput(); err != nil {
		return err
	}
	return s.reserve(dir)
}

// maxNameLen is the longest file name, in bytes, of the usual file systems
// (NAME_MAX of ext4, XFS, btrfs, APFS; 255 UTF-16 units on NTFS).
const maxNameLen = 255

// checkName refuses an output whose companion files could not be named:
// without it every run of a 242 to 255-byte name failed with "file name
// too long" on PATH.tmp.state, after the probe, and so did every rerun.
// It does no I/O.
func (s *FileSink) checkName() error {
	base := filepath.Base(s.path)
	if n := len(base) + MaxSuffix; n > maxNameLen {
		return fmt.Errorf("output name is too long: %d bytes, and %d with the %q the sink adds for its partial download, past the limit of %d bytes for a file name; use a name of at most %d bytes",
			len(base), n, tmpSuffix+stateSuffix+newSuffix, maxNameLen, maxNameLen-MaxSuffix)
	}
	return nil
}

// checkOutput reports what is in the way at PATH and PATH.tmp.
func (s *FileSink) checkOutput() error {
	st, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case st.IsDir():
		return fmt.Errorf("output %s is a directory; name a file", s.path)
	case st.Mode()&fs.ModeSymlink == 0 && !st.Mode().IsRegular():
		// A rename would replace a device or a pipe, such as /dev/null.
		return fmt.Errorf("output %s is not a regular file", s.path)
	case st.Mode()&fs.ModeSymlink != 0 && linksToSpecial(s.path):
		// /dev/stdout is a link to the process's fd 1: with --overwrite,
		// the rename replaced the link itself with a regular file, and
		// every later program's /dev/stdout wrote into that file.
		return fmt.Errorf("output %s is a link to something that is not a regular file; it is never replaced", s.path)
	case !s.overwrite:
		return &OutputExistsError{Path: s.path}
	}
	if st, err := os.Lstat(s.tmp); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return symlinkError(s.tmp)
	}
	return nil
}

// linksToSpecial reports whether the symlink at path resolves to a
// device, a pipe or a socket, or points into /proc, whose links (as
// /dev/stdout's /proc/self/fd/1) name whatever a process has open: a
// regular file too, when stdout is redirected to one. A dangling link, or
// one to a directory or a regular file elsewhere, is not special.
func linksToSpecial(path string) bool {
	if target, err := os.Readlink(path); err == nil && strings.HasPrefix(target, "/proc/") {
		return true
	}
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && !st.Mode().IsRegular()
}

// notRegularError is the error for a path that holds something the sink
// did not write and will not touch: a FIFO, a device, a directory.
type notRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *notRegularError) Error() string {
	return fmt.Sprintf("%s exists and is not a regular file (%s)", e.Path, fileType(e.Mode))
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// regularOnly returns f, just opened, when it is a regular file; otherwise
// it closes f and returns a *notRegularError (or fstat's error).
func regularOnly(f *os.File) (*os.File, error) {
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &notRegularError{Path: f.Name(), Mode: fi.Mode()}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func symlinkError(path string) error {
	return fmt.Errorf("%s is a symlink; refusing to follow it (remove it and run again)", path)
}
