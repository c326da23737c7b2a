package pipeline

import (
	"io"
	"sync"
)

// Have is the part of the resource already in place from an earlier,
// interrupted run: what a resume does not fetch again.
//
// The runner sets it from what a Resumer (the file sink, from its state
// file) reports, before any Start, so every stage sees the final value in
// Start and Run: the splitter hands out only the missing ranges, a stream
// source starts at the first missing byte, a reorderer treats present bytes
// as already emitted, a progress counter counts them as done, and a hash
// stage reads present bytes back through ReadAt. Without a resume Have is
// empty.
type Have struct {
	mu     sync.RWMutex
	set    RangeSet
	reader io.ReaderAt
}

// Set records the present ranges and where their bytes can be read back.
// The runner calls it with what a Resumer reported; stages only read Have.
func (h *Have) Set(ranges []Range, reader io.ReaderAt) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.set = RangeSet{}
	for _, r := range ranges {
		h.set.Add(r)
	}
	h.reader = reader
}

// Ranges returns a copy of the present ranges, in offset order.
func (h *Have) Ranges() []Range {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.set.Ranges()
}

// Len is the number of bytes present.
func (h *Have) Len() int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.set.Len()
}

// Missing returns the ranges of [0, size) still to fetch.
func (h *Have) Missing(size int64) []Range {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.set.Missing(size)
}

// Skip returns the first offset at or after off that is not present, so an
// ordered consumer can jump over bytes that an earlier run wrote.
func (h *Have) Skip(off int64) int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.set.NextMissing(off)
}

// ReadAt reads present bytes back (for hashing after a resume). It fails
// when no reader was recorded.
func (h *Have) ReadAt(p []byte, off int64) (int, error) {
	h.mu.RLock()
	r := h.reader
	h.mu.RUnlock()
	if r == nil {
		return 0, io.ErrUnexpectedEOF
	}
	return r.ReadAt(p, off)
}
