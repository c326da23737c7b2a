package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dlflow/dlflow/pipeline"
)

// Resume opens PATH.tmp and reports what it already holds. With Resume
// on, a PATH.tmp whose state file proves it holds bytes of the probed
// resource (same size and validators) is reopened as it is, and its ranges
// are reported (only the prefix in sequential mode, which writes one
// stream from there). Otherwise PATH.tmp is created afresh, exclusively; a
// stale one is removed first, after its state, and a log line says why.
// After a stage that reshapes the bytes (env.Reshaped) nothing is resumed
// and no state is kept: its offsets are not the resource's. On error
// nothing is left open.
func (s *FileSink) Resume(ctx context.Context, env *pipeline.Env) ([]pipeline.Range, io.ReaderAt, error) {
	s.file, s.fd, s.direct, s.next, s.ready, s.state, s.ck, s.created = nil, -1, nil, 0, false, nil, nil, false
	s.written.Store(0)
	s.have = pipeline.RangeSet{}
	s.size = -1
	res := env.Resource
	if res.SizeKnown() && !env.Reshaped {
		s.size = res.Size
	}
	if err := s.checkOutput(); err != nil {
		return nil, nil, err
	}
	notResumable := resumable(res)
	if env.Reshaped {
		notResumable = "a stage before the sink changes the bytes, so the partial file's offsets are not the server's"
	}
	if notResumable == "" {
		st := stateFor(res)
		s.state = &st
	}

	f, present, err := s.open(env, notResumable)
	if err != nil {
		return nil, nil, err
	}
	s.file, s.fd, s.created = f, int(f.Fd()), len(present) == 0
	if len(present) == 0 {
		return nil, nil, nil
	}
	for _, r := range present {
		s.have.Add(r)
	}
	s.next = s.have.PrefixEnd()
	return present, f, nil
}

// Start preallocates PATH.tmp when the size is known, opens it for direct
// I/O when configured, and starts the checkpoints of the resume state. On
// error the file is closed, and removed if Resume created it (it holds no
// data).
func (s *FileSink) Start(ctx context.Context, env *pipeline.Env) error {
	if s.file == nil {
		return errors.New("file sink: Start without a successful Resume")
	}
	if s.preallocate && s.size > 0 {
		if err := preallocate(s.file, s.size); err != nil {
			s.file.Close()
			s.file, s.fd = nil, -1
			if s.created {
				os.Remove(s.tmp)
			}
			return fmt.Errorf("preallocate %d bytes for %s: %w", s.size, s.tmp, err)
		}
	}
	if s.useDirect {
		d, err := openDirect(s.file, s.tmp)
		if err != nil {
			// Not fatal: the page cache is slower, not wrong.
			env.Log.Warn().Err(err).Str("path", s.tmp).Msg("cannot open for direct I/O; writing through the page cache")
		}
		s.direct = d
	}
	if s.state != nil {
		s.ck = startCheckpointer(s)
	}
	return nil
}

// open returns PATH.tmp ready to write and the ranges of it already
// present: a resumed partial download, or a new empty file.
func (s *FileSink) open(env *pipeline.Env, notResumable string) (*os.File, []pipeline.Range, error) {
	why, detail := "", ""
	switch {
	case !s.resume:
		why = "resume is off (resume: false or --no-resume); discarding the partial download and starting over"
	case notResumable != "":
		why, detail = "cannot resume this download; starting over", notResumable
	default:
		f, present, w, d, err := s.reopen(env)
		if err != nil || f != nil {
			return f, present, err
		}
		why, detail = w, d
	}
	// The old state goes first, and durably, so that a crash can never
	// leave it beside a new PATH.tmp whose bytes it does not describe.
	had, err := removeState(s.tmp + ".state")
	if err != nil {
		return nil, nil, fmt.Errorf("remove stale resume state: %w", err)
	}
	if had {
		if err := syncDir(filepath.Dir(s.tmp)); err != nil {
			return nil, nil, err
		}
	}
	f, err := s.create(env, why, detail)
	return f, nil, err
}

