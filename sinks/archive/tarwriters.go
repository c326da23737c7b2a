package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Creating a file is what an extraction spends its time on: on ext4 a
// CPU profile of unpacking Go's distribution (15,000 files, 270 MiB)
// showed three quarters of the run in openat(O_CREAT), against a few
// percent for decoding gzip. One goroutine creating the files one after
// another waits on each; a few of them at once overlap those waits (and
// the file system takes creations in different directories at once).
// So small members are handed to a pool of writers, while the goroutine
// that reads the tar stream moves on to the next member.

// Defaults of the writer pool.
const (
	// DefaultWriters is how many goroutines create small files at once.
	DefaultWriters = 4
	// writerJobMax is the largest member handed to the pool; its bytes
	// are held in memory until written. Larger members, and sparse ones,
	// are written by the reading goroutine, as the stream passes.
	writerJobMax = 256 << 10
	// writerBuffers is how many such buffers exist per writer: a member
	// being written and one queued behind it.
	writerBuffers = 2
)

// writerMemory is what a pool of n writers holds at most.
func writerMemory(n int) int64 {
	if n <= 1 {
		return 0
	}
	return int64(n) * writerBuffers * writerJobMax
}

// fileJob is one small member for a writer: its bytes are in data.
type fileJob struct {
	dir    *dirRoot // the directory it goes in, held (refs) until written
	base   string   // its name in dir
	name   string   // the path under the extraction's root (from memberPath)
	member string   // the archive's name for it, for errors
	mode   fs.FileMode
	mtime  time.Time
	data   []byte // hdr.Size bytes, or nil for an empty file
	buf    []byte // the pool's buffer data is in; returned when written
}

// writers is the pool. The reading goroutine (the owner) calls submit,
// settle, settleAll and close; the workers only take jobs. The owner
// keeps the order an archive relies on by waiting: before it touches a
// name a writer holds (a member that replaces an earlier one), it calls
// settle; before it makes directories or hard links, settleAll. A member
// file is therefore never created, removed or linked to while a writer
// may still be creating it.
type writers struct {
	ctx  context.Context
	jobs chan fileJob
	free chan []byte // buffers of writerJobMax bytes not in use
	made int         // buffers allocated so far; owner only
	wg   sync.WaitGroup

	mu       sync.Mutex
	idle     *sync.Cond          // signalled when pending empties
	pending  map[string]struct{} // names queued or being written
	err      error               // the first failure
	errName  string              // the member that failed
	closed   bool
	capacity int // buffers the pool may allocate
}

// newWriters starts n writers creating files; they stop when close is
// called (ctx stops them early: their jobs are then dropped).
func newWriters(ctx context.Context, n int) *writers {
	w := &writers{
		ctx:      ctx,
		jobs:     make(chan fileJob, n*writerBuffers),
		free:     make(chan []byte, n*writerBuffers),
		pending:  map[string]struct{}{},
		capacity: n * writerBuffers,
	}
	w.idle = sync.NewCond(&w.mu)
	for range n {
		w.wg.Go(w.work)
	}
	return w
}

// buffer is a buffer for a job, waiting for a writer to return one when
// all are in use.
func (w *writers) buffer() []byte {
	select {
	case b := <-w.free:
		return b
	default:
	}
	if w.made < w.capacity {
		w.made++
		return make([]byte, writerJobMax)
	}
	return <-w.free
}

// release returns a job's buffer unused (when the owner could not fill it).
func (w *writers) release(b []byte) {
	if b != nil {
		w.free <- b
	}
}

// submit queues a job. It reports the first failure of any writer so
// far; after one, the owner stops (the job is dropped).
func (w *writers) submit(j fileJob) error {
	w.mu.Lock()
	if err := w.failure(); err != nil {
		w.mu.Unlock()
		w.release(j.buf)
		return err
	}
	w.pending[j.name] = struct{}{}
	w.mu.Unlock()
	w.jobs <- j
	return nil
}

// failure is the first failure of a writer as a *MemberError, or nil.
// The caller holds mu.
func (w *writers) failure() error {
	if w.err == nil {
		return nil
	}
	return &MemberError{Member: w.errName, Err: w.err}
}

func (w *writers) work() {
	for j := range w.jobs {
		err := w.ctx.Err()
		w.mu.Lock()
		failed := w.err != nil
		w.mu.Unlock()
		if err == nil && !failed {
			err = writeSmall(j)
		}
		j.dir.refs.Add(-1)
		if j.buf != nil {
			w.free <- j.buf
		}
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err, w.errName = err, j.member
		}
		delete(w.pending, j.name)
		if len(w.pending) == 0 {
			w.idle.Broadcast()
		}
		w.mu.Unlock()
	}
}

// settle waits for the writers to finish every job when one of them is
// on name; it returns the first failure of any writer (a *MemberError).
// A nil pool has nothing to wait for.
func (w *writers) settle(name string) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pending[name]; ok {
		for len(w.pending) > 0 {
			w.idle.Wait()
		}
	}
	return w.failure()
}

// settleAll waits for the writers to finish every job queued; it returns
// the first failure of any writer (a *MemberError).
func (w *writers) settleAll() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) > 0 {
		w.idle.Wait()
	}
	return w.failure()
}

// close waits for the writers to finish and stop, and returns the first
// failure (a *MemberError). It may be called more than once.
func (w *writers) close() error {
	w.mu.Lock()
	closed := w.closed
	w.closed = true
	w.mu.Unlock()
	if !closed {
		close(w.jobs)
	}
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failure()
}

// writeSmall creates a job's file, as TarExtract.file does for a member
// it writes itself.
func writeSmall(j fileJob) error {
	root := j.dir.root
	// O_EXCL: never through a symlink, never into a file it did not make.
	f, err := root.OpenFile(j.base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, j.mode)
	if err != nil {
		return err
	}
	if len(j.data) > 0 {
		_, err = f.Write(j.data)
	}
	if err == nil {
		err = f.Chmod(j.mode) // the mode asked, whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !j.mtime.IsZero() {
		_ = root.Chtimes(j.base, j.mtime, j.mtime) // a time it cannot set does not spoil the file
	}
	return nil
}

// closeIfAny is close on a pool, nil without one.
func (w *writers) closeIfAny() error {
	if w == nil {
		return nil
	}
	return w.close()
}

// submitFile reads a small member's bytes and hands the file to the
// writers. Its bytes are counted now: the run fails if the writer does.
func (s *TarExtract) submitFile(d *dirRoot, base, name string, hdr *tar.Header, r io.Reader, mode fs.FileMode) error {
	j := fileJob{dir: d, base: base, name: name, member: hdr.Name, mode: mode, mtime: hdr.ModTime}
	if hdr.Size > 0 {
		j.buf = s.w.buffer()
		n, err := io.ReadFull(r, j.buf[:hdr.Size])
		if err != nil {
			s.w.release(j.buf)
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("got %d of its %d bytes", n, hdr.Size)
			}
			return err
		}
		j.data = j.buf[:n]
	}
	d.refs.Add(1)
	if err := s.w.submit(j); err != nil {
		d.refs.Add(-1)
		return err
	}
	s.files++
	s.bytes += hdr.Size
	return nil
}
