package daemon

import "slices"

// Queue positions: keys of the queue bucket. A task appended goes
// posGap after the last, one put at the front posGap before the first,
// one inserted between two at the middle of their gap; when a gap is used
// up, the whole queue is numbered again (rare: after about 20 inserts at
// the same place).
const (
	posBase = uint64(1) << 62
	posGap  = uint64(1) << 20
)

// insertWaiting puts t at index i of the waiting queue (clamped) and
// gives it a position; it returns the session changes.
func (e *Engine) insertWaiting(t *task, i int) []op {
	i = max(0, min(i, len(e.waiting)))
	e.waiting = slices.Insert(e.waiting, i, t)
	var lo, hi uint64
	switch {
	case len(e.waiting) == 1:
		t.Pos = posBase
		return []op{queuePut(t)}
	case i == 0:
		hi = e.waiting[1].Pos
		if hi > posGap {
			t.Pos = hi - posGap
			return []op{queuePut(t)}
		}
	case i == len(e.waiting)-1:
		lo = e.waiting[i-1].Pos
		if lo < ^uint64(0)-posGap {
			t.Pos = lo + posGap
			return []op{queuePut(t)}
		}
	default:
		lo, hi = e.waiting[i-1].Pos, e.waiting[i+1].Pos
		if hi-lo >= 2 {
			t.Pos = lo + (hi-lo)/2
			return []op{queuePut(t)}
		}
	}
	return e.renumber()
}

// renumber gives every waiting task a new position, posGap apart.
func (e *Engine) renumber() []op {
	var ops []op
	for _, w := range e.waiting {
		if w.Pos != 0 {
			ops = append(ops, op{bucket: bucketQueue, key: u64key(w.Pos)})
		}
	}
	for i, w := range e.waiting {
		w.Pos = posBase + uint64(i)*posGap
		ops = append(ops, queuePut(w), e.taskPut(w))
	}
	return ops
}

// removeWaiting takes t out of the waiting queue.
func (e *Engine) removeWaiting(t *task) []op {
	i := slices.Index(e.waiting, t)
	if i < 0 {
		return nil
	}
	e.waiting = slices.Delete(e.waiting, i, i+1)
	o := op{bucket: bucketQueue, key: u64key(t.Pos)}
	t.Pos = 0
	return []op{o}
}

func queuePut(t *task) op {
	return op{bucket: bucketQueue, key: u64key(t.Pos), val: []byte(t.GID)}
}
