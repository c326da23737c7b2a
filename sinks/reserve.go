package sinks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/dlflow/dlflow/pipeline"
)

// Preflight creates PATH.tmp, locked, when there is none: the check that
// the directory takes a new file is the making of the file this download
// writes, before any network I/O. The graph that runs next in this
// process, whichever of its file sinks writes PATH, takes that file over
// in Resume (lockTmp); if none does (the probe failed, the download
// ended), Release on the preflighted graph removes it.
//
// Why not create it in Resume, as a rerun that finds PATH.tmp does: many
// small downloads whose answers arrive together all create their files at
// once, and creates that land together in one directory cost ~1 ms each
// of kernel time on ext4 (~30 us one at a time); before the request, they
// are spread over the time the answers take.

// reservations holds the PATH.tmp files made by Preflight and not taken
// yet, by PATH.tmp.
var reservations = struct {
	sync.Mutex
	files map[string]reservation
}{files: map[string]reservation{}}

type reservation struct {
	owner *FileSink // whose Preflight made it; only its Release removes it
	file  *os.File  // locked
}

// reserve creates PATH.tmp and locks it for the run that follows. An
// existing PATH.tmp (an earlier run's, to resume) is left to that run,
// and the directory is probed with a file of its own.
func (s *FileSink) reserve(dir string) error {
	f, err := s.openTmp(os.O_RDWR | os.O_CREATE | os.O_EXCL)
	switch {
	case errors.Is(err, fs.ErrExist):
		return probeDir(dir)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	case err != nil:
		return err
	}
	if err := lockFile(f); err != nil {
		// Only a lock taken on the new file between its create and this
		// lock; leave it to whoever took it.
		f.Close()
		if errors.Is(err, errLocked) {
			return &BusyError{Path: s.tmp}
		}
		return fmt.Errorf("lock %s: %w", s.tmp, err)
	}
	key := filepath.Clean(s.tmp)
	reservations.Lock()
	old, had := reservations.files[key]
	reservations.files[key] = reservation{owner: s, file: f}
	reservations.Unlock()
	if had { // cannot be: the create was exclusive; do not leak it
		old.file.Close()
	}
	return nil
}

// takeReserved returns the locked file a Preflight in this process made
// at tmp, if it is still there and no run took it yet.
func (s *FileSink) takeReserved() *os.File {
	key := filepath.Clean(s.tmp)
	reservations.Lock()
	r, ok := reservations.files[key]
	delete(reservations.files, key)
	reservations.Unlock()
	if !ok {
		return nil
	}
	if err := s.checkTmp(r.file); err != nil {
		r.file.Close() // renamed or removed since: not this run's
		return nil
	}
	return r.file
}

var _ pipeline.Releaser = (*FileSink)(nil)

// Release removes the PATH.tmp that this sink's Preflight made, if no
// run took it: it is empty and locked, and still at PATH.tmp.
func (s *FileSink) Release(env *pipeline.Env) {
	key := filepath.Clean(s.tmp)
	reservations.Lock()
	r, ok := reservations.files[key]
	if ok && r.owner == s {
		delete(reservations.files, key)
	}
	reservations.Unlock()
	if !ok || r.owner != s {
		return
	}
	defer r.file.Close()
	fi, err := r.file.Stat()
	if err == nil && fi.Size() == 0 && s.checkTmp(r.file) == nil {
		if err := os.Remove(s.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			env.Log.Warn().Err(err).Str("path", s.tmp).Msg("could not remove the empty partial download made before the run")
		}
	}
}
