package sinks

import (
	"context"
	"sync"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// inflight runs a replica's direct writes, several at once: a direct write
// returns only when the disk has the bytes, so one at a time leaves the
// disk idle while the next is gathered and submitted, and pays each write's
// latency in full (a small write at queue depth 1 runs at a fraction of a
// disk's rate, and a VM adds its own latency to each). With a few in
// flight, the latencies overlap and the disk sees a queue.
//
// The feeder (the replica's Run goroutine) calls waitRoom, then submit with
// chunks it received; the workers write each batch (see batchWriter),
// release its chunks and record the first failure in file order, which
// also cancels the run's context so that the feeder stops receiving. The
// bytes go into the sink's bookkeeping as each write completes (see
// FileSink.wrote), so in sequential mode PATH.tmp's prefix and the state
// only ever cover writes that completed, whatever the order they complete
// in.
//
// It holds at most max(1, budget/B) chunks at once, B being the largest
// chunk buffer seen, counting those in writes and those the feeder
// gathers: that is what the graph's memory bound counts (Memory.Gather).
type inflight struct {
	s      *FileSink
	writes int   // the most writes in flight
	budget int64 // the most chunk buffer bytes held
	jobs   chan []pipeline.Chunk
	free   chan []pipeline.Chunk // batch slices to reuse: no allocation per write
	// idle gets a token (it holds at most one) when the last write in
	// flight completes: the feeder waiting to fill a batch stops waiting.
	idle   chan struct{}
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    sync.Cond
	running int   // writes in flight
	chunks  int   // chunks they hold
	err     error // the failure at the lowest offset
	errAt   int64
}

// newInflight starts the workers of up to writes direct writes at once,
// holding up to budget bytes of chunk buffers. The unaligned edges of a
// batch go through the page cache and wb (nil: none). A failure cancels
// the run's context through cancel.
func newInflight(s *FileSink, writes int, budget int64, wb *writeback, cancel context.CancelCauseFunc) *inflight {
	writes = max(writes, 1)
	f := &inflight{
		s:      s,
		writes: writes,
		budget: budget,
		jobs:   make(chan []pipeline.Chunk, writes),
		free:   make(chan []pipeline.Chunk, writes),
		idle:   make(chan struct{}, 1),
		cancel: cancel,
	}
	f.cond.L = &f.mu
	for range writes {
		f.free <- make([]pipeline.Chunk, 0, maxGather)
		f.wg.Add(1)
		go f.work(wb)
	}
	return f
}

// maxChunks is how many chunks of buffers up to bufSize the budget holds,
// at least one.
func (f *inflight) maxChunks(bufSize int) int {
	return max(1, int(f.budget/int64(max(bufSize, 1))))
}

// waitRoom blocks until one more write of at least one chunk of buffer
// size up to bufSize fits, and returns how long it waited: the time the
// disk held the download up.
func (f *inflight) waitRoom(bufSize int) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hasRoom(bufSize) {
		return 0
	}
	start := time.Now()
	for !f.hasRoom(bufSize) {
		f.cond.Wait()
	}
	return time.Since(start)
}

func (f *inflight) hasRoom(bufSize int) bool {
	return f.running < f.writes && (f.chunks == 0 || f.chunks+1 <= f.maxChunks(bufSize)) || f.err != nil
}

// room is how many more chunks of buffer size up to bufSize may be
// gathered into a batch that already holds held chunks.
func (f *inflight) room(bufSize, held int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxChunks(bufSize) - f.chunks - held
}

// batch returns an empty batch to fill and submit; waitRoom must have
// found room.
func (f *inflight) batch() []pipeline.Chunk { return <-f.free }

// submit hands the batch to a worker, which releases its chunks.
func (f *inflight) submit(b []pipeline.Chunk) {
	f.mu.Lock()
	f.running++
	f.chunks += len(b)
	f.mu.Unlock()
	f.jobs <- b
}

func (f *inflight) work(wb *writeback) {
	defer f.wg.Done()
	w := batchWriter{s: f.s, wb: wb}
	for b := range f.jobs {
		err := w.write(b)
		at := b[0].Offset // the lowest, once write sorted the batch
		var n int64
		for _, c := range b {
			n += int64(len(c.Data))
			c.Release()
		}
		k := len(b)
		clear(b)
		f.free <- b[:0]
		if err == nil && f.s.ck != nil {
			err = f.s.ck.wrote(n)
		}
		f.mu.Lock()
		f.running--
		f.chunks -= k
		if err != nil && (f.err == nil || at < f.errAt) {
			f.err, f.errAt = err, at
		}
		f.cond.Broadcast()
		if f.running == 0 {
			select {
			case f.idle <- struct{}{}:
			default:
			}
		}
		f.mu.Unlock()
		if err != nil {
			f.cancel(err)
		}
	}
}

// busy reports whether a write is in flight.
func (f *inflight) busy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running > 0
}

// waitIdle blocks until no write is in flight.
func (f *inflight) waitIdle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.running > 0 {
		f.cond.Wait()
	}
}

// failure returns the failure at the lowest offset so far, or nil.
func (f *inflight) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// close waits for the writes in flight and stops the workers.
func (f *inflight) close() {
	close(f.jobs)
	f.wg.Wait()
}
