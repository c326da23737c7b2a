package stages

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// This file holds how the replicas of http.reader take their ranges: each
// request asks for more than one piece when more wait in the input.
//
// A request costs a round trip before its first byte. With 4 MiB pieces
// on a link of 10 MiB/s per connection and 100 ms to a first byte, a
// request per piece idles each connection a fifth of the time. So a
// replica that takes a range also takes the ranges queued behind it that
// continue it, up to its share of the download (the bytes to fetch divided
// among the replicas), and fetches them with one request. Work stealing
// (scheduler.go) then balances the tail: an idle replica takes over half
// of the longest span, so a large request is never a straggler.
//
// Requests sized by the round trip instead (20 x rate x time to first
// byte, so that the wait costs 5%) lost to one request per share: on
// `dlflow bench --scenario wan` (256 MiB, 8 connections of 10 MiB/s,
// 100 ms), medians of 5 were 3.43 s for the share, 3.82 s for 20 MiB
// requests and 4.15 s for one 4 MiB piece per request; on loopback
// without limits all three were within the noise.
//
// While a reorder window binds (ranged-ordered.yaml, or a hash.tap with a
// window and a checksum to check), a request asks for one range: the
// window slides only as fast as its lowest request completes, so a large
// one holds every other connection back. With 8 connections and a 64 MiB
// window, requests of 8 MiB took 0.36 s on loopback (256 MiB) where one
// piece each took 0.32 s, and on the wan scenario 4.11 s against 4.15 s,
// with ten more connections cut by work stealing.
//
// The pieces stay the unit of the window's credits and of resume: a span
// only ever covers whole ranges the splitter handed out, in offset order.
//
// The replicas receive under a token, one at a time, so that the ranges a
// replica finds queued behind its own are the ones that follow it: without
// it, ranges handed to waiting replicas in turn interleave, and none would
// continue another.

// rangeTaker is shared by the replicas of one http.reader in one run.
type rangeTaker struct {
	token chan struct{} // holds a value while a replica receives
	share int64         // the most one request asks for; 0: one range each
	// window, while it binds (its frontier is short of size), makes each
	// request one range. It is read at each take: a stage may lift it in
	// its Start, after the reader's.
	window *pipeline.Window
	size   int64
	// idle is set while the token's holder waits on an empty input: the
	// others need not wait for the token, there is nothing to take.
	idle atomic.Bool
}

// extendWait bounds how long a replica that took a range waits for the
// ranges that continue it. The source queues them as fast as it can (in
// microseconds, unless it is short of CPU), and a replica that took the
// first range of a run may find them not queued yet.
const extendWait = 5 * time.Millisecond

// newRangeTaker returns a taker whose requests ask for up to share bytes;
// share <= 0 takes one range per request.
func newRangeTaker(share int64) *rangeTaker {
	return &rangeTaker{token: make(chan struct{}, 1), share: share}
}

// newRunTaker returns the taker of a run of the stage: its requests ask
// for the worker's share of what is left to fetch (the size, less what an
// earlier run wrote, divided among the workers), at most limit when it is
// set, and one range while a window binds. It takes one range per request
// when the size is unknown.
func newRunTaker(env *pipeline.Env, limit int64) *rangeTaker {
	res := env.Resource
	if !res.SizeKnown() || res.Size <= 0 {
		return newRangeTaker(0)
	}
	workers := int64(max(env.Workers, 1))
	if n := int64(len(res.Mirrors) + 1); n > 1 && res.SizeKnown() {
		// With several sources a share is the primary's connection's:
		// mirrors ask for less until measured (scheduler.shareOfLocked), and a dead one
		// must not cut the primary's requests.
		workers = max((workers+n-1)/n, 1)
	}
	left := res.Size
	if env.Have != nil {
		left -= env.Have.Len()
	}
	share := (left + workers - 1) / workers
	if limit > 0 {
		share = min(share, limit)
	}
	t := newRangeTaker(alignPiece(pipeline.ByteSize(share)))
	t.window, t.size = env.Window, res.Size
	return t
}

