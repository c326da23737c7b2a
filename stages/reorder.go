package stages

import (
	"container/heap"
	"context"
	"fmt"
	"sync/atomic"

	"github.com/dlflow/dlflow/pipeline"
)

// ReorderConfig configures a reorder.heap.
type ReorderConfig struct {
	Window pipeline.ByteSize `koanf:"window" help:"most bytes held while waiting for earlier bytes; bounds the memory of reordering"`
}

// ReorderHeap is the reorder.heap stage: it turns chunks that arrive in any
// order into chunks in file order, starting at offset 0.
//
// Chunks ahead of the frontier (the offset up to which everything has been
// emitted) wait in a min-heap; each chunk that starts at the frontier is
// emitted at once, followed by every held chunk it makes contiguous. After
// each emission it moves env.Window's frontier, which lets the range splitter
// hand out more work. The splitter's credits are what bound the heap: it
// never holds more than the window as long as ranges come from a splitter
// that acquires them (range.splitter does). Without credits the heap still
// orders correctly but may grow past the window; it logs a warning once if
// it does.
//
// After a resume the bytes present from an earlier run (env.Have) count as
// emitted: the frontier starts at the first missing byte and jumps over
// every present range it reaches, and the output has gaps exactly there.
//
// Run it with one worker: replicas would each order only the chunks they
// happen to receive.
type ReorderHeap struct {
	window int64

	held atomic.Int64 // bytes (chunk lengths) currently in the heap
	peak atomic.Int64 // largest held of the current or last run
}

// ReorderStats is what a reorder.heap has held, in bytes of chunk data.
type ReorderStats struct {
	Held     int64 // held now
	PeakHeld int64 // most held at once during the current or last run
}

// GapError is the error of a reorder.heap whose input ended while it still
// held chunks: the bytes at Offset never arrived.
type GapError struct {
	Offset int64 // the frontier: first missing byte
	Chunks int   // chunks held beyond the gap
	Held   int64 // bytes held beyond the gap
}

func (e *GapError) Error() string {
	return fmt.Sprintf("input ended with a gap at offset %d (%d chunks, %v held)", e.Offset, e.Chunks, pipeline.ByteSize(e.Held))
}

// OverlapError is the error of a reorder.heap that received bytes it has
// already emitted or holds: the chunk at Offset of Len bytes starts before
// Frontier, the end of the bytes before it.
type OverlapError struct {
	Offset   int64
	Len      int
	Frontier int64
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("duplicate bytes: chunk at offset %d (%d bytes) starts before offset %d, which was already received", e.Offset, e.Len, e.Frontier)
}

var reorderDef = pipeline.Def[ReorderConfig]{
	Type:     "reorder.heap",
	Summary:  "restores file order within a bounded window of held bytes",
	Consumes: pipeline.Bytes,
	Produces: pipeline.OrderedBytes,
	Defaults: ReorderConfig{Window: 64 << 20},
	New: func(c ReorderConfig) (pipeline.Stage, error) {
		if c.Window <= 0 {
			return nil, fmt.Errorf("window must be more than 0, got %v", c.Window)
		}
		return &ReorderHeap{window: int64(c.Window)}, nil
	},
	Memory: func(c ReorderConfig) pipeline.Memory {
		return pipeline.Memory{Window: int64(c.Window)}
	},
	MaxWorkers: func(ReorderConfig) (int, string) { return 1, "one heap restores one order" },
}

func init() { builtin(reorderDef) }

// Stats reports the bytes held. It is safe to call during a run, from any
// goroutine.
func (s *ReorderHeap) Stats() ReorderStats {
	return ReorderStats{Held: s.held.Load(), PeakHeld: s.peak.Load()}
}

// Run orders its input until the input is closed. It returns a *GapError if
// chunks are still held then, and an *OverlapError as soon as it finds bytes
// that were already received (before emitting any of them). On return, by
// error or cancellation, it has released every chunk it held.
func (s *ReorderHeap) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	s.held.Store(0)
	s.peak.Store(0)
	h := &chunkHeap{}
	defer func() {
		for _, c := range h.items {
			c.Release()
		}
		h.items = h.items[:0]
		s.held.Store(0)
	}()

	frontier := skipPresent(env, 0)
	warned := false
	emit := func(c pipeline.Chunk) error {
		frontier = skipPresent(env, c.End())
		if err := edges.Send(ctx, c); err != nil {
			return err
		}
		if env.Window != nil {
			env.Window.Advance(frontier)
		}
		return nil
	}

	for {
		c, ok, err := edges.Recv(ctx)
		if err != nil {
			return err
		}
		if !ok {
			if len(h.items) > 0 {
				return &GapError{Offset: frontier, Chunks: len(h.items), Held: s.held.Load()}
			}
			return nil
		}
		switch {
		case len(c.Data) == 0:
			c.Release() // carries no bytes; nothing to order
			continue
		case c.Offset < frontier:
			err := &OverlapError{Offset: c.Offset, Len: len(c.Data), Frontier: frontier}
			c.Release()
			return err
		case c.Offset > frontier:
			h.push(c)
			held := s.held.Add(int64(len(c.Data)))
			if held > s.peak.Load() {
				s.peak.Store(held) // only this goroutine writes
			}
			if held > s.window && !warned {
				warned = true
				env.Log.Warn().Int64("held", held).Int64("window", s.window).
					Msg("reorder heap holds more than its window; is the range source acquiring window credits?")
			}
			continue
		}
		if err := emit(c); err != nil {
			return err
		}
		for len(h.items) > 0 && h.items[0].Offset <= frontier {
			next := h.pop()
			s.held.Add(-int64(len(next.Data)))
			if next.Offset < frontier {
				err := &OverlapError{Offset: next.Offset, Len: len(next.Data), Frontier: frontier}
				next.Release()
				return err
			}
			if err := emit(next); err != nil {
				return err
			}
		}
	}
}

// skipPresent is the first offset at or after off that an earlier run did
// not already write.
func skipPresent(env *pipeline.Env, off int64) int64 {
	if env.Have == nil {
		return off
	}
	return env.Have.Skip(off)
}

// chunkHeap is a min-heap of chunks by offset over a slice that is reused
// for the whole run. It goes through container/heap's Fix only: heap.Push
// and heap.Pop pass chunks as `any`, which would allocate once per chunk.
type chunkHeap struct {
	items []pipeline.Chunk
}

func (h *chunkHeap) Len() int           { return len(h.items) }
func (h *chunkHeap) Less(i, j int) bool { return h.items[i].Offset < h.items[j].Offset }
func (h *chunkHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }

// Push and Pop satisfy heap.Interface; push and pop are the allocation-free
// way in and out.
func (h *chunkHeap) Push(x any) { h.items = append(h.items, x.(pipeline.Chunk)) }
func (h *chunkHeap) Pop() any {
	c := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return c
}

func (h *chunkHeap) push(c pipeline.Chunk) {
	h.items = append(h.items, c)
	heap.Fix(h, len(h.items)-1) // a new leaf only moves up
}

func (h *chunkHeap) pop() pipeline.Chunk {
	last := len(h.items) - 1
	h.Swap(0, last)
	c := h.items[last]
	h.items[last] = pipeline.Chunk{} // drop the reference to the buffer
	h.items = h.items[:last]
	if last > 0 {
		heap.Fix(h, 0)
	}
	return c
}