// reopen opens PATH.tmp for resuming when its state matches the resource.
// When it does not, it returns no file and why it starts over (why is ""
// when there is no PATH.tmp, which needs no explanation).
func (s *FileSink) reopen(env *pipeline.Env) (f *os.File, present []pipeline.Range, why, detail string, err error) {
	if _, err := os.Lstat(s.tmp); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "", "", nil
	}
	st, err := readState(s.tmp + ".state")
	switch {
	case errors.Is(err, errNoState):
		return nil, nil, "the partial download has no resume state beside it, so its bytes cannot be trusted; starting over", "", nil
	case err != nil:
		return nil, nil, "the resume state of the partial download is unreadable; starting over", err.Error(), nil
	}
	res := env.Resource
	if d := st.mismatch(res); d != "" {
		return nil, nil, "the file changed on the server since the partial download; starting over", d, nil
	}
	present, _ = st.ranges() // checked by readState
	if !s.positional {
		// One stream can only continue where the prefix ends; bytes after
		// a hole are fetched again.
		if len(present) > 0 && present[0].Start == 0 {
			present = present[:1]
		} else {
			present = nil
		}
	}
	if len(present) == 0 {
		return nil, nil, "the partial download has no bytes this sink can continue from; starting over", "", nil
	}
	f, err = s.openTmp(os.O_RDWR)
	if err != nil {
		return nil, nil, "", "", err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, nil, "", "", err
	case fi.Size() < present[len(present)-1].End:
		f.Close()
		return nil, nil, "the partial download is shorter than its resume state says; starting over",
			fmt.Sprintf("%d bytes, state claims up to %d", fi.Size(), present[len(present)-1].End), nil
	}
	if st.URL != res.URL {
		env.Log.Info().Msg("the URL differs from the partial download's, but size and validators match; resuming")
	}
	var n int64
	for _, r := range present {
		n += r.Len()
	}
	env.Log.Info().Str("path", s.tmp).Int64("present", n).Int64("size", res.Size).Int("ranges", len(present)).
		Msg("resuming a partial download")
	return f, present, "", "", nil
}

// create makes a new PATH.tmp exclusively. A regular file in the way is
// removed, with a log line saying why it was not resumed.
func (s *FileSink) create(env *pipeline.Env, why, detail string) (*os.File, error) {
	const flags = os.O_RDWR | os.O_CREATE | os.O_EXCL
	f, err := s.openTmp(flags)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return f, err
	}
	// O_EXCL fails on any existing name, symlinks included, without
	// following them; look at what is there.
	st, lerr := os.Lstat(s.tmp)
	switch {
	case lerr != nil:
		return nil, err
	case st.Mode()&fs.ModeSymlink != 0:
		return nil, symlinkError(s.tmp)
	case !st.Mode().IsRegular():
		return nil, &notRegularError{Path: s.tmp, Mode: st.Mode()}
	}
	if why == "" {
		why = "removing a partial download left by an earlier run; starting over"
	}
	ev := env.Log.Warn().Str("path", s.tmp).Int64("bytes", st.Size())
	if detail != "" {
		ev = ev.Str("reason", detail)
	}
	ev.Msg(why)
	if err := os.Remove(s.tmp); err != nil {
		return nil, err
	}
	return s.openTmp(flags)
}

// openTmp opens PATH.tmp with flag (and mode 0644 when it creates it). A
// symlink there is refused with symlinkError, anything else that is not a
// regular file with a *notRegularError.
func (s *FileSink) openTmp(flag int) (*os.File, error) {
	f, err := openRegular(s.tmp, flag, 0o644)
	if err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrNotExist) {
		// O_NOFOLLOW fails with ELOOP on Linux, EMLINK on FreeBSD.
		if st, lerr := os.Lstat(s.tmp); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
			return nil, symlinkError(s.tmp)
		}
	}
	return f, err
}

// errLocked is lockFile's error when another download holds the lock.
var errLocked = errors.New("locked")

// sameFile checks that f2 is the file f1 is.
func sameFile(f1, f2 *os.File) error {
	a, err := f1.Stat()
	if err != nil {
		return err
	}
	b, err := f2.Stat()
	if err != nil {
		return err
	}
	if !os.SameFile(a, b) {
		return fmt.Errorf("%s is no longer the file this download opened", f2.Name())
	}
	return nil
}
