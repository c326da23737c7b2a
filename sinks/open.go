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

// Resume opens and locks PATH.tmp, and reports what it already holds.
//
// The lock comes first, before anything is decided: a PATH.tmp without a
// state may be the file another download has just created, and a state may
// be one that download is about to replace. A PATH.tmp locked by another
// download fails the run with a *BusyError, having changed nothing. Then,
// with Resume on, a PATH.tmp whose state proves it holds bytes of the
// probed resource is kept as it is, and its ranges are reported (only the
// prefix in sequential mode, which writes one stream from there; see
// resumeFrom for when a state is trusted). Otherwise the run starts over:
// the stale state is removed and PATH.tmp is truncated in place, keeping
// the locked file (a new file would be a new, unlocked one, which another
// download could lock), and a warning says why. After a stage that
// reshapes the bytes (env.Reshaped) nothing is resumed and no state is
// kept: its offsets are not the resource's.
//
// On error nothing is left open, and a PATH.tmp that Resume created is
// removed.
func (s *FileSink) Resume(ctx context.Context, env *pipeline.Env) ([]pipeline.Range, io.ReaderAt, error) {
	s.release() // a previous run of this graph whose Commit never came
	s.direct, s.next, s.ahead, s.ready, s.state, s.ck, s.fresh, s.dirSynced = nil, 0, nil, false, nil, nil, false, false
	s.written.Store(0)
	s.directBytes.Store(0)
	s.cachedBytes.Store(0)
	s.switches.Store(0)
	s.directWrites.Store(0)
	s.have = pipeline.RangeSet{}
	s.size = -1
	res := env.Resource
	if res.SizeKnown() && !env.Reshaped {
		s.size = res.Size
	}
	if err := s.checkName(); err != nil {
		return nil, nil, err
	}
	if err := s.checkOutput(); err != nil {
		return nil, nil, err
	}
	// Nothing that is not a regular file is ever opened, replaced or
	// removed: refuse before touching anything.
	for _, p := range []string{s.statePath(), s.statePath() + newSuffix} {
		if fi, err := os.Lstat(p); err == nil && !fi.Mode().IsRegular() {
			return nil, nil, &notRegularError{Path: p, Mode: fi.Mode()}
		}
	}
	notResumable := Resumable(res)
	if env.Reshaped {
		notResumable = "a stage before the sink changes the bytes, so the partial file's offsets are not the server's"
	}
	if notResumable == "" {
		st := stateFor(res)
		s.state = &st
	}

	f, created, err := s.lockTmp()
	if err != nil {
		return nil, nil, err
	}
	present, err := s.prepare(env, f, created, notResumable)
	if err != nil {
		if created && s.checkTmp(f) == nil {
			_ = os.Remove(s.tmp) // empty, made by this run, and still locked
		}
		f.Close()
		return nil, nil, err
	}
	s.file, s.fd, s.fresh = f, int(f.Fd()), len(present) == 0
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
// error it leaves PATH.tmp to Finish, which the runner calls after a
// failed Start and which removes a PATH.tmp that holds nothing.
func (s *FileSink) Start(ctx context.Context, env *pipeline.Env) error {
	if s.file == nil {
		return errors.New("file sink: Start without a successful Resume")
	}
	if s.preallocate && s.size > 0 {
		if err := preallocate(s.file, s.size); err != nil {
			return fmt.Errorf("preallocate %d bytes for %s: %w", s.size, s.tmp, err)
		}
	}
	if s.directWay == DirectAlways || (s.directWay == DirectAuto && !s.small()) {
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

// small reports a download known to fit in one direct write (gather
// bytes): direct: auto would never choose direct I/O for it, and the
// final fsync flushes it at once, so it needs neither a direct descriptor
// nor writeback pacing. A batch of small files spent a tenth of its CPU
// setting those up.
func (s *FileSink) small() bool { return s.size >= 0 && s.size <= s.gather }

// lockAttempts bounds how often lockTmp opens PATH.tmp again after finding
// that the file it locked is no longer there.
const lockAttempts = 3

// lockTmp opens PATH.tmp, creating it (created) when there is none, and
// locks it without waiting; the file this download's Preflight made
// (reserve.go) counts as created. A lock held elsewhere is a *BusyError, and
// lockTmp then has changed nothing: it only opened and closed.
//
// The file it locked must still be the one at PATH.tmp: the download that
// held the lock may have renamed it to PATH, or removed it, between this
// open and this lock, and a lock on that file would then guard nothing
// (worse, truncating it would truncate the finished output). It opens
// again when that happened.
func (s *FileSink) lockTmp() (f *os.File, created bool, err error) {
	if f := s.takeReserved(); f != nil {
		return f, true, nil // made and locked by this download's Preflight
	}
	for range lockAttempts {
		f, err = s.openTmp(os.O_RDWR | os.O_CREATE | os.O_EXCL)
		created = err == nil
		if errors.Is(err, fs.ErrExist) {
			f, err = s.openTmp(os.O_RDWR)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since: create it
			}
		}
		if err != nil {
			return nil, false, err
		}
		if err := lockFile(f); err != nil {
			f.Close()
			if errors.Is(err, errLocked) {
				return nil, false, &BusyError{Path: s.tmp}
			}
			return nil, false, fmt.Errorf("lock %s: %w", s.tmp, err)
		}
		fi, err := f.Stat()
		if err == nil {
			err = s.checkTmp(f)
		}
		switch {
		case errors.Is(err, errReplaced):
			f.Close()
			continue
		case err == nil && links(fi) > 1:
			// A link left beside PATH by a rename made with link and
			// remove: writing would change the output too.
			err = fmt.Errorf("%s has %d hard links; refusing to write through it", s.tmp, links(fi))
		}
		if err != nil {
			f.Close()
			return nil, false, err
		}
		return f, created, nil
	}
	// It keeps changing: another download is creating, renaming or
	// removing it right now.
	return nil, false, &BusyError{Path: s.tmp}
}

// openTmp opens PATH.tmp with flag (and mode 0644 when it creates it),
// without following a symlink and without blocking in open(2). A symlink
// there is refused with symlinkError, anything else that is not a regular
// file with a *notRegularError; neither is opened for I/O (a device could
// act on an open) nor ever removed.
func (s *FileSink) openTmp(flag int) (*os.File, error) {
	if st, err := os.Lstat(s.tmp); err == nil {
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			return nil, symlinkError(s.tmp)
		case !st.Mode().IsRegular():
			return nil, &notRegularError{Path: s.tmp, Mode: st.Mode()}
		}
	}
	f, err := openRegular(s.tmp, flag, 0o644)
	if err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrNotExist) {
		// Made a symlink since the Lstat: O_NOFOLLOW fails with ELOOP on
		// Linux, EMLINK on FreeBSD.
		if st, lerr := os.Lstat(s.tmp); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
			return nil, symlinkError(s.tmp)
		}
	}
	return f, err
}

