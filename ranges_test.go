package dlflow_test

import (
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// TestConnectionRanges: while a ranged download runs over four throttled
// connections, Download.ConnectionRanges tells each connection's range:
// every one lies within [0, size), none overlaps another at one instant,
// its Done fits in it, its source is the URL; several connections are
// seen fetching at once; after the end none is.
func TestConnectionRanges(t *testing.T) {
	noLeaks(t)
	const size = 32 << 20
	// The connection of the share at 16 MiB is a quarter slower than the
	// others: an idle one takes over the upper part of its range (a
	// halving), which lowers that range's end. Not slower still: a
	// connection half as fast is raced (its tail fetched a second time),
	// and two racing connections hold one range, as documented.
	srv := startOrigin(t, origin.Options{Size: size, Seed: 43, RateLimit: 2 << 20})
	srv.SetFaults(origin.Faults{Trickle: 3 << 19, TrickleOffset: 16 << 20})
	out := fltOut(t)
	started := make(chan struct{})
	req := &dlflow.Request{URL: srv.URL(), Path: out, Connections: 4,
		Hooks: dlflow.Hooks{Started: func(*dlflow.Download) { close(started) }}}
	d := newClient(t).Start(t.Context(), req)
	select {
	case <-started:
	case <-time.After(testTimeout):
		t.Fatal("Hooks.Started not called")
	}
	most, samples := 0, 0
	ends := map[int64]int64{} // the least end seen of each start
	lowered := 0
	deadline := time.Now().Add(testTimeout)
	for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
		select {
		case <-d.Done():
			i = 5000
			continue
		case <-time.After(10 * time.Millisecond):
		}
		rs := d.ConnectionRanges()
		if n := len(d.Progress().Connections); len(rs) > n {
			t.Fatalf("%d ranges for %d connections", len(rs), n)
		}
		var fetching []pipeline.ConnectionRange
		for _, r := range rs {
			if !r.Fetching() {
				if r != (pipeline.ConnectionRange{}) {
					t.Fatalf("a range not fetching that is not the zero value: %+v", r)
				}
				continue
			}
			if r.Start < 0 || r.End <= r.Start || r.End > size || r.Done < 0 || r.Done > r.End-r.Start || r.Source != srv.URL() {
				t.Fatalf("range %+v of a %d-byte file from %s", r, size, srv.URL())
			}
			for _, o := range fetching {
				if r.Start < o.End && o.Start < r.End {
					t.Fatalf("ranges overlap at one instant: %+v and %+v (all: %+v)", o, r, rs)
				}
			}
			fetching = append(fetching, r)
			if e, ok := ends[r.Start]; !ok || r.End < e {
				if ok {
					lowered++
				}
				ends[r.Start] = r.End
			}
		}
		most, samples = max(most, len(fetching)), samples+1
	}
	res, err := d.Wait()
	fltOK(t, res, err, out, size, 43)
	t.Logf("%d samples, at most %d connections fetching at once, %d ends lowered; ranges seen %v", samples, most, lowered, ends)
	if most < 3 {
		t.Errorf("at most %d connections seen fetching in %d samples, want 3 or 4", most, samples)
	}
	for _, r := range d.ConnectionRanges() {
		if r.Fetching() {
			t.Errorf("a range after the end: %+v", r)
		}
	}
}
