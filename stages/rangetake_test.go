package stages

import (
	"context"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// TestRangeTakerExtends drives a taker by hand: a take extends its range
// by the queued ranges that continue it, up to the share; a range after a
// gap is carried to the next request; a closed input says so.
func TestRangeTakerExtends(t *testing.T) {
	const mib = 1 << 20
	in := make(chan pipeline.Range, 8)
	for _, r := range [][2]int64{{0, mib}, {mib, 2 * mib}, {2 * mib, 3 * mib}, {5 * mib, 6 * mib}, {6 * mib, 7 * mib}, {7 * mib, 8 * mib}} {
		in <- pipeline.Range{Start: r[0], End: r[1]}
	}
	close(in)
	tk := newRangeTaker(2 * mib)
	ctx := context.Background()

	r, carry, res := tk.try(ctx, in, 1)
	if res != takeRange || r != (pipeline.Range{Start: 0, End: 2 * mib}) || carry != nil {
		t.Fatalf("first take: %v %v %v, want [0, 2MiB) at the share", r, carry, res)
	}
	// [2,3) is continued by nothing queued: the next range is past a gap
	// (a resume's), carried, not merged.
	r, carry, res = tk.try(ctx, in, 1)
	if res != takeRange || r != (pipeline.Range{Start: 2 * mib, End: 3 * mib}) || carry == nil || *carry != (pipeline.Range{Start: 5 * mib, End: 6 * mib}) {
		t.Fatalf("second take: %v %v %v, want [2, 3MiB) carrying [5, 6MiB)", r, carry, res)
	}
	r, carry, res = tk.try(ctx, in, 1)
	if res != takeRange || r != (pipeline.Range{Start: 6 * mib, End: 8 * mib}) || carry != nil {
		t.Fatalf("third take: %v %v %v, want [6, 8MiB)", r, carry, res)
	}
	if _, _, res = tk.try(ctx, in, 1); res != takeClosed {
		t.Fatalf("take of a drained closed input: %v, want takeClosed", res)
	}

	// A share of 0 takes one range per request.
	one := newRangeTaker(0)
	in2 := make(chan pipeline.Range, 2)
	in2 <- pipeline.Range{Start: 0, End: mib}
	in2 <- pipeline.Range{Start: mib, End: 2 * mib}
	if r, _, _ := one.try(ctx, in2, 1); r.End != mib {
		t.Fatalf("share 0 took %v, want one range", r)
	}
}

// TestRangeTakerWindow: while a window binds, a request asks for one
// range; once it is lifted, for the share.
func TestRangeTakerWindow(t *testing.T) {
	const mib = 1 << 20
	w := pipeline.NewWindow(8 * mib)
	env := &pipeline.Env{Resource: &pipeline.Resource{Size: 64 * mib, AcceptRanges: true}, Workers: 2, Window: w}
	tk := newRunTaker(env, 0)
	if tk.share != 32*mib {
		t.Fatalf("share %d, want 32 MiB (64 MiB over 2 workers)", tk.share)
	}
	in := make(chan pipeline.Range, 16)
	for i := range int64(16) {
		in <- pipeline.Range{Start: i * mib, End: (i + 1) * mib}
	}
	ctx := context.Background()
	if r, _, _ := tk.try(ctx, in, 1); r != (pipeline.Range{Start: 0, End: mib}) {
		t.Fatalf("take under a window: %v, want [0, 1MiB)", r)
	}
	w.Advance(1 << 62) // lifted, as hash.tap does when it has nothing to check
	if r, _, _ := tk.try(ctx, in, 1); r != (pipeline.Range{Start: mib, End: 16 * mib}) {
		t.Fatalf("take once lifted: %v, want the rest of the queue, [1, 16MiB)", r)
	}

	// What an earlier run wrote is not shared out again; max_request caps.
	have := &pipeline.Have{}
	have.Set([]pipeline.Range{{Start: 0, End: 32 * mib}}, nil)
	env = &pipeline.Env{Resource: env.Resource, Workers: 4, Have: have}
	if s := newRunTaker(env, 0).share; s != 8*mib {
		t.Errorf("share after a resume of 32 of 64 MiB on 4 workers: %d, want 8 MiB", s)
	}
	if s := newRunTaker(env, 3*mib+1).share; s != 3*mib+4096 {
		t.Errorf("share with max_request 3MiB+1: %d, want it rounded up to 4 KiB", s)
	}
	env.Resource = &pipeline.Resource{Size: -1}
	if s := newRunTaker(env, 0).share; s != 0 {
		t.Errorf("share of an unknown size: %d, want 0", s)
	}
}

// TestRangeTakerIdleHolder: while one replica waits for the input with the
// token, another's try reports nothing queued at once (so that it can
// steal) instead of waiting for the token; the waiter gets the next range.
func TestRangeTakerIdleHolder(t *testing.T) {
	tk := newRangeTaker(1 << 20)
	in := make(chan pipeline.Range)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan pipeline.Range, 1)
	go func() {
		r, _, _, _ := tk.wait(ctx, in, nil, nil, 1)
		got <- r
	}()
	for deadline := time.Now().Add(5 * time.Second); !tk.idle.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never waited on the input")
		}
		time.Sleep(time.Millisecond)
	}
	if _, _, res := tk.try(ctx, in, 1); res != takeNone {
		t.Fatalf("try beside an idle holder: %v, want takeNone", res)
	}
	in <- pipeline.Range{Start: 0, End: 4096}
	select {
	case r := <-got:
		if r != (pipeline.Range{Start: 0, End: 4096}) {
			t.Fatalf("waiter got %v", r)
		}
	case <-ctx.Done():
		t.Fatal("the waiter did not get the range")
	}
}