// errReplaced is what checkTmp's error wraps.
var errReplaced = errors.New("replaced or removed by someone else")

// checkTmp checks that PATH.tmp is still f, the file this run locked and
// wrote: same device and inode. Every step that acts on the name PATH.tmp
// (the rename, a state that describes it, a removal) checks first, so that
// it never acts on a file another program put there.
func (s *FileSink) checkTmp(f *os.File) error {
	held, err := f.Stat()
	if err != nil {
		return err
	}
	there, err := os.Lstat(s.tmp)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err != nil || !os.SameFile(held, there) {
		return fmt.Errorf("%s is no longer the file this download wrote: %w", s.tmp, errReplaced)
	}
	return nil
}

// prepare decides, on the locked PATH.tmp f, what of it this run keeps,
// and starts over when that is nothing: it removes the stale state, then
// empties f. It returns the present ranges.
func (s *FileSink) prepare(env *pipeline.Env, f *os.File, created bool, notResumable string) ([]pipeline.Range, error) {
	if !created {
		if err := s.checkOurs(f); err != nil {
			return nil, err
		}
	}
	why, detail := "", ""
	switch {
	case created:
		// Nothing to say; a state beside no PATH.tmp is what a crash
		// right after a rename leaves.
	case !s.resume:
		why = "resume is off for this run; discarding the partial download and starting over"
	case notResumable != "":
		why, detail = "cannot resume this download; starting over", notResumable
	default:
		present, w, d, err := s.resumeFrom(env, f)
		if err != nil || len(present) > 0 {
			return present, err
		}
		why, detail = w, d
	}
	// The old state goes first, and durably, so that a crash can never
	// leave it beside a PATH.tmp whose bytes it does not describe.
	had, err := removeState(s.statePath())
	if err != nil {
		return nil, fmt.Errorf("remove stale resume state: %w", err)
	}
	if had {
		if err := syncDir(filepath.Dir(s.tmp)); err != nil {
			return nil, err
		}
	}
	if created {
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	ev := env.Log.Warn().Str("path", s.tmp).Int64("bytes", fi.Size())
	if detail != "" {
		ev = ev.Str("reason", detail)
	}
	ev.Msg(why)
	if err := f.Truncate(0); err != nil {
		return nil, fmt.Errorf("start over: %w", err)
	}
	return nil, nil
}

// checkOurs refuses, unless Overwrite, a PATH.tmp f that holds bytes and
// has no state beside it: dlflow did not leave it (a download that fails
// keeps a state beside its PATH.tmp, see keep), so it may be a file of
// the user's own, such as notes.txt.tmp beside -o notes.txt, which
// starting over would empty. An empty one loses nothing. A download
// killed before its first checkpoint leaves such a PATH.tmp too; the
// error says how to replace it.
func (s *FileSink) checkOurs(f *os.File) error {
	if s.overwrite {
		return nil
	}
	if _, err := os.Lstat(s.statePath()); !errors.Is(err, fs.ErrNotExist) {
		return nil // a state, even one that is unreadable or stale, is dlflow's
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	return &ForeignTmpError{Path: s.tmp, Size: fi.Size()}
}

// resumeFrom returns the ranges of PATH.tmp (f) that this run may keep,
// or none and why it starts over. A state is trusted when it is for the
// probed resource (same size, and validators that match: see mismatch)
// and, when it was written for another URL than the one asked for now,
// when the content is proven the same (see otherURL). Its ranges are
// coarsened (see coarsen) and must lie within f.
func (s *FileSink) resumeFrom(env *pipeline.Env, f *os.File) (present []pipeline.Range, why, detail string, err error) {
	st, err := readState(s.statePath())
	var notRegular *notRegularError
	switch {
	case errors.Is(err, errNoState):
		return nil, "the partial download has no resume state beside it, so its bytes cannot be trusted; starting over", "", nil
	case errors.As(err, &notRegular):
		return nil, "", "", err // made a FIFO since Resume looked
	case err != nil:
		return nil, "the resume state of the partial download is unreadable; starting over", err.Error(), nil
	}
	res := env.Resource
	if d := s.otherURL(env, st); d != "" {
		// Not "the file changed": the partial data is of another file.
		return nil, fmt.Sprintf("%s holds a partial download of another URL (%s); %s; starting over", s.tmp, st.URL, d), "", nil
	}
	if d := st.Mismatch(res); d != "" {
		return nil, "the file changed on the server since the partial download; starting over", d, nil
	}
	present, _ = st.ranges() // checked by readState
	present = coarsen(present)
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
		return nil, "the partial download has no bytes this sink can continue from; starting over", "", nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, "", "", err
	}
	if end := present[len(present)-1].End; fi.Size() < end {
		return nil, "the partial download is shorter than its resume state says; starting over",
			fmt.Sprintf("%d bytes, state claims up to %d", fi.Size(), end), nil
	}
	var n int64
	for _, r := range present {
		n += r.Len()
	}
	env.Log.Info().Str("path", s.tmp).Int64("present", n).Int64("size", res.Size).Int("ranges", len(present)).
		Msg("resuming a partial download")
	return present, "", "", nil
}

// otherURL returns why the state, written for another URL than the one
// asked for now, cannot be trusted, or "" when it can: it is for the same
// URL, or it is for the probed resource (see mismatch) and something names
// the content itself rather than a version of a file. A short ETag ("e1")
// names a version of one resource, and many servers derive theirs from the
// file's modification time and size (nginx's "5f1e2d3c-100000"), so two
// URLs, on one server or on two, may share size, ETag and Last-Modified
// while their bytes differ. What does name the content: an ETag that can be
// a digest of it (see contentETag), or a checksum that the run verifies at
// the end, which fails a mixed file (and removes it) instead of keeping it.
func (s *FileSink) otherURL(env *pipeline.Env, st *resumeState) string {
	res := env.Resource
	if st.URLSum == urlSum(requested(res)) {
		return ""
	}
	if d := st.Mismatch(res); d != "" {
		return "it is not this URL's file: " + d
	}
	switch {
	case s.verifies:
		env.Log.Info().Str("was", st.URL).Msg("the partial download is of another URL; resuming, the checksum will verify the result")
		return ""
	case contentETag(res.ETag, res.Size):
		env.Log.Info().Str("was", st.URL).Str("etag", res.ETag).Msg("the partial download is of another URL with the same content ETag; resuming")
		return ""
	case res.ETag == "":
		return "without an ETag, size and Last-Modified do not prove the same content, and no checksum is set"
	}
	return fmt.Sprintf("its ETag %s does not prove the same content (only a digest-sized ETag does), and no checksum is set", res.ETag)
}

// release closes PATH.tmp, which drops the lock, and forgets it.
func (s *FileSink) release() {
	if s.direct != nil {
		s.direct.Close()
		s.direct = nil
	}
	if s.file != nil {
		s.file.Close()
		s.file, s.fd = nil, -1
	}
}

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
		return fmt.Errorf("%s is no longer the file this download opened: %w", f2.Name(), errReplaced)
	}
	return nil
}
