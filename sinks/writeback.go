package sinks

import (
	"sync"
	"time"
)

// The page cache path's writeback: started every writebackSegment bytes,
// with at most writebackAhead bytes written and not yet written back.
//
// The segment is small enough that the final fsync finds little left, and
// large enough for the disk to see large writes. The limit keeps the dirty
// pages of a download, and so its final fsync, bounded on any disk:
// without it, a disk slower than the network gathers a backlog that the
// fsync pays at the end, and the kernel's own limits let that grow to a
// fifth of the memory. With it, a writeback that cannot keep up makes the
// writer wait while the download runs, which direct: auto sees (see
// chooser). It must not be much smaller: on ext4 a preallocated file's
// writeback completes in bursts of up to ~48 MiB (the extents are
// converted in batches), and with 32 MiB the writer waited in the midst of
// healthy writeback. BenchmarkFileSinkDurable/never (256 MiB from memory,
// fsync), three rounds: 1640-1790 MB/s with 32 MiB, 1930-2390 with 64,
// 1830-2150 without a limit.
const (
	writebackSegment = 4 << 20
	writebackAhead   = 64 << 20
)

// writeback starts the kernel's writeback of what a replica wrote through
// the page cache, and waits for it, from a goroutine of its own:
// sync_file_range blocks when the device's queue is full, and the writer
// must not wait for that unless it is too far ahead (see waitRoom).
//
// It is a pace, not a guarantee: sync_file_range neither flushes the
// disk's cache nor writes metadata, so the file sink still claims only what
// an fdatasync covered. Its errors are ignored; the fdatasync and fsync that
// follow report any real one.
//
// add, waitRoom and drain may be called from any goroutine; close
// once, after the last of them.
type writeback struct {
	fd    int
	limit int64

	mu   sync.Mutex
	cond sync.Cond
	// lo, hi and pending: the span written since the last segment was
	// started, and how many bytes were written in it.
	lo, hi, pending int64
	started         []segment // writeback started and not known done, oldest first
	backlogBytes    int64     // pending plus the bytes of started
	draining        int       // callers of drain waiting: start the pending span now
	stopped         bool
	wg              sync.WaitGroup
}

type segment struct{ off, len, bytes int64 }

// newWriteback returns the writeback of the file open as fd, or nil where
// the system has no writeback hints (see sys_other.go): the final fsync
// then flushes everything.
func newWriteback(fd int, limit int64) *writeback {
	if !writebackHints {
		return nil
	}
	w := &writeback{fd: fd, limit: limit}
	w.cond.L = &w.mu
	w.wg.Add(2)
	go w.start()
	go w.await()
	return w
}

// add records that n bytes at off went into the page cache.
func (w *writeback) add(off, n int64) {
	if w == nil || n <= 0 {
		return
	}
	w.mu.Lock()
	if w.pending == 0 {
		w.lo, w.hi = off, off+n
	} else {
		w.lo, w.hi = min(w.lo, off), max(w.hi, off+n)
	}
	w.pending += n
	w.backlogBytes += n
	if w.pending >= writebackSegment {
		w.cond.Broadcast()
	}
	w.mu.Unlock()
}

// waitRoom blocks while more than the limit is written and not yet
// written back, and returns how long it waited.
func (w *writeback) waitRoom() time.Duration {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.backlogBytes <= w.limit || w.stopped {
		return 0
	}
	start := time.Now()
	for w.backlogBytes > w.limit && !w.stopped {
		w.cond.Wait()
	}
	return time.Since(start)
}

// drain starts the writeback of everything written and waits for it.
func (w *writeback) drain() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.draining++
	w.cond.Broadcast()
	for w.backlogBytes > 0 && !w.stopped {
		w.cond.Wait()
	}
	w.draining--
}

// close stops the goroutines and waits for them; what is not written back yet
// is left to the fsync.
func (w *writeback) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.stopped = true
	w.cond.Broadcast()
	w.mu.Unlock()
	w.wg.Wait()
}

// start starts the writeback of each full segment as soon as it is
// written (and of what is pending when drain asks), and await waits for
// the oldest started segment and counts it done: two goroutines, so that
// the disk always has the newest segments queued while the oldest is
// waited for.
func (w *writeback) start() {
	defer w.wg.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for !w.stopped && w.pending < writebackSegment && (w.draining == 0 || w.pending == 0) {
			w.cond.Wait()
		}
		if w.stopped {
			return
		}
		seg := segment{off: w.lo, len: w.hi - w.lo, bytes: w.pending}
		w.pending = 0
		w.mu.Unlock()
		startWriteback(w.fd, seg.off, seg.len)
		w.mu.Lock()
		w.started = append(w.started, seg)
		w.cond.Broadcast()
	}
}

func (w *writeback) await() {
	defer w.wg.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for !w.stopped && len(w.started) == 0 {
			w.cond.Wait()
		}
		if w.stopped {
			return
		}
		seg := w.started[0]
		w.mu.Unlock()
		awaitWriteback(w.fd, seg.off, seg.len)
		w.mu.Lock()
		w.started = w.started[1:]
		w.backlogBytes -= seg.bytes
		w.cond.Broadcast()
	}
}
