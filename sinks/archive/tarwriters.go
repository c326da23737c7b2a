package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
//
// But creations in one directory do not overlap: open(O_CREAT) holds the
// directory's lock, and writers that wait on it spin and burn the CPU the
// others need. Four threads creating 8,000 files in one directory took
// 2 to 3.6 s where one took 0.2 to 2.2 s, and four in four directories
// 0.2 to 0.5 s (ext4 without a journal, loaded 2-core VM). So a
// directory's files go to one writer at a time (the one that has its
// queued files, else the least busy), and the reading goroutine runs
// ahead into the next directories, mostly with small buffers: the
// members of a source tree are a few KiB each, a handful per directory.

// Defaults of the writer pool.
const (
	// DefaultWriters is how many goroutines create small files at once.
	DefaultWriters = 4
	// writerJobMax is the largest member handed to the pool; its bytes
	// are held in memory until written. Larger members, and sparse ones,
	// are written by the reading goroutine, as the stream passes.
	writerJobMax = 256 << 10
	// writerBuffers is how many writerJobMax bytes each writer is given
	// for queued members: one buffer of writerJobMax and the other's worth
	// of buffers of smallJobMax, so that many small members, from several
	// directories, can wait for a writer.
	writerBuffers = 2
	// smallJobMax is the size of the small buffers.
	smallJobMax = 16 << 10
)

// writerMemory is what a pool of n writers holds at most.
func writerMemory(n int) int64 {
	if n <= 1 {
		return 0
	}
	return int64(n) * writerBuffers * writerJobMax
}

// bufferList hands out at most capacity buffers of size bytes, made when
// first needed; get waits for one to be put back when all are out.
type bufferList struct {
	size     int
	made     int // owner only
	capacity int
	free     chan []byte
}

func newBufferList(size, capacity int) *bufferList {
	return &bufferList{size: size, capacity: capacity, free: make(chan []byte, capacity)}
}

func (l *bufferList) get() []byte {
	select {
	case b := <-l.free:
		return b
	default:
	}
	if l.made < l.capacity {
		l.made++
		return make([]byte, l.size)
	}
	return <-l.free
}

func (l *bufferList) put(b []byte) { l.free <- b[:l.size] }

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
	ctx    context.Context
	queues []chan fileJob // one per writer; each can hold every job in flight
	slots  chan struct{}  // a token per job in flight (queued or being written)
	small  *bufferList    // smallJobMax bytes each
	large  *bufferList    // writerJobMax bytes each
	wg     sync.WaitGroup

	mu      sync.Mutex
	idle    *sync.Cond            // signalled when pending empties
	pending map[string]struct{}   // names queued or being written
	dirs    map[*dirRoot]*dirLoad // directories with jobs in flight
	load    []int                 // jobs in flight per writer
	err     error                 // the first failure
	errName string                // the member that failed
	closed  bool
}

// dirLoad is the writer a directory's jobs go to while it has any.
type dirLoad struct {
	writer, jobs int
}

// newWriters starts n writers creating files; they stop when close is
// called (ctx stops them early: their jobs are then dropped).
func newWriters(ctx context.Context, n int) *writers {
	nsmall := n * (writerBuffers - 1) * writerJobMax / smallJobMax
	inFlight := n + nsmall
	w := &writers{
		ctx:     ctx,
		slots:   make(chan struct{}, inFlight),
		small:   newBufferList(smallJobMax, nsmall),
		large:   newBufferList(writerJobMax, n),
		pending: map[string]struct{}{},
		dirs:    map[*dirRoot]*dirLoad{},
		load:    make([]int, n),
	}
	w.idle = sync.NewCond(&w.mu)
	for k := range n {
		q := make(chan fileJob, inFlight)
		w.queues = append(w.queues, q)
		w.wg.Go(func() { w.work(k, q) })
	}
	return w
}

// buffer is a buffer of at least size bytes (at most writerJobMax) for a
// job, waiting for a writer to return one when all are in use.
func (w *writers) buffer(size int64) []byte {
	if size <= smallJobMax {
		return w.small.get()
	}
	return w.large.get()
}

// release returns a job's buffer.
func (w *writers) release(b []byte) {
	switch {
	case b == nil:
	case cap(b) < writerJobMax:
		w.small.put(b)
	default:
		w.large.put(b)
	}
}

// submit queues a job: to the writer that has its directory's jobs, else
// to the one with the fewest jobs. It waits while the most jobs are in
// flight. It reports the first failure of any writer so far; after one,
// the owner stops (the job is dropped).
func (w *writers) submit(j fileJob) error {
	w.slots <- struct{}{}
	w.mu.Lock()
	if err := w.failure(); err != nil {
		w.mu.Unlock()
		w.release(j.buf)
		<-w.slots
		return err
	}
	w.pending[j.name] = struct{}{}
	l := w.dirs[j.dir]
	if l == nil {
		l = &dirLoad{writer: 0}
		for k, n := range w.load {
			if n < w.load[l.writer] {
				l.writer = k
			}
		}
		w.dirs[j.dir] = l
	}
	l.jobs++
	w.load[l.writer]++
	w.mu.Unlock()
	w.queues[l.writer] <- j // room: it holds every job in flight
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

// writeHook, when set (by tests), is called by writer k before it
// writes the member name.
var writeHook func(k int, name string)

// work is writer k: it writes the jobs of its queue q in order.
func (w *writers) work(k int, q chan fileJob) {
	for j := range q {
		err := w.ctx.Err()
		w.mu.Lock()
		failed := w.err != nil
		w.mu.Unlock()
		if err == nil && !failed {
			if writeHook != nil {
				writeHook(k, j.name)
			}
			err = writeSmall(j)
		}
		w.release(j.buf)
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err, w.errName = err, j.member
		}
		l := w.dirs[j.dir]
		if l.jobs--; l.jobs == 0 {
			delete(w.dirs, j.dir)
		}
		w.load[k]--
		// After the directory's entry: the owner may evict (close and
		// forget) the directory once refs is 0.
		j.dir.refs.Add(-1)
		delete(w.pending, j.name)
		if len(w.pending) == 0 {
			w.idle.Broadcast()
		}
		w.mu.Unlock()
		<-w.slots
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
		for _, q := range w.queues {
			close(q)
		}
	}
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failure()
}

// writeSmall creates a job's file, as TarExtract.file does for a member
// it writes itself.
func writeSmall(j fileJob) error { return createFile(j.dir, j.base, j.mode, j.data, j.mtime) }

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
		j.buf = s.w.buffer(hdr.Size)
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
