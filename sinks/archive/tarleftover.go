package archive

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// errNoExchange is exchangeDirs' error where the system cannot swap two
// directories in one step.
var errNoExchange = errors.New("no atomic exchange of directories here")

// lockLeftover opens and locks p (the temporary directory of a run, or
// its zip spool) for as long as the run owns it: the lock tells a live
// run's from a killed run's, which the next run collects. Where the
// system cannot lock it, it returns p open and unlocked: then no run can
// lock it either, and no run takes it for a dead run's.
func lockLeftover(p string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if err := fsx.LockFile(f); errors.Is(err, fsx.ErrLocked) {
		f.Close()
		return nil, err
	}
	return f, nil
}

// leftoverAge is how old a leftover must be to be collected: a run makes
// its temporary directory, then locks it, and one that has not locked it
// yet must not lose it to another run starting at that moment.
const leftoverAge = time.Minute

// collectLeftovers removes what killed runs on the same DIR left next to
// it: temporary directories (".NAME.tmp-*", and a directory an overwrite
// moved aside, ".NAME.tmp-*.old") and zip spools (".NAME.zip-*"). A run
// holds a lock on its own (lockLeftover) until it ends, so one that can
// be locked has no live owner; a run that dies loses its lock with its
// process. A leftover younger than leftoverAge is left for a later run
// (see leftoverAge). Where the system has no locks (leftoverLocks
// false), nothing is collected: age alone cannot tell a slow run from a
// dead one. What cannot be removed is left, with a warning.
func (s *TarExtract) collectLeftovers(env *pipeline.Env) {
	if !leftoverLocks {
		return
	}
	base := filepath.Join(filepath.Dir(s.dir), "."+filepath.Base(s.dir))
	var found []string
	for _, pat := range []string{base + ".tmp-*", base + ".zip-*"} {
		m, _ := filepath.Glob(pat) // the only error is a bad pattern
		found = append(found, m...)
	}
	for _, p := range found {
		if st, err := os.Lstat(p); err != nil || time.Since(st.ModTime()) < leftoverAge {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue // gone, or not ours to open
		}
		if fsx.LockFile(f) != nil {
			f.Close() // a live run's
			continue
		}
		// Locked now: no other run opens it, and the lock goes with the
		// descriptor (closed first, as Windows will not remove an open
		// file).
		f.Close()
		if err := removeTree(p); err != nil {
			env.Log.Warn().Err(err).Str("path", p).Msg("could not remove what an earlier run left")
			continue
		}
		env.Log.Info().Str("path", p).Msg("removed what an earlier, killed run left")
	}
}
