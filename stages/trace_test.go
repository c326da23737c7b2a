package stages

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// TestReaderTrace: with a pipeline.Trace, the http.reader records every
// GET the origin saw (and the probe's answer it took over), each with
// ordered times, its range and samples that only grow; the bytes of all
// requests add up to the file, once each; every steal the scheduler counts
// is an event of the replica that took the work over.
func TestReaderTrace(t *testing.T) {
	htNoLeaks(t)
	const size = 8<<20 + 12345
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	srv.SetFaults(origin.Faults{Trickle: 256 << 10, TrickleRequest: 2})
	out := newHTOutput()
	reg := htRegistry(t)
	if err := pipeline.Register(reg, splitterDef); err != nil {
		t.Fatal(err)
	}
	g, err := pipeline.Build(reg, stealGraph(1<<20, 4, htReaderConfig(nil), 0, out))
	if err != nil {
		t.Fatal(err)
	}
	trace := pipeline.NewTrace()
	if err := g.Run(htCtx(t, 60*time.Second), pipeline.RunOptions{Resource: res, Log: zerolog.Nop(), Trace: trace}); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	var st stealCounts
	for _, info := range g.Stages() {
		if s, _ := g.Stage(info.ID); info.Type == "http.reader" {
			st = s.(*httpReader).sched.stats()
		}
	}
	if !srv.WaitIdle(5 * time.Second) {
		t.Fatal("origin still busy")
	}
	snap := trace.Snapshot()
	gets := 0
	for _, r := range srv.Log() {
		if r.Method == http.MethodGet {
			gets++
		}
	}
	var bytes int64
	sent, prefetched := 0, 0
	for i, r := range snap.Requests {
		name := fmt.Sprintf("request %d (reader %d, [%d, %d))", i, r.Reader, r.Start, r.End)
		if r.Prefetched {
			prefetched++
		} else {
			sent++
		}
		if r.Stage != "fetch" || r.Reader < 0 || r.Reader >= 4 || r.Start < 0 || r.End > size || (r.End >= 0 && r.End <= r.Start) {
			t.Errorf("%s: stage %q", name, r.Stage)
		}
		if r.Sent < 0 || r.Header < r.Sent || r.Ended < r.Header || r.Ended > snap.Elapsed || r.Err != "" {
			t.Errorf("%s: sent %v, header %v, ended %v of %v, error %q", name, r.Sent, r.Header, r.Ended, snap.Elapsed, r.Err)
		}
		if r.End >= 0 && r.Bytes > r.End-r.Start {
			t.Errorf("%s: %d bytes", name, r.Bytes)
		}
		prev := pipeline.TraceSample{At: r.Sent}
		for _, s := range r.Samples {
			if s.At < prev.At || s.Bytes < prev.Bytes || s.At > r.Ended {
				t.Errorf("%s: sample %+v after %+v", name, s, prev)
			}
			prev = s
		}
		if prev.Bytes != r.Bytes {
			t.Errorf("%s: last sample %d bytes of %d", name, prev.Bytes, r.Bytes)
		}
		bytes += r.Bytes
	}
	if bytes != size {
		t.Errorf("the requests delivered %d bytes, want %d", bytes, size)
	}
	if sent != gets || prefetched > 1 {
		t.Errorf("%d requests sent and %d prefetched in the trace, the origin saw %d GETs", sent, prefetched, gets)
	}
	steals := 0
	for _, e := range snap.Events {
		if e.Kind == "steal" {
			steals++
		}
	}
	if want := st.Replaced + st.Halved + st.Raced + st.Adopted; steals != want || want == 0 {
		t.Errorf("%d steal events, the scheduler counted %+v", steals, st)
	}
	t.Logf("%d requests (%d prefetched), %d events, %+v", len(snap.Requests), prefetched, len(snap.Events), st)
}

// TestTraceOff: a nil Trace records nothing and its handles cost no
// allocation, on the hot path of every chunk.
func TestTraceOff(t *testing.T) {
	var trace *pipeline.Trace
	r := trace.RequestSent("fetch", 0, 0, 100)
	if r != nil {
		t.Fatal("a nil trace made a request")
	}
	if n := testing.AllocsPerRun(100, func() { r.Delivered(10); trace.Event("fetch", 0, "steal", 0, 1, "x") }); n != 0 {
		t.Errorf("%v allocations per chunk with the trace off", n)
	}
	r.HeaderCame()
	r.Done(nil)
	if s := trace.Snapshot(); len(s.Requests)+len(s.Events)+len(s.Busy) != 0 {
		t.Errorf("snapshot of a nil trace: %+v", s)
	}
}
