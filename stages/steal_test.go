package stages

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// stealGraph is range.splitter -> http.reader x workers [-> reorder.heap]
// -> sink.
func stealGraph(piece pipeline.ByteSize, workers int, cfg HTTPReaderConfig, window pipeline.ByteSize, out *htOutput) []pipeline.Node {
	nodes := []pipeline.Node{
		{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: piece}},
		{ID: "fetch", Type: "http.reader", Inputs: []string{"split"}, Workers: workers, Config: &cfg},
	}
	last := "fetch"
	if window > 0 {
		nodes = append(nodes, pipeline.Node{ID: "order", Type: "reorder.heap", Inputs: []string{"fetch"}, Config: &ReorderConfig{Window: window}})
		last = "order"
	}
	return append(nodes, pipeline.Node{ID: "sink", Type: "ht.sink", Inputs: []string{last}, Config: &htSinkConfig{Out: out}})
}

// stealRun runs nodes and returns the reader stage's stealing counts.
func stealRun(t testing.TB, ctx context.Context, res *pipeline.Resource, nodes []pipeline.Node) (stealCounts, error) {
	t.Helper()
	reg := htRegistry(t)
	for _, err := range []error{pipeline.Register(reg, splitterDef), pipeline.Register(reg, reorderDef)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	g, err := pipeline.Build(reg, nodes)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	bufs := pipeline.NewBuffers()
	err = g.Run(ctx, pipeline.RunOptions{Resource: res, Buffers: bufs, Log: zerolog.Nop()})
	if n := bufs.InUse(); n != 0 {
		t.Errorf("%d bytes of buffers still in use after the run", n)
	}
	var st stealCounts
	for _, info := range g.Stages() {
		s, _ := g.Stage(info.ID)
		if r, ok := s.(*httpReader); ok && r.sched != nil {
			st = r.sched.stats()
		}
	}
	return st, err
}

// parseRangeHeader parses "bytes=a-b" into [a, b+1).
func parseRangeHeader(t testing.TB, h string) pipeline.Range {
	t.Helper()
	a, b, ok := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	start, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("range header %q", h)
	}
	return pipeline.Range{Start: start, End: last + 1}
}

// checkTailTaken asserts that the request that trickled (it sent fewer
// bytes than it was asked for) had the tail of its range fetched by
// another request, and that every request asked for bytes within a piece.
func checkTailTaken(t *testing.T, log []origin.Request) {
	t.Helper()
	var gets []pipeline.Range
	var slow []int
	for _, r := range log {
		if r.Method != http.MethodGet {
			continue
		}
		if r.Status != http.StatusPartialContent {
			t.Fatalf("request %+v", r)
		}
		rg := parseRangeHeader(t, r.Range)
		if r.Bytes < rg.Len() {
			slow = append(slow, len(gets))
		}
		gets = append(gets, rg)
	}
	if len(slow) == 0 {
		t.Fatalf("no request was cut short: %+v", log)
	}
	for _, i := range slow {
		s := gets[i]
		if s.Start%(4<<10) != 0 && s.Start != 0 {
			continue // itself a takeover of a slow range
		}
		covered := false
		for j, g := range gets {
			covered = covered || j != i && g.End == s.End && g.Start >= s.Start
		}
		if !covered {
			t.Fatalf("the tail of the slow request %v was not fetched by another request: %v", s, gets)
		}
		return
	}
}

