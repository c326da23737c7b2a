package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// The life of DIR around a tar.extract run: Preflight checks it before any
// network I/O, Start makes the temporary directory next to it, Finish
// syncs or removes that, and Commit renames it to DIR. See TarExtract.

// Preflight refuses, before any network I/O, a DIR that exists (unless
// overwrite, for a directory) and a parent that does not take a new
// directory.
func (s *TarExtract) Preflight(ctx context.Context, env *pipeline.Env) error {
	parent := filepath.Dir(s.dir)
	if err := fsx.IsDir(parent); err != nil {
		return err
	}
	if err := s.checkDir(); err != nil {
		return err
	}
	return fsx.ProbeDir(parent)
}

// checkDir reports what is in the way at DIR.
func (s *TarExtract) checkDir() error {
	st, err := os.Lstat(s.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case !s.overwrite:
		return &sinks.OutputExistsError{Path: s.dir}
	case !st.IsDir():
		return fmt.Errorf("output %s exists and is not a directory; it is not replaced", s.dir)
	}
	return nil
}

// Start makes the temporary directory next to DIR.
func (s *TarExtract) Start(ctx context.Context, env *pipeline.Env) error {
	if err := s.checkDir(); err != nil {
		return err
	}
	s.files, s.bytes, s.ready = 0, 0, false
	s.tree, s.dirModes = newPathTree(), map[string]fs.FileMode{}
	s.collectLeftovers(env)
	tmp, err := os.MkdirTemp(filepath.Dir(s.dir), "."+filepath.Base(s.dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	var lock *os.File // what tells this run's tmp from a killed run's
	if leftoverLocks {
		if lock, err = lockLeftover(tmp); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("temporary directory: %w", err)
		}
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.Remove(tmp)
		return fmt.Errorf("temporary directory: %w", err)
	}
	s.tmp, s.root, s.lock = tmp, root, lock
	s.dirModes["."] = 0o755 // MkdirTemp made it 0o700
	return nil
}

// Finish closes the temporary directory; after a success it sets the
// directories' modes and makes everything durable, after a failure it
// removes the temporary directory.
func (s *TarExtract) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	if s.root == nil {
		return nil
	}
	err := runErr
	if err == nil {
		err = s.setDirModes()
	}
	if cerr := s.root.Close(); err == nil {
		err = cerr
	}
	s.root = nil
	if err == nil && s.fsync {
		err = syncTree(s.tmp)
	}
	if err != nil {
		s.discard(env)
		if runErr != nil {
			return nil // the run's error says it
		}
		return err
	}
	s.ready = true
	return nil
}

// setDirModes gives the directories their modes, deepest first (a
// directory that loses write permission for its owner would refuse the
// changes below it; dirMode keeps it, but the order costs nothing).
func (s *TarExtract) setDirModes() error {
	names := make([]string, 0, len(s.dirModes))
	for name := range s.dirModes {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return strings.Count(names[i], "/") > strings.Count(names[j], "/") })
	for _, name := range names {
		if err := s.root.Chmod(name, s.dirModes[name]); err != nil {
			return err
		}
	}
	return nil
}

// discard removes the temporary directory, of any depth (removeTree).
func (s *TarExtract) discard(env *pipeline.Env) {
	if s.tmp == "" {
		return
	}
	if err := removeTree(s.tmp); err != nil {
		env.Log.Warn().Err(err).Str("dir", s.tmp).Msg("could not remove the partial extraction")
	}
	s.unlock()
	s.tmp, s.ready = "", false
}

// unlock releases the temporary directory's lock: the directory is gone,
// or it is DIR.
func (s *TarExtract) unlock() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// Commit renames the temporary directory to DIR (replacing an existing
// DIR with overwrite) and fsyncs DIR's parent.
func (s *TarExtract) Commit(ctx context.Context, env *pipeline.Env) error {
	if !s.ready {
		return errors.New("commit without a complete extraction")
	}
	err := s.rename(env)
	if err != nil {
		s.discard(env)
		return err
	}
	s.unlock()
	s.tmp, s.ready = "", false
	if s.fsync {
		if err := fsx.SyncDir(filepath.Dir(s.dir)); err != nil {
			return fmt.Errorf("sync %s: %w", filepath.Dir(s.dir), err)
		}
	}
	env.Log.Debug().Str("dir", s.dir).Int64("files", s.files).Int64("bytes", s.bytes).Msg("extracted")
	return nil
}

// rename puts the temporary directory at DIR. With overwrite, an
// existing DIR is swapped with it in one step where the system can
// (renameat2 RENAME_EXCHANGE on Linux), so that no moment exists without
// a DIR; elsewhere the old DIR is renamed aside, the new one renamed in,
// and the old one removed. Either way the old tree is removed after.
func (s *TarExtract) rename(env *pipeline.Env) error {
	if !s.overwrite {
		return renameDirNoReplace(s.tmp, s.dir)
	}
	if err := s.checkDir(); err != nil {
		return err
	}
	old, err := s.swapDir()
	if err != nil {
		return err
	}
	if old != "" {
		if err := removeTree(old); err != nil {
			env.Log.Warn().Err(err).Str("dir", old).Msg("could not remove the replaced directory")
		}
	}
	return nil
}

// swapDir puts tmp at DIR, replacing a directory there, and returns where
// the old directory went ("" when there was none).
func (s *TarExtract) swapDir() (string, error) {
	switch err := exchangeDirs(s.tmp, s.dir); {
	case err == nil:
		return s.tmp, nil // the old DIR is where tmp was
	case errors.Is(err, fs.ErrNotExist):
		return "", renameDirNoReplace(s.tmp, s.dir) // DIR went away
	case !errors.Is(err, errNoExchange):
		return "", fmt.Errorf("replace %s: %w", s.dir, err)
	}
	aside := s.tmp + ".old"
	if err := os.Rename(s.dir, aside); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("move the old %s aside: %w", s.dir, err)
		}
		return "", renameDirNoReplace(s.tmp, s.dir)
	}
	if err := renameDirNoReplace(s.tmp, s.dir); err != nil {
		_ = os.Rename(aside, s.dir) // put the old one back
		return "", err
	}
	return aside, nil
}
