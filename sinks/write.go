package sinks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dlflow/dlflow/pipeline"
)

// writebackEvery is how much newly written data makes the sink start its
// writeback (sync_file_range), so that the final fsync finds little left to
// flush.
const writebackEvery = 8 << 20

// Run writes the chunks it receives into PATH.tmp and releases them. In
// sequential mode a chunk that does not start where the previous one ended
// is an error (a bug upstream), as is a second replica.
func (s *FileSink) Run(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
	if s.file == nil {
		return errors.New("file sink: Run without a successful Start")
	}
	w := batchWriter{s: s}
	if s.fsync {
		w.wb = &writeback{}
	}
	batch := make([]pipeline.Chunk, 0, maxGather)
	defer func() {
		for _, c := range batch {
			c.Release()
		}
	}()
	for {
		c, ok, err := io.Recv(ctx)
		if !ok {
			return err
		}
		batch = append(batch, c)
		open := s.gatherQueued(io.Chunks, &batch)
		var n int64
		for _, c := range batch {
			n += int64(len(c.Data))
		}
		err = w.write(batch)
		for _, c := range batch {
			c.Release()
		}
		clear(batch)
		batch = batch[:0]
		if err != nil {
			return err
		}
		if s.ck != nil {
			if err := s.ck.wrote(n); err != nil {
				return err
			}
		}
		if !open {
			return nil
		}
	}
}

// maxGather caps the chunks one write takes, well below the kernel's
// limit of 1024 iovecs.
const maxGather = 64

// gatherQueued adds to batch the chunks waiting in the queue, without
// blocking, while their buffers fit in the gather size; a sink without
// direct I/O takes one chunk at a time. It reports false when the queue
// is closed.
func (s *FileSink) gatherQueued(in <-chan pipeline.Chunk, batch *[]pipeline.Chunk) bool {
	if s.direct == nil || s.gather <= 0 {
		return true
	}
	// The graph's memory bound counts the whole input chunks that fit in
	// the gather size.
	limit := min(maxGather, int(s.gather/int64(max((*batch)[0].BufferSize(), 1))))
	for len(*batch) < limit {
		select {
		case c, ok := <-in:
			if !ok {
				return false
			}
			*batch = append(*batch, c)
		default:
			return true
		}
	}
	return true
}

// batchWriter writes the batches of one replica: runs of contiguous,
// aligned chunks with one direct pwritev, anything else chunk by chunk.
type batchWriter struct {
	s   *FileSink
	wb  *writeback // nil without fsync
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
	if !s.directFor(c) || len(c.Data) == 0 {
		return false
	}
	start, end := s.direct.span(c.Data, c.Offset)
	return start == 0 && end == len(c.Data)
}

// one writes a single chunk.
func (w *batchWriter) one(c pipeline.Chunk) error {
	s := w.s
	if err := s.check(c.Offset, c.End()); err != nil {
		return err
	}
	n, err := s.writeAt(c.Data, c.Offset, w.wb, s.directFor(c))
	s.wrote(c.Offset, int64(n))
	return err
}

// directFor reports whether c's aligned blocks go direct.
func (s *FileSink) directFor(c pipeline.Chunk) bool {
	return s.direct != nil && c.BufferSize() >= s.directMin
}

// run writes contiguous chunks that may all go direct, with one pwritev.
// After a short write the rest goes chunk by chunk.
func (w *batchWriter) run(run []pipeline.Chunk) error {
	s := w.s
	first, last := run[0], run[len(run)-1]
	if err := s.check(first.Offset, last.End()); err != nil {
		return err
	}
	w.iov = w.iov[:0]
	for _, c := range run {
		w.iov = append(w.iov, c.Data)
	}
	n, err := s.direct.writevAt(w.iov, first.Offset)
	clear(w.iov)
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

// check refuses to write [off, end) where it cannot belong.
func (s *FileSink) check(off, end int64) error {
	if off < 0 {
		return fmt.Errorf("chunk at negative offset %d", off)
	}
	if s.size >= 0 && end > s.size {
		return fmt.Errorf("chunk [%d,%d) ends past the resource size %d", off, end, s.size)
	}
	if !s.positional && off != s.next {
		return fmt.Errorf("out-of-order bytes: chunk starts at %d, expected %d (a bug in the stage feeding the sink)", off, s.next)
	}
	return nil
}

// wrote records that n bytes from off are in PATH.tmp.
func (s *FileSink) wrote(off, n int64) {
	if n <= 0 {
		return
	}
	if !s.positional {
		s.next += n
	}
	s.written.Add(n)
	s.mu.Lock()
	s.have.Add(pipeline.Range{Start: off, End: off + n})
	s.mu.Unlock()
}

// writeAt writes p at off and returns how many bytes from the start of p
// are written, the way io.WriterAt does. With direct, the aligned middle of
// p goes through the direct descriptor; the rest goes through the page
// cache, and wb (nil without fsync) starts its writeback.
func (s *FileSink) writeAt(p []byte, off int64, wb *writeback, direct bool) (int, error) {
	start, end := 0, 0
	if direct {
		start, end = s.direct.span(p, off)
	}
	if start == end {
		return s.cachedWriteAt(p, off, wb)
	}
	if start > 0 {
		if n, err := s.cachedWriteAt(p[:start], off, wb); err != nil {
			return n, err
		}
	}
	n, err := s.direct.writeAt(p[start:end], off+int64(start))
	done := start + n
	if err != nil || done == len(p) {
		return done, err
	}
	rest, err := s.cachedWriteAt(p[done:], off+int64(done), wb)
	return done + rest, err
}

func (s *FileSink) cachedWriteAt(p []byte, off int64, wb *writeback) (int, error) {
	n, err := s.file.WriteAt(p, off)
	wb.add(s.fd, off, int64(n))
	return n, err
}

// writeback starts the kernel's writeback of what one replica wrote, every
// writebackEvery bytes, over the span its recent chunks covered. It is a
// hint: errors are ignored, the final fsync reports any real I/O error.
type writeback struct {
	lo, hi, pending int64
}

func (w *writeback) add(fd int, off, n int64) {
	if w == nil || n == 0 {
		return
	}
	if w.pending == 0 {
		w.lo, w.hi = off, off+n
	} else {
		w.lo, w.hi = min(w.lo, off), max(w.hi, off+n)
	}
	w.pending += n
	if w.pending < writebackEvery {
		return
	}
	startWriteback(fd, w.lo, w.hi-w.lo)
	w.pending = 0
}
