package dlflow

import (
	"context"
	"path/filepath"
	"sync"

	"github.com/sourcegraph/conc/pool"
)

// BatchResult is how one request of a batch ended.
type BatchResult struct {
	Request *Request
	// Result is never nil; see Download.Wait.
	Result *Result
	Err    error
}

// Batch downloads the requests it receives on reqs, jobs at a time, and
// sends how each ended on the returned channel, in the order they end. A
// download whose bytes are all in no longer counts against jobs while it
// makes its file durable and visible (fsync, rename): the next one's
// requests overlap that, and at most jobs more downloads are at that
// stage. It takes a request from reqs only when a download slot is free,
// so a list of any length streams through in bounded memory. Connections and TLS
// sessions are shared, and the client's per-host limit holds over all the
// downloads (WithMaxPerHost).
//
// Two requests of one batch may not write the same file at once: the
// later one fails with an *OutputClaimedError, before it writes anything.
// Once the earlier one has ended, its output is a file like any other: the
// later one finds it there (ErrOutputExists, unless SkipExisting or
// Overwrite). The batch keeps nothing of a download that ended, so its
// memory does not grow with the number of requests. A failed download
// does not stop the others.
//
// The returned channel is closed once reqs is closed, or ctx is done, and
// every started download has ended; the caller must receive until then.
// Requests that arrive after ctx is done are neither started nor reported.
func (c *Client) Batch(ctx context.Context, jobs int, reqs <-chan *Request) <-chan BatchResult {
	out := make(chan BatchResult)
	b := &batch{claimed: map[string]*Request{}}
	go func() {
		defer close(out)
		// A download holds a transfer slot from its first request until
		// its bytes are in (or it ends): it prepares (configuration,
		// output checks) before, and makes its file durable and visible
		// (fsync, rename) after, overlapping the others' transfers. So up
		// to 2*jobs downloads exist, each holding a pool goroutine.
		turns := newTurns(max(jobs, 1))
		p := pool.New().WithMaxGoroutines(2 * max(jobs, 1))
		defer p.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case r, ok := <-reqs:
				if !ok {
					return
				}
				turn := turns.next()
				// Go blocks while 2*jobs downloads run.
				p.Go(func() {
					defer turn.free()
					if ctx.Err() != nil {
						return // interrupted before it started: not reported
					}
					var claimed string
					d := c.startWith(ctx, r, func(path string) (err error) {
						claimed, err = b.claim(path, r)
						return err
					}, turn.wait, turn.free)
					res, err := d.Wait()
					b.release(claimed, r)
					if !turn.admitted && ctx.Err() != nil {
						return // interrupted before it reached the network: not reported
					}
					out <- BatchResult{Request: r, Result: res, Err: err}
				})
			}
		}
	}()
	return out
}

// batch holds what the downloads of one batch share.
type batch struct {
	mu      sync.Mutex
	claimed map[string]*Request // absolute output path -> the running download's request that writes it
}

// claim reserves path for r, until release. It returns the key to
// release, "" when it reserved nothing.
func (b *batch) claim(path string, r *Request) (string, error) {
	key, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, ok := b.claimed[key]; ok && prev != r {
		return "", &OutputClaimedError{Path: path, By: prev}
	}
	b.claimed[key] = r
	return key, nil
}

// release gives up r's claim on key once r's download ended.
func (b *batch) release(key string, r *Request) {
	if key == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.claimed[key] == r {
		delete(b.claimed, key)
	}
}

// turns admits the downloads of a batch to the network in the order the
// batch received them, jobs at a time.
type turns struct {
	slots chan struct{}
	last  chan struct{} // closed once the latest download's turn passed
}

func newTurns(jobs int) *turns {
	t := &turns{slots: make(chan struct{}, jobs), last: make(chan struct{})}
	close(t.last)
	return t
}

// next returns the turn of the next download; the batch's goroutine calls
// it in the order of the requests.
func (t *turns) next() *turn {
	tn := &turn{slots: t.slots, prev: t.last, mine: make(chan struct{})}
	t.last = tn.mine
	return tn
}

// turn is one download's place in the order. wait is called at most once,
// from the download's goroutine; free may be called more than once, and
// after the download ended.
type turn struct {
	slots    chan struct{}
	prev     <-chan struct{} // closed when the turn before passed
	mine     chan struct{}   // closed when this turn passes
	admitted bool            // a slot was taken; read after the download ended
	passOnce sync.Once
	freeOnce sync.Once
}

// wait blocks until the downloads before this one were admitted (or
// ended) and a slot is free, and takes the slot.
func (tn *turn) wait(ctx context.Context) error {
	select {
	case <-tn.prev:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	select {
	case tn.slots <- struct{}{}:
		tn.admitted = true
		tn.pass()
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (tn *turn) pass() { tn.passOnce.Do(func() { close(tn.mine) }) }

// free gives the slot back, once, and lets the next download's turn come
// if this one never took a slot (it failed before, or was interrupted).
func (tn *turn) free() {
	tn.pass()
	tn.freeOnce.Do(func() {
		if tn.admitted {
			<-tn.slots
		}
	})
}
