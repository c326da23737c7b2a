package sinks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/rs/zerolog"
)

// Finish ends the run's writing to PATH.tmp. After a successful run it
// checks that every byte of the resource is there and fsyncs the file,
// which then stays open and locked for Commit to rename. After a failure
// it closes PATH.tmp, which drops the lock, and before that:
//
//   - removes PATH.tmp and its state when the bytes failed verification
//     (pipeline.ErrCorrupt): they must not be resumed;
//   - removes them when PATH.tmp holds nothing of an earlier run and this
//     run wrote nothing into it: there is nothing to resume;
//   - otherwise keeps PATH.tmp (cut to the prefix received, in sequential
//     mode) and saves its resume state.
//
// It removes or saves nothing by the name PATH.tmp once that is no longer
// this run's file (see checkTmp).
func (s *FileSink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	f := s.file
	if f == nil {
		return nil
	}
	if s.ck != nil {
		s.ck.halt()
		s.ck = nil
	}
	if s.direct != nil {
		// Its writes are complete when they return; the fsync and close
		// of the ordinary descriptor cover the file.
		s.direct.Close()
		s.direct = nil
	}
	err := runErr
	if err == nil {
		if err = s.complete(f); err == nil {
			s.ready = true
			return nil
		}
	}
	defer s.release()
	switch {
	case errors.Is(runErr, pipeline.ErrCorrupt):
		s.remove(env, zerolog.InfoLevel, "removed the download: its bytes failed verification, so they are not kept for resume")
	case s.fresh && s.written.Load() == 0:
		s.remove(env, zerolog.DebugLevel, "removed the empty partial download: nothing was received")
	default:
		s.keep(env)
	}
	if runErr != nil {
		return nil // the run already reports its error
	}
	return err
}

// keep leaves PATH.tmp for a rerun: cut to the prefix received in
// sequential mode (preallocation made it longer), with its state saved.
// Both act on this run's file only: the truncation through its
// descriptor, the state after checking the name (checkpoint).
func (s *FileSink) keep(env *pipeline.Env) {
	if !s.positional {
		_ = s.file.Truncate(s.next)
	}
	if s.state != nil {
		if err := s.checkpoint(); errors.Is(err, errReplaced) {
			s.disown(env, err)
			return
		} else if err != nil {
			env.Log.Warn().Err(err).Str("path", s.tmp).Msg("could not save the resume state; a rerun starts over")
		}
	} else if err := s.markOurs(env); errors.Is(err, errReplaced) {
		s.disown(env, err)
		return
	} else if err != nil {
		env.Log.Warn().Err(err).Str("path", s.tmp).Msg("could not save the resume state; a rerun needs overwrite to replace the partial download")
	}
	s.mu.Lock()
	have := s.have.Len()
	s.mu.Unlock()
	env.Log.Info().Str("path", s.tmp).Int64("bytes", have).Bool("resumable", s.state != nil).Msg("kept partial download")
}

// markOurs saves, beside a PATH.tmp that cannot be resumed, a state of no
// ranges: it claims no byte, so a rerun starts over, but it says that
// dlflow left the file, which a rerun may then empty (see checkOurs).
func (s *FileSink) markOurs(env *pipeline.Env) error {
	if err := s.checkTmp(s.file); err != nil {
		return err
	}
	st := stateFor(env.Resource)
	return writeState(s.statePath(), &st)
}

// remove deletes the state and PATH.tmp, still locked, and logs done at
// level. A name that no longer leads to this run's file is left alone.
func (s *FileSink) remove(env *pipeline.Env, level zerolog.Level, done string) {
	if err := s.checkTmp(s.file); err != nil {
		s.disown(env, err)
		return
	}
	_, err := removeState(s.statePath())
	if rerr := os.Remove(s.tmp); err == nil {
		err = rerr
	}
	if err != nil {
		env.Log.Error().Err(err).Str("path", s.tmp).Msg("could not remove the partial download")
		return
	}
	env.Log.WithLevel(level).Str("path", s.tmp).Msg(done)
}

// disown handles a PATH.tmp that is no longer this run's file (err says
// so): whatever is there now is left alone, and the state is removed,
// since it described this run's file and must not vouch for another's
// bytes in a rerun.
func (s *FileSink) disown(env *pipeline.Env, err error) {
	if s.state != nil {
		if _, rerr := removeState(s.statePath()); rerr != nil {
			env.Log.Error().Err(rerr).Str("path", s.statePath()).Msg("could not remove the resume state")
		}
	}
	env.Log.Error().Err(err).Str("path", s.tmp).Msg("the partial download was replaced or removed by someone else; left it alone")
}

func (s *FileSink) complete(f *os.File) error {
	s.mu.Lock()
	have := s.have.Len()
	s.mu.Unlock()
	if s.size >= 0 && have != s.size {
		if !s.positional {
			_ = f.Truncate(s.next)
		}
		return fmt.Errorf("incomplete: wrote %d of %d bytes", have, s.size)
	}
	if s.size < 0 && !s.positional {
		if err := f.Truncate(s.next); err != nil {
			return err
		}
	}
	if s.fsync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// Commit renames PATH.tmp to PATH and, with fsync on, fsyncs the directory
// so that the rename is durable; then it removes the resume state, which
// describes a PATH.tmp that no longer exists, and closes the file, which
// drops the lock only once all that is done. PATH.tmp must still be the
// file this run wrote: otherwise nothing is renamed and the error wraps
// errReplaced. Without Overwrite an output that appeared during the run is
// left alone and the error wraps ErrOutputExists.
func (s *FileSink) Commit(ctx context.Context, env *pipeline.Env) error {
	if !s.ready {
		return errors.New("file sink: Commit without a successful Finish")
	}
	s.ready = false
	defer s.release()
	// Another program may have replaced PATH.tmp; the rename must not
	// publish its bytes as this download. (Another dlflow cannot: it
	// would have to lock this file first.)
	if err := s.checkTmp(s.file); err != nil {
		s.disown(env, err)
		return err
	}
	if err := s.rename(); err != nil {
		return err
	}
	if s.fsync {
		if err := syncDir(filepath.Dir(s.path)); err != nil {
			return err
		}
	}
	// A state left by a crash right here is harmless: without PATH.tmp the
	// next run removes it.
	if _, err := removeState(s.statePath()); err != nil {
		env.Log.Warn().Err(err).Msg("could not remove the resume state")
	}
	env.Log.Debug().Str("path", s.path).Int64("bytes", s.written.Load()).Msg("output complete")
	return nil
}

func (s *FileSink) rename() error {
	if s.overwrite {
		return os.Rename(s.tmp, s.path)
	}
	return renameNoReplace(s.tmp, s.path)
}

// linkRename renames oldpath to newpath unless newpath exists, where the
// system has no rename that refuses to replace: a hard link refuses an
// existing name, atomically; then the old name goes.
func linkRename(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &OutputExistsError{Path: newpath}
		}
		return err
	}
	return os.Remove(oldpath)
}