// TestHTTPReaderRequestPerShare: four readers fetch 16 pieces of 1 MiB
// with four requests, one per share, each of whole pieces in a row; the
// bytes arrive once each. A split by work stealing (on a loaded machine)
// adds a request, never a byte twice.
func TestHTTPReaderRequestPerShare(t *testing.T) {
	htNoLeaks(t)
	const size, piece, workers = 16 << 20, 1 << 20, 4
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	out := newHTOutput()
	st, err := stealRun(t, htCtx(t, 30*time.Second), res, stealGraph(piece, workers, htReaderConfig(nil), 0, out))
	if err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	srv.WaitIdle(5 * time.Second)
	var gets []pipeline.Range
	for _, r := range srv.Log() {
		if r.Method == http.MethodGet {
			gets = append(gets, parseRangeHeader(t, r.Range))
		}
	}
	sort.Slice(gets, func(i, j int) bool { return gets[i].Start < gets[j].Start })
	steals := st.Halved + st.Replaced + st.Raced
	if len(gets) > workers+steals {
		t.Fatalf("%d requests (%+v): %v; want one per share of 4 MiB, and one per steal", len(gets), st, gets)
	}
	if steals == 0 {
		for _, g := range gets {
			if g.Start%(size/workers) != 0 || g.Len() != size/workers {
				t.Fatalf("requests %v, want [0,4MiB), [4,8MiB), ...", gets)
			}
		}
	}
}

// TestHTTPReaderMergesRangesAsTheyCome: ranges arrive one at a time while
// the readers wait for them. The replicas take them one at a time, so the
// ranges following one a replica took are its own to merge: the sixteen
// pieces go out as four requests of four, not one per piece to whichever
// reader waited.
func TestHTTPReaderMergesRangesAsTheyCome(t *testing.T) {
	htNoLeaks(t)
	const size, piece, workers = 16 << 20, 1 << 20, 4
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	out := newHTOutput()
	nodes := htReaderGraph(htPieces(size, piece), workers, htReaderConfig(nil), out)
	nodes[0].Config.(*htRangesConfig).Gap = 200 * time.Microsecond
	if err := htRun(t, htCtx(t, 30*time.Second), res, nodes...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	srv.WaitIdle(5 * time.Second)
	var gets []pipeline.Range
	for _, r := range srv.Log() {
		gets = append(gets, parseRangeHeader(t, r.Range))
	}
	// Work stealing can split a request on a loaded machine, and a reader
	// starved of CPU for extendWait can miss the ranges behind its own:
	// either adds requests, but ranges handed out in turn would make 16.
	if len(gets) > 8 {
		t.Fatalf("%d requests for 16 pieces: %v; want about one per share of 4", len(gets), gets)
	}
}
