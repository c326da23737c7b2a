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
// writes, before any network I/O. The sink's own Resume then takes that
// file over (lockTmp); if the run never comes (the probe failed, the
// download ended), Release removes it.
//
// A caller that must check the output before it knows which graph runs
// (dlflow's automatic topology, picked after the probe) calls Reserve,
// which does the same without a graph, and hands the *Reservation to the
// run's sink through FileConfig.Reserved. Nothing is shared through
// process-wide state: a reservation belongs to whoever made it.
//
// Why not create it in Resume, as a rerun that finds PATH.tmp does: many
// small downloads whose answers arrive together all create their files at
// once, and creates that land together in one directory cost ~1 ms each
// of kernel time on ext4 (~30 us one at a time); before the request, they
// are spread over the time the answers take.

// Reservation is a PATH.tmp made and locked before the run that writes
// it, or the record that the output was checked and an earlier run's
// PATH.tmp is there to resume. Its methods are safe for concurrent use.
type Reservation struct {
	tmp string
	mu  sync.Mutex
	// file is the locked PATH.tmp this reservation made; nil when it made
	// none (an earlier run's was there) or once taken or released.
	file *os.File
}

// Reserve checks path as a file.sink's Preflight does (its name, its
// directory, what is in the way at PATH and PATH.tmp) and makes PATH.tmp,
// locked, for the sink that runs next with FileConfig.Reserved set to the
// result. Release it once that run is over, or when no run comes.
func Reserve(path string, overwrite bool) (*Reservation, error) {
	path = filepath.Clean(path)
	s := &FileSink{path: path, tmp: path + tmpSuffix, overwrite: overwrite}
	if err := s.preflight(); err != nil {
		return nil, err
	}
	return s.reserved, nil
}

// holds reports whether r still holds the PATH.tmp it made.
func (r *Reservation) holds() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.file != nil
}

// take returns the locked file, if the reservation still holds one that
// is still at PATH.tmp; the caller owns it from then on.
func (r *Reservation) take(s *FileSink) *os.File {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	f := r.file
	r.file = nil
	r.mu.Unlock()
	if f == nil || filepath.Clean(r.tmp) != filepath.Clean(s.tmp) {
		if f != nil {
			f.Close()
		}
		return nil
	}
	if err := s.checkTmp(f); err != nil {
		f.Close() // renamed or removed since: not this run's
		return nil
	}
	return f
}

// Release removes the PATH.tmp that the reservation made, if no run took
// it: it is empty and locked, and still at PATH.tmp. It returns what
// stopped the removal; a reservation that holds nothing returns nil.
func (r *Reservation) Release() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	f := r.file
	r.file = nil
	r.mu.Unlock()
	if f == nil {
		return nil
	}
	defer f.Close()
	s := &FileSink{tmp: r.tmp}
	fi, err := f.Stat()
	if err == nil && fi.Size() == 0 && s.checkTmp(f) == nil {
		if err := os.Remove(r.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// reserve creates PATH.tmp and locks it for the run that follows. An
// existing PATH.tmp (an earlier run's, to resume) is left to that run,
// and the directory is probed with a file of its own.
func (s *FileSink) reserve(dir string) error {
	s.reserved = &Reservation{tmp: s.tmp}
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
	s.reserved.file = f
	return nil
}

var _ pipeline.Releaser = (*FileSink)(nil)

// Release removes the PATH.tmp that this sink's Preflight made, if its
// run did not take it. A reservation handed in through
// FileConfig.Reserved is its maker's to release.
func (s *FileSink) Release(env *pipeline.Env) {
	if !s.ownsReserved {
		return
	}
	if err := s.reserved.Release(); err != nil {
		env.Log.Warn().Err(err).Str("path", s.tmp).Msg("could not remove the empty partial download made before the run")
	}
}