// limit is the most the next request asks for; 0 asks for one range.
func (t *rangeTaker) limit() int64 {
	if t.window != nil && t.window.Frontier() < t.size {
		return 0
	}
	return t.share
}

// takeResult says what a take found.
type takeResult int

const (
	takeNone   takeResult = iota // nothing queued (or the token was held)
	takeRange                    // a range
	takeClosed                   // the input is closed
)

// try takes a queued range without waiting for one, extended by the ranges
// behind it. A range received that does not continue it is returned in
// carry, for the replica's next request. It waits for the token while
// another replica takes a range, not while one waits for the input.
//
// frac scales the request the replica may ask for (see httpReader with
// several sources): 1 is the whole limit, 0 one range.
func (t *rangeTaker) try(ctx context.Context, in <-chan pipeline.Range, frac float64) (r pipeline.Range, carry *pipeline.Range, res takeResult) {
	select {
	case t.token <- struct{}{}:
	default:
		if t.idle.Load() {
			return r, nil, takeNone // the input is empty
		}
		select {
		case t.token <- struct{}{}:
		case <-ctx.Done():
			return r, nil, takeNone
		}
	}
	defer t.release()
	select {
	case next, ok := <-in:
		if !ok {
			return r, nil, takeClosed
		}
		r, carry = t.extend(next, in, frac)
		return r, carry, takeRange
	default:
		return r, nil, takeNone
	}
}

// wait blocks until it takes a range (extended as try does), the input
// closes, changed or poll is ready, or ctx is done; nil channels never
// are, and a nil input waits for the others alone. It returns takeNone
// when woken by changed or poll, and ctx.Err() when cancelled.
func (t *rangeTaker) wait(ctx context.Context, in <-chan pipeline.Range, changed <-chan struct{}, poll <-chan time.Time, frac float64) (r pipeline.Range, carry *pipeline.Range, res takeResult, err error) {
	token := t.token
	if in == nil {
		token = nil
	}
	select {
	case token <- struct{}{}:
	case <-changed:
		return r, nil, takeNone, nil
	case <-poll:
		return r, nil, takeNone, nil
	case <-ctx.Done():
		return r, nil, takeNone, ctx.Err()
	}
	defer t.release()
	t.idle.Store(true)
	defer t.idle.Store(false)
	select {
	case next, ok := <-in:
		if !ok {
			return r, nil, takeClosed, nil
		}
		t.idle.Store(false)
		r, carry = t.extend(next, in, frac)
		return r, carry, takeRange, nil
	case <-changed:
		return r, nil, takeNone, nil
	case <-poll:
		return r, nil, takeNone, nil
	case <-ctx.Done():
		return r, nil, takeNone, ctx.Err()
	}
}

func (t *rangeTaker) release() { <-t.token }

// extend appends to r the ranges of the input that continue it, while r
// is shorter than the limit. It waits for them at most extendWait in all.
func (t *rangeTaker) extend(r pipeline.Range, in <-chan pipeline.Range, frac float64) (pipeline.Range, *pipeline.Range) {
	if r.End < 0 {
		return r, nil
	}
	limit := t.limit()
	if frac < 1 {
		limit = int64(float64(limit) * max(frac, 0))
	}
	var timeout <-chan time.Time
	for r.End-r.Start < limit {
		var next pipeline.Range
		var ok bool
		select {
		case next, ok = <-in:
		default:
			if timeout == nil {
				timer := time.NewTimer(extendWait)
				defer timer.Stop()
				timeout = timer.C
			}
			select {
			case next, ok = <-in:
			case <-timeout:
				return r, nil
			}
		}
		switch {
		case !ok:
			return r, nil // the next take sees the input closed
		case next.Start != r.End || next.End < next.Start:
			return r, &next
		}
		r.End = next.End
	}
	return r, nil
}