// TestStealSlowConnection: one request trickles; the idle readers take its
// range over, so the download ends long before the trickle could deliver
// it, with every byte exactly once, in both topologies. With a piece per
// request, the trickling reader is replaced; with a request per share
// (the default), its 12 MiB are halved or replaced.
func TestStealSlowConnection(t *testing.T) {
	for _, tc := range []struct {
		name       string
		window     pipeline.ByteSize
		faults     origin.Faults
		maxRequest pipeline.ByteSize
	}{
		// The second GET trickles (a piece in the middle).
		{"positional", 0, origin.Faults{Trickle: 16 << 10, TrickleRequest: 2}, 1},
		// The range at 0 trickles: the reorder heap's frontier, which
		// stalls the splitter on the window.
		{"ordered", 16 << 20, origin.Faults{Trickle: 16 << 10, TrickleOffset: 0}, 1},
		// The GET at offset 0 trickles: a whole share, a third of the
		// file. (Not the second GET: with a request per share, that was
		// at times the 12345-byte tail, done before anyone could steal.)
		{"shares", 0, origin.Faults{Trickle: 16 << 10, TrickleOffset: 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			htNoLeaks(t)
			const size = 48<<20 + 12345
			srv := htOrigin(t, size, nil)
			res := htProbe(t, srv.URL())
			srv.ResetStats()
			srv.SetFaults(tc.faults)
			out := newHTOutput()
			start := time.Now()
			cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.MaxRequest = tc.maxRequest })
			st, err := stealRun(t, htCtx(t, 200*time.Second), res, stealGraph(4<<20, 4, cfg, tc.window, out))
			if err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			htCheck(t, out, size) // every byte once: a duplicate counts twice
			if tc.window > 0 && !out.ordered {
				t.Fatal("the reorder heap's output is out of order")
			}
			// 4 MiB at 16 KiB/s takes 256s; a second GET took it over.
			// (48s were seen under -race at a load average of 30.)
			if d > 150*time.Second {
				t.Fatalf("took %v", d)
			}
			if (tc.maxRequest != 0 && st.Replaced == 0) || st.Replaced+st.Halved == 0 {
				t.Fatalf("the slow connection was not replaced: %+v", st)
			}
			if !srv.WaitIdle(5 * time.Second) {
				t.Fatal("origin still busy")
			}
			checkTailTaken(t, srv.Log())
			t.Logf("%v, %+v, %d requests", d, st, len(srv.Log()))
		})
	}
}

// TestStealSplitsLongRanges: with one large range per reader and one reader
// throttled, the idle readers split its range; each byte is fetched once.
func TestStealSplitsLongRanges(t *testing.T) {
	htNoLeaks(t)
	const size = 8 << 20
	// Rates far below what the machine can do even under load, so that
	// only the origin sets them: the fast reader ends its piece after one
	// second, when the slow one still has 2.5 MiB to go. (At 16 and 6 MiB/s,
	// -race on two loaded cores could not keep up and both readers ran at
	// the speed of the CPU, so nothing was split: #10.12.) The small
	// steal_min keeps the split worth it even if the fast reader is late.
	srv := htOrigin(t, size, func(o *origin.Options) { o.RateLimit = 4 << 20 })
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	// The first GET (the range at 0) is slower but not far below the
	// others' speed: it is split, not replaced.
	srv.SetFaults(origin.Faults{Trickle: 3 << 19, TrickleRequest: 1})
	out := newHTOutput()
	// Two readers, two 4 MiB pieces: the fast one ends first and splits
	// the other's rest.
	cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.StealMin = 256 << 10 })
	st, err := stealRun(t, htCtx(t, 60*time.Second), res, stealGraph(4<<20, 2, cfg, 0, out))
	if err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	if st.Halved == 0 {
		t.Fatalf("nothing was split: %+v", st)
	}
	srv.WaitIdle(5 * time.Second)
	t.Logf("%+v, %d requests", st, len(srv.Log()))
	// Every byte was requested once, apart from the bytes a replaced or
	// raced request had in flight. A split takes the tail of a request in
	// flight, so a request that starts inside another ends within it (at
	// its end, or earlier when the stolen part was split again).
	var rs []pipeline.Range
	for _, r := range srv.Log() {
		rs = append(rs, parseRangeHeader(t, r.Range))
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	if st.Replaced == 0 && st.Raced == 0 {
		for i := 1; i < len(rs); i++ {
			if rs[i].Start < rs[i-1].End && rs[i].End > rs[i-1].End {
				t.Fatalf("overlapping requests %v", rs)
			}
		}
	}
}

// TestStealDisabled: steal_min 0 keeps the old behaviour: one request per
// piece, however slow.
func TestStealDisabled(t *testing.T) {
	htNoLeaks(t)
	const size = 8 << 20
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	srv.SetFaults(origin.Faults{Trickle: 4 << 20, TrickleRequest: 1})
	out := newHTOutput()
	cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.StealMin = 0 })
	st, err := stealRun(t, htCtx(t, 60*time.Second), res, stealGraph(4<<20, 2, cfg, 0, out))
	if err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	srv.WaitIdle(5 * time.Second)
	if n := len(srv.Log()); n != 2 || st != (stealCounts{}) {
		t.Fatalf("%d requests, %+v", n, st)
	}
}
