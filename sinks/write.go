package sinks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// Run writes the chunks it receives into PATH.tmp and releases them. In
// sequential mode a chunk that does not start where the previous one ended
// is an error (a bug upstream), as is a second replica.
//
// A replica writes one of two ways (see writer): through the page cache,
// whose writeback a goroutine of its own starts and paces; or direct, with
// up to FileConfig.Writes writes in flight. direct: auto measures both
// while it runs and keeps the one that would finish sooner (see chooser).
func (s *FileSink) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	if s.file == nil {
		return errors.New("file sink: Run without a successful Start")
	}
	w := s.newWriter(env.Log)
	return w.run(ctx, edges)
}

// writer is one replica's write path. Its feeder, the Run goroutine,
// receives and checks the chunks; page cache writes happen on it, direct
// writes on inflight's workers.
type writer struct {
	s      *FileSink
	log    zerolog.Logger
	mode   writeMode
	choose *chooser   // nil unless direct: auto has both ways to choose from
	wb     *writeback // nil without fsync, or where the system has no writeback hints
	fl     *inflight  // nil without a direct descriptor; started by run
	expect int64      // sequential mode: the offset the next chunk must start at
	maxBuf int        // the largest chunk buffer received

	// What choose measures: a warm-up after the start and after each
	// change of way, then windows one after the other.
	measuring bool
	warmup    int64     // bytes left to write before the next window starts
	win       window    // the window being measured
	winStart  time.Time // when it started
	trial     bool      // the window is a trial (see chooser)
}

func (s *FileSink) newWriter(log zerolog.Logger) *writer {
	w := &writer{s: s, log: log, mode: writeCached}
	s.mu.Lock()
	w.expect = s.next
	s.mu.Unlock()
	if s.direct != nil && s.directWay == DirectAlways {
		w.mode = writeDirect
	}
	return w
}

// chooses reports whether the replica chooses its way (direct: auto with
// a direct descriptor).
func (w *writer) chooses() bool {
	return w.s.direct != nil && w.s.directWay == DirectAuto
}

