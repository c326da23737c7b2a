package dlflow_test

// Downloads of one file from several sources (Request.Mirrors) against
// real origins on 127.0.0.1: the bytes are asserted, and what each source
// served is counted by the origins and by Result.Sources.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

const mirSize, mirSeed = 12<<20 + 513, 21

// mirRequest downloads url and mirrors with 2 connections per source and
// 1 MiB pieces, fast retries.
func mirRequest(url, out string, mirrors ...string) *dlflow.Request {
	return &dlflow.Request{URL: url, Mirrors: mirrors, Path: out, Topology: dlflow.Topology{Name: "ranged"},
		Connections: 2, Sets: []string{"stages.split.config.piece=1MiB",
			"stages.fetch.config.backoff=10ms", "stages.fetch.config.max_backoff=50ms"}}
}

// deadURL is a URL on 127.0.0.1 where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/file.bin"
}

// sourceBytes sums what Result.Sources says the sources delivered.
func sourceBytes(t *testing.T, srcs []pipeline.SourceStats, n int) []int64 {
	t.Helper()
	if len(srcs) != n {
		t.Fatalf("%d sources reported, want %d: %+v", len(srcs), n, srcs)
	}
	out := make([]int64, n)
	for i, s := range srcs {
		out[i] = s.Bytes
	}
	return out
}

func TestMirrorsShareTheDownload(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	b := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed, RateLimit: 4 << 20})
	out := fltOut(t)
	res, err := do(t, mirRequest(a.URL(), out, b.URL()))
	fltOK(t, res, err, out, mirSize, mirSeed)
	got := sourceBytes(t, res.Sources, 2)
	if got[0]+got[1] != mirSize || got[0] == 0 || got[1] == 0 {
		t.Fatalf("sources delivered %v bytes, want both some, %d in all", got, int64(mirSize))
	}
	// Two connections to each: the mirror never saw more at once; the
	// primary's probe may hold a third.
	if st := b.Stats(); st.MaxInFlight > 2 || st.GETs == 0 {
		t.Fatalf("mirror: %d requests at once (want at most 2), %d GETs", st.MaxInFlight, st.GETs)
	}
	if st := a.Stats(); st.MaxInFlight > 3 {
		t.Fatalf("primary: %d requests at once, want at most 3", st.MaxInFlight)
	}
	for i, s := range res.Sources {
		if s.Dropped != "" || s.Errors != 0 {
			t.Errorf("source %d: %+v, want no errors", i, s)
		}
	}
	if res.Sources[1].URL != b.URL() {
		t.Errorf("source 1 is %q, want %q", res.Sources[1].URL, b.URL())
	}
}

func TestMirrorDeadFailsOver(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	dead := deadURL(t)
	out := fltOut(t)
	// The dead mirror is the first mirror and the primary is healthy.
	res, err := do(t, mirRequest(a.URL(), out, dead))
	fltOK(t, res, err, out, mirSize, mirSeed)
	got := sourceBytes(t, res.Sources, 2)
	if got[0] != mirSize || got[1] != 0 {
		t.Fatalf("sources delivered %v, want all from the primary", got)
	}
	if d := res.Sources[1]; !strings.Contains(d.Dropped, "connection refused") || d.Errors == 0 {
		t.Fatalf("dead mirror: %+v, want dropped for connection refused", d)
	}
	// Its ranges went to the primary's two connections, not more.
	if st := a.Stats(); st.MaxInFlight > 3 {
		t.Fatalf("primary: %d requests at once, want at most 3", st.MaxInFlight)
	}
}

func TestMirrorDeadPrimaryMidway(t *testing.T) {
	noLeaks(t)
	// The primary answers the probe, then every GET with 503: its
	// ranges move to the mirror.
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	a.SetFaults(origin.Faults{FailStatus: 503, FailAfter: 1, FailCount: 1 << 20})
	b := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	out := fltOut(t)
	res, err := do(t, mirRequest(a.URL(), out, b.URL()))
	fltOK(t, res, err, out, mirSize, mirSeed)
	if d := res.Sources[0]; !strings.Contains(d.Dropped, "503") {
		t.Fatalf("primary: %+v, want dropped for its 503s", d)
	}
	got := sourceBytes(t, res.Sources, 2)
	if got[0]+got[1] != mirSize {
		t.Fatalf("sources delivered %v, want %d in all", got, int64(mirSize))
	}
}

