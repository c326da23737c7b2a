package pipeline

import (
	"context"
	"sync"
	"time"
)

// Window is the credit scheme that keeps a reordering stage within a fixed
// memory budget without ever deadlocking.
//
// The reordering stage holds bytes that arrived ahead of the ordered output
// and reports the ordered frontier with Advance. The stage that hands out
// work (the range splitter) calls Acquire for each range in offset order
// before handing it out; Acquire lets a range go only when it ends within
// Size bytes of the frontier. So every byte the reorderer can ever hold lies
// inside the window, however slow the first range is. The range that starts
// at the frontier is always let go, so the lowest outstanding work can never
// be starved.
//
// A run hands each stage a view of the one window of its graph, so that
// the time a stage's Acquire waits is counted as that stage's window wait
// in the run's Metrics (not as busy time).
type Window struct {
	*windowState
	waits *stageMetrics // nil: not counted
}

// windowState is what the views of one window share.
type windowState struct {
	size int64

	mu       sync.Mutex
	frontier int64
	wake     chan struct{} // closed and cleared by Advance; nil while nobody waits
}

// NewWindow returns a window of size bytes with the frontier at 0.
func NewWindow(size int64) *Window { return &Window{windowState: &windowState{size: size}} }

// countedBy is a view of w whose Acquire waits are added to m's window
// wait; w itself when m is nil.
func (w *Window) countedBy(m *stageMetrics) *Window {
	if w == nil || m == nil {
		return w
	}
	return &Window{windowState: w.windowState, waits: m}
}

// Frontier is the offset below which every byte has been emitted in order.
func (w *Window) Frontier() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.frontier
}

// Acquire blocks until the range r may be handed out: r.End is within Size
// of the frontier, or r starts at the frontier. It returns ctx.Err() if ctx
// is done first. A range of unknown end is let go only at the frontier.
func (w *Window) Acquire(ctx context.Context, r Range) error {
	if w.waits != nil {
		var start time.Time
		defer func() {
			if !start.IsZero() {
				w.waits.windowNanos.Add(int64(time.Since(start)))
			}
		}()
		return w.acquire(ctx, r, &start)
	}
	return w.acquire(ctx, r, nil)
}

// acquire is Acquire; it sets *waitStart (when not nil) the first time it
// has to wait.
func (w *Window) acquire(ctx context.Context, r Range, waitStart *time.Time) error {
	for {
		w.mu.Lock()
		if r.Start <= w.frontier || (r.End >= 0 && r.End-w.frontier <= w.size) {
			w.mu.Unlock()
			return nil
		}
		if w.wake == nil {
			w.wake = make(chan struct{})
		}
		wake := w.wake
		w.mu.Unlock()
		if waitStart != nil && waitStart.IsZero() {
			*waitStart = time.Now()
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Advance moves the frontier to offset (never backwards) and wakes waiters.
func (w *Window) Advance(offset int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if offset <= w.frontier {
		return
	}
	w.frontier = offset
	if w.wake != nil {
		close(w.wake)
		w.wake = nil
	}
}
