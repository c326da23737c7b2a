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
// sends how each ended on the returned channel, in the order they end. It
// takes a request from reqs only when a download slot is free, so a list
// of any length streams through in bounded memory. Connections and TLS
// sessions are shared, and the client's per-host limit holds over all the
// downloads (WithMaxPerHost).
//
// Two requests of one batch may not write the same file: the later one
// fails with an *OutputClaimedError, before it writes anything. A failed
// download does not stop the others.
//
// The returned channel is closed once reqs is closed, or ctx is done, and
// every started download has ended; the caller must receive until then.
// Requests that arrive after ctx is done are neither started nor reported.
func (c *Client) Batch(ctx context.Context, jobs int, reqs <-chan *Request) <-chan BatchResult {
	out := make(chan BatchResult)
	b := &batch{claimed: map[string]*Request{}}
	go func() {
		defer close(out)
		p := pool.New().WithMaxGoroutines(max(jobs, 1))
		defer p.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case r, ok := <-reqs:
				if !ok {
					return
				}
				// Go blocks while jobs downloads run.
				p.Go(func() {
					if ctx.Err() != nil {
						return // interrupted before it started: not reported
					}
					d := c.start(ctx, r, func(path string) error { return b.claim(path, r) })
					res, err := d.Wait()
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
	claimed map[string]*Request // absolute output path -> the request that writes it
}

// claim reserves path for r.
func (b *batch) claim(path string, r *Request) error {
	key, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, ok := b.claimed[key]; ok && prev != r {
		return &OutputClaimedError{Path: path, By: prev}
	}
	b.claimed[key] = r
	return nil
}
