package sinks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dlflow/dlflow/pipeline"
)

// Finish closes PATH.tmp. After a successful run it first checks that every
// byte of the resource is there and fsyncs the file; only then may Commit
// rename it. After a failure it keeps PATH.tmp as partial data and saves
// its resume state, unless the failure says the data is corrupt
// (pipeline.ErrCorrupt): then PATH.tmp and its state are removed.
func (s *FileSink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	f := s.file
	if f == nil {
		return nil
	}
	if s.ck != nil {
		s.ck.halt()
	}
	defer func() { s.file, s.fd = nil, -1 }()
	if s.direct != nil {
		// Its writes are complete when they return; the fsync and close
		// of the ordinary descriptor cover the file.
		s.direct.Close()
		s.direct = nil
	}

	if errors.Is(runErr, pipeline.ErrCorrupt) {
		f.Close()
		rerr := os.Remove(s.tmp)
		if _, err := removeState(s.tmp + ".state"); rerr == nil {
			rerr = err
		}
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			env.Log.Error().Err(rerr).Str("path", s.tmp).Msg("could not remove the corrupt download")
		} else {
			env.Log.Info().Str("path", s.tmp).Msg("removed the download: its bytes failed verification, so they are not kept for resume")
		}
		return nil
	}

	err := runErr
	if err == nil {
		err = s.complete(f)
	} else if !s.positional {
		// Preallocation made the file longer than the data; cut it so that
		// PATH.tmp is exactly the prefix that was received.
		_ = f.Truncate(s.next)
	}
	if err != nil && s.state != nil {
		if cerr := s.checkpoint(); cerr != nil {
			env.Log.Warn().Err(cerr).Str("path", s.tmp).Msg("could not save the resume state; a rerun starts over")
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		s.mu.Lock()
		have := s.have.Len()
		s.mu.Unlock()
		env.Log.Info().Str("path", s.tmp).Int64("bytes", have).Bool("resumable", s.state != nil).Msg("kept partial download")
		if runErr != nil {
			return nil // the run already reports its error
		}
		return err
	}
	s.ready = true
	return nil
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
// describes a PATH.tmp that no longer exists. Without Overwrite an output
// that appeared during the run is left alone and the error wraps
// ErrOutputExists.
func (s *FileSink) Commit(ctx context.Context, env *pipeline.Env) error {
	if !s.ready {
		return errors.New("file sink: Commit without a successful Finish")
	}
	s.ready = false
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
	if _, err := removeState(s.tmp + ".state"); err != nil {
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