func TestMirrorsAllDeadFail(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	a.SetFaults(origin.Faults{FailStatus: 503, FailAfter: 1, FailCount: 1 << 20})
	out := fltOut(t)
	req := mirRequest(a.URL(), out, deadURL(t), deadURL(t))
	req.Sets = append(req.Sets, "stages.fetch.config.attempts=3")
	res, err := do(t, req)
	fltFailed(t, res, err, out, "giving up")
	// The last source left is never dropped: its errors fail the run.
	dropped := 0
	for _, s := range res.Sources {
		if s.Dropped != "" {
			dropped++
		}
	}
	if len(res.Sources) != 3 || dropped != 2 {
		t.Errorf("sources %+v, want 2 of 3 dropped", res.Sources)
	}
}

func TestMirrorWrongSizeDropped(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	// The primary's ETag, so that only the size tells.
	b := startOrigin(t, origin.Options{Size: mirSize + 1, Seed: mirSeed, ETag: fmt.Sprintf(`"%x-%x"`, mirSize, mirSeed)})
	logOpt, log := withLog(zerolog.WarnLevel)
	out := fltOut(t)
	res, err := do(t, mirRequest(a.URL(), out, b.URL()), logOpt)
	fltOK(t, res, err, out, mirSize, mirSeed)
	d := res.Sources[1]
	if !strings.Contains(d.Dropped, fmt.Sprintf("its size %d differs from the primary's %d", mirSize+1, mirSize)) || d.Bytes != 0 {
		t.Fatalf("mirror of another size: %+v, want dropped, no bytes", d)
	}
	if !contains(log.String(), "source dropped", b.URL(), "differs from the primary") {
		t.Fatalf("no warning naming the mirror:\n%s", log)
	}
	if !contains(log.String(), "one source left", a.URL()) {
		t.Fatalf("no warning that the primary is the one source left:\n%s", log)
	}
}

func TestMirrorValidators(t *testing.T) {
	noLeaks(t)
	// Same bytes, another ETag and Last-Modified: a mirror on another
	// server. Without a checksum it is not trusted; with one it is.
	other := origin.Options{Size: mirSize, Seed: mirSeed, ETag: `"other"`, LastModified: origin.DefaultLastModified.Add(time.Hour)}
	t.Run("unguarded", func(t *testing.T) {
		a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
		b := startOrigin(t, other)
		out := fltOut(t)
		res, err := do(t, mirRequest(a.URL(), out, b.URL()))
		fltOK(t, res, err, out, mirSize, mirSeed)
		if d := res.Sources[1]; d.Bytes != 0 || !strings.Contains(d.Dropped, `ETag "other" differs from the primary's`) {
			t.Fatalf("mirror with other validators: %+v, want dropped, no bytes", d)
		}
	})
	t.Run("checksum", func(t *testing.T) {
		a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
		b := startOrigin(t, other)
		out := fltOut(t)
		req := mirRequest(a.URL(), out, b.URL())
		req.Checksum = "sha256:" + origin.SHA256Hex(mirSize, mirSeed)
		res, err := do(t, req)
		fltOK(t, res, err, out, mirSize, mirSeed)
		if d := res.Sources[1]; d.Bytes == 0 || d.Dropped != "" {
			t.Fatalf("guarded mirror with other validators: %+v, want used", d)
		}
		if !strings.HasPrefix(res.Checksum, "sha256:") {
			t.Fatalf("checksum %q not verified", res.Checksum)
		}
	})
}

func TestMirrorLying(t *testing.T) {
	noLeaks(t)
	// Other bytes of the same size under the primary's very validators:
	// nothing in the answers tells them apart.
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	liar := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed + 1, ETag: fmt.Sprintf(`"%x-%x"`, mirSize, mirSeed)})
	out := fltOut(t)
	req := mirRequest(a.URL(), out, liar.URL())
	req.Checksum = "sha256:" + origin.SHA256Hex(mirSize, mirSeed)
	logOpt, log := withLog(zerolog.WarnLevel)
	res, err := do(t, req, logOpt)
	// The checksum fails on the mixed bytes; the download starts over from
	// the primary alone and ends right.
	fltOK(t, res, err, out, mirSize, mirSeed)
	if liar.Stats().BytesServed == 0 {
		t.Fatal("the lying mirror served nothing: the test proves nothing")
	}
	if !contains(log.String(), "failed verification", "primary URL alone") {
		t.Fatalf("no warning about the fallback:\n%s", log)
	}
	if res.Sources != nil {
		t.Fatalf("the last run had sources %+v, want the primary alone", res.Sources)
	}
}