// run feeds the chunks of io to the write path until the input ends, the
// context is done or a write fails. It returns only when no write is in
// flight and every chunk it took is released. A write's failure wins over
// the cancellation it causes; among failures, the one at the lowest offset.
func (w *writer) run(ctx context.Context, edges pipeline.IO) (err error) {
	s := w.s
	if s.fsync && !s.small() {
		w.wb = newWriteback(s.fd, writebackAhead)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if s.direct != nil && s.directWay != DirectNever {
		w.fl = newInflight(s, s.writes, s.inflight, w.wb, cancel)
	}
	defer func() {
		if w.fl != nil {
			w.fl.close()
			if ferr := w.fl.failure(); ferr != nil {
				err = ferr
			}
		}
		w.wb.close()
	}()
	for {
		if w.fl != nil {
			if err := w.fl.failure(); err != nil {
				return err
			}
		}
		w.held(w.waitRoom(), edges.Chunks)
		c, ok, err := edges.Recv(ctx)
		if !ok {
			return err
		}
		if err := w.take(ctx, c, edges.Chunks); err != nil {
			return err
		}
		switch {
		case w.choose == nil:
		case !w.measuring && w.warmup <= 0:
			w.startWindow()
		case w.measuring && w.win.bytes >= w.choose.window:
			w.endWindow()
		}
	}
}

// held counts d, a time the writer was busy or waiting for room, as the
// window's stall when chunks were waiting in the queue at its end: the
// write path, not the network, held the download up.
func (w *writer) held(d time.Duration, in <-chan pipeline.Chunk) {
	if w.measuring && d > 0 && len(in) > 0 {
		w.win.stall += d
	}
}

// waitRoom waits until the way the replica writes has room for another
// chunk, and returns how long that took.
func (w *writer) waitRoom() time.Duration {
	if w.mode == writeDirect {
		return w.fl.waitRoom(w.maxBuf)
	}
	return w.wb.waitRoom()
}

// take checks c and writes it, with the chunks queued behind it when it
// goes direct. It owns c, and releases it or hands it to a write.
func (w *writer) take(ctx context.Context, c pipeline.Chunk, in <-chan pipeline.Chunk) error {
	if w.choose == nil && w.chooses() {
		w.choose = newChooser(firstWay(c.BufferSize(), w.s.gather), c.BufferSize())
		w.mode, w.warmup = w.choose.mode, w.choose.warmup
	}
	if err := w.check(c); err != nil {
		c.Release()
		return err
	}
	if w.mode == writeCached {
		if !w.measuring {
			return w.writeCached(c)
		}
		start := time.Now()
		err := w.writeCached(c)
		w.held(time.Since(start), in)
		return err
	}
	b := append(w.fl.batch(), c)
	err := w.gather(ctx, &b, in)
	if len(b) > 0 {
		w.fl.submit(b)
	}
	return err
}

// check refuses c where it cannot belong, and counts it.
func (w *writer) check(c pipeline.Chunk) error {
	if err := w.s.check(c.Offset, c.End(), w.expect); err != nil {
		return err
	}
	w.expect = c.End()
	w.maxBuf = max(w.maxBuf, c.BufferSize())
	if w.measuring {
		w.win.bytes += int64(len(c.Data))
	} else {
		w.warmup -= int64(len(c.Data))
	}
	return nil
}

// writeCached writes c through the page cache, on the feeder.
func (w *writer) writeCached(c pipeline.Chunk) error {
	s := w.s
	n, err := s.cachedWriteAt(c.Data, c.Offset, w.wb)
	s.wrote(c.Offset, int64(n))
	c.Release()
	if err == nil && s.ck != nil {
		err = s.ck.wrote(int64(n))
	}
	return err
}

// slowDisk, when set (by tests), runs before each direct write:
// a disk slower than the source.
var slowDisk func()

// maxGather caps the chunks one write takes, well below the kernel's
// limit of 1024 iovecs.
const maxGather = 64

// gather adds to the batch b the chunks waiting in the queue, while their
// buffers fit in the gather size and the inflight budget. A chunk that
// fails its check is released and its error returned; b keeps the chunks
// before it.
//
// While a write is in flight it waits for chunks to fill the batch: the
// disk is busy, so waiting costs nothing, and a disk that takes a number
// of writes a second (a VM's, a cloud volume's) goes at gather bytes a
// write only if its writes are full. The queue in front of the sink is
// short (its writes are its cushion, see Memory.Gather), so the chunks a
// full batch needs are often still on their way. With no write in flight
// it takes what is queued, without waiting: the disk would idle.
func (w *writer) gather(ctx context.Context, b *[]pipeline.Chunk, in <-chan pipeline.Chunk) error {
	s := w.s
	if s.gather <= 0 {
		return nil
	}
	bufSize := int64(max((*b)[0].BufferSize(), 1))
	limit := min(maxGather, int(s.gather/bufSize))
	limit = min(limit, len(*b)+w.fl.room(w.maxBuf, len(*b)))
	for len(*b) < limit {
		var c pipeline.Chunk
		var ok bool
		select {
		case c, ok = <-in:
		default:
			if !w.fl.busy() {
				return nil
			}
			select {
			case c, ok = <-in:
			case <-w.fl.idle:
				continue // the next look finds the write done, or another
			case <-ctx.Done():
				return nil
			}
		}
		if !ok {
			return nil // Run's next receive sees the end
		}
		if err := w.check(c); err != nil {
			c.Release()
			return err
		}
		*b = append(*b, c)
	}
	return nil
}

// startWindow starts measuring a window of the chooser.
func (w *writer) startWindow() {
	w.measuring = true
	w.win = window{}
	w.winStart = time.Now()
}

// endWindow ends the window, asks the chooser for the next way and
// changes to it. A trial ends with its writes on disk, and the time that
// took is its drain; a trial begins with the previous way's writes on
// disk, so that they do not slow its window, and the time that took is
// the drain of the way it is measured against. The new way's first
// warm-up bytes fill its pipeline before a window is measured.
func (w *writer) endWindow() {
	w.win.elapsed = time.Since(w.winStart)
	if w.trial {
		w.win.drain = w.drain()
	}
	w.log.Debug().Str("mode", w.mode.String()).Bool("trial", w.trial).Stringer("window", w.win).Msg("write window")
	mode, trial, why := w.choose.next(w.win, w.remaining())
	if why != "" {
		w.log.Debug().Str("path", w.s.tmp).Msg(why)
	}
	w.trial = trial
	if mode == w.mode {
		w.startWindow()
		return
	}
	if d := w.drain(); trial {
		w.choose.drained(d)
	}
	w.mode = mode
	w.s.switches.Add(1)
	w.measuring = false
	w.warmup = w.choose.warmup
}

// remaining is how many bytes are still to be written: what the resource
// lacks, or when its size is unknown, as many as were written so far.
func (w *writer) remaining() int64 {
	s := w.s
	if s.size < 0 {
		return s.written.Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.size-s.have.Len(), 0)
}

// drain waits until what the current way wrote is on disk, and returns
// how long that took.
func (w *writer) drain() time.Duration {
	start := time.Now()
	if w.mode == writeDirect {
		w.fl.waitIdle()
	}
	w.wb.drain()
	return time.Since(start)
}

// batchWriter writes batches of chunks: runs of contiguous, aligned
// chunks with one direct pwritev, anything else chunk by chunk.
type batchWriter struct {
	s   *FileSink
	wb  *writeback // nil: no writeback of the page cache edges
	iov [][]byte   // reused for each run
}

func (w *batchWriter) write(batch []pipeline.Chunk) error {
	s := w.s
	if s.positional && len(batch) > 1 {
		slices.SortFunc(batch, func(a, b pipeline.Chunk) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	for i := 0; i < len(batch); {
		j := i + 1
		for j < len(batch) && s.directWhole(batch[j]) && batch[j].Offset == batch[j-1].End() {
			j++
		}
		if j-i < 2 || !s.directWhole(batch[i]) {
			if err := w.one(batch[i]); err != nil {
				return err
			}
			i++
			continue
		}
		if err := w.run(batch[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// directWhole reports whether all of c may be written direct.
func (s *FileSink) directWhole(c pipeline.Chunk) bool {
	if len(c.Data) == 0 {
		return false
	}
	start, end := s.direct.span(c.Data, c.Offset)
	return start == 0 && end == len(c.Data)
}

// one writes a single chunk, its aligned blocks direct.
func (w *batchWriter) one(c pipeline.Chunk) error {
	n, err := w.s.writeAt(c.Data, c.Offset, w.wb)
	w.s.wrote(c.Offset, int64(n))
	return err
}

// run writes contiguous chunks that may all go direct, with one pwritev.
// After a short write the rest goes chunk by chunk.
func (w *batchWriter) run(run []pipeline.Chunk) error {
	s := w.s
	first := run[0]
	w.iov = w.iov[:0]
	for _, c := range run {
		w.iov = append(w.iov, c.Data)
	}
	if slowDisk != nil {
		slowDisk()
	}
	n, err := s.direct.writevAt(w.iov, first.Offset)
	clear(w.iov)
	s.directBytes.Add(int64(n))
	s.directWrites.Add(1)
	s.wrote(first.Offset, int64(n))
	if err != nil {
		return err
	}
	for _, c := range run {
		if n >= len(c.Data) {
			n -= len(c.Data)
			continue
		}
		if n > 0 {
			c = pipeline.Chunk{Offset: c.Offset + int64(n), Data: c.Data[n:]}
			n = 0
		}
		if err := w.one(c); err != nil {
			return err
		}
	}
	return nil
}

// check refuses to write [off, end) where it cannot belong; in sequential
// mode the chunk must start at expect.
func (s *FileSink) check(off, end, expect int64) error {
	if off < 0 {
		return fmt.Errorf("chunk at negative offset %d", off)
	}
	if s.size >= 0 && end > s.size {
		return fmt.Errorf("chunk [%d,%d) ends past the resource size %d", off, end, s.size)
	}
	if !s.positional && off != expect {
		return fmt.Errorf("out-of-order bytes: chunk starts at %d, expected %d (a bug in the stage feeding the sink)", off, expect)
	}
	return nil
}

// wrote records that n bytes from off are in PATH.tmp. In sequential mode
// with writes in flight they may complete out of order: a range that does
// not continue the prefix waits in ahead until the writes before it
// complete, so that have (and so the state) and next only ever describe a
// prefix, the bytes that stay in PATH.tmp after a failure.
func (s *FileSink) wrote(off, n int64) {
	if n <= 0 {
		return
	}
	s.written.Add(n)
	r := pipeline.Range{Start: off, End: off + n}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.positional {
		s.have.Add(r)
		return
	}
	if off != s.next {
		i, _ := slices.BinarySearchFunc(s.ahead, off, func(r pipeline.Range, off int64) int { return cmp.Compare(r.Start, off) })
		s.ahead = slices.Insert(s.ahead, i, r)
		return
	}
	s.next = r.End
	for len(s.ahead) > 0 && s.ahead[0].Start == s.next {
		s.next = s.ahead[0].End
		s.ahead = s.ahead[1:]
	}
	s.have.Add(pipeline.Range{Start: off, End: s.next})
}

// writeAt writes p at off and returns how many bytes from the start of p
// are written, the way io.WriterAt does. The aligned middle of p goes
// through the direct descriptor; the rest goes through the page cache,
// and wb (nil: none) paces its writeback.
func (s *FileSink) writeAt(p []byte, off int64, wb *writeback) (int, error) {
	start, end := s.direct.span(p, off)
	if start == end {
		return s.cachedWriteAt(p, off, wb)
	}
	if start > 0 {
		if n, err := s.cachedWriteAt(p[:start], off, wb); err != nil {
			return n, err
		}
	}
	if slowDisk != nil {
		slowDisk()
	}
	n, err := s.direct.writeAt(p[start:end], off+int64(start))
	s.directBytes.Add(int64(n))
	s.directWrites.Add(1)
	done := start + n
	if err != nil || done == len(p) {
		return done, err
	}
	rest, err := s.cachedWriteAt(p[done:], off+int64(done), wb)
	return done + rest, err
}

func (s *FileSink) cachedWriteAt(p []byte, off int64, wb *writeback) (int, error) {
	n, err := s.file.WriteAt(p, off)
	s.cachedBytes.Add(int64(n))
	wb.add(off, int64(n))
	return n, err
}