func TestMirrorsResume(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed, RateLimit: 2 << 20})
	b := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed, RateLimit: 2 << 20})
	out := fltOut(t)
	req := mirRequest(a.URL(), out, b.URL())
	d := newClient(t).Start(context.Background(), req)
	for deadline := time.Now().Add(30 * time.Second); d.Progress().Done < 3<<20; {
		if time.Now().After(deadline) {
			t.Fatalf("less than 3 MiB after 30s: %+v", d.Progress())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p := d.Progress()
	if len(p.Sources) != 2 {
		t.Fatalf("progress has %d sources, want 2", len(p.Sources))
	}
	d.Cancel()
	if _, err := d.Wait(); err == nil {
		t.Fatal("cancelled download succeeded")
	}
	assertMissing(t, out)
	claimed := readResumeState(t, out).claimed()
	if claimed == 0 {
		t.Fatal("nothing to resume")
	}
	a.ResetStats()
	b.ResetStats()
	res, err := do(t, mirRequest(a.URL(), out, b.URL()))
	fltOK(t, res, err, out, mirSize, mirSeed)
	if res.Resumed != claimed {
		t.Fatalf("resumed %d bytes, the state claimed %d", res.Resumed, claimed)
	}
	got := sourceBytes(t, res.Sources, 2)
	if got[0]+got[1] != mirSize-claimed {
		t.Fatalf("sources delivered %v, want %d in all (the rest)", got, mirSize-claimed)
	}
	// What was on disk is not fetched again (bytes in flight when a range
	// is split or raced may be sent twice).
	if served := a.Stats().BytesServed + b.Stats().BytesServed; served >= mirSize {
		t.Fatalf("the origins served %d bytes for a rest of %d", served, mirSize-claimed)
	}
}

// TestMirrorSlowNeverHoldsTheTail: a mirror at 16 KiB/s per connection
// would take a minute for one 1 MiB range; the download ends with the
// test's bounds because the fast source takes its ranges back, and the
// bytes are right.
func TestMirrorSlowNeverHoldsTheTail(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	b := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed, RateLimit: 16 << 10})
	out := fltOut(t)
	res, err := do(t, mirRequest(a.URL(), out, b.URL()))
	fltOK(t, res, err, out, mirSize, mirSeed)
	got := sourceBytes(t, res.Sources, 2)
	if got[0]+got[1] != mirSize || got[1] >= 1<<20 {
		t.Fatalf("sources delivered %v, want the slow one less than one range", got)
	}
}

// TestMirrorSlowAskedForAProbe: a mirror whose speed is not measured yet
// asks for a probe (512 KiB) at a time, never a whole range that the
// primary must fetch again when the mirror turns out far slower; so a slow
// mirror cannot make the download slower than the primary alone.
func TestMirrorSlowAskedForAProbe(t *testing.T) {
	noLeaks(t)
	// The primary takes about 0.4 s, long enough for the mirror to be
	// asked; the mirror would take 16 s for a sample of its speed.
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed, RateLimit: 16 << 20})
	b := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed, RateLimit: 16 << 10})
	out := fltOut(t)
	res, err := do(t, mirRequest(a.URL(), out, b.URL()))
	fltOK(t, res, err, out, mirSize, mirSeed)
	b.WaitIdle(5 * time.Second)
	gets := 0
	for _, r := range b.Log() {
		if r.Method != "GET" {
			continue
		}
		gets++
		var first, last int64
		if _, err := fmt.Sscanf(r.Range, "bytes=%d-%d", &first, &last); err != nil {
			t.Fatalf("mirror GET with Range %q: %v", r.Range, err)
		}
		if n := last - first + 1; n > 512<<10 {
			t.Errorf("the unmeasured mirror was asked for %d bytes (%s), want at most 512 KiB", n, r.Range)
		}
	}
	if gets == 0 {
		t.Fatal("the mirror was never asked: the test shows nothing")
	}
}
