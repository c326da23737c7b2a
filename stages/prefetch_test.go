package stages

import (
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// htPrefetchProbe probes url with a GET for the first prefetch bytes,
// whose answer stays open for the stages (Resource.Prefetched).
func htPrefetchProbe(t testing.TB, url string, prefetch int64) *pipeline.Resource {
	t.Helper()
	c, h := htClient(t, nil)
	res, _, err := httpx.ProbeWith(htCtx(t, 10*time.Second), c, h, url, httpx.ProbeOptions{Prefetch: prefetch})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The stream source reads the probe's answer first: the first 1 MiB come
// from it, and the rest from one more request, on the same connection
// (the answer was read to its end). Two GETs in all, exact bytes.
func TestHTTPSourcePrefetched(t *testing.T) {
	htNoLeaks(t)
	const size = 3<<20 + 5
	srv := htOrigin(t, size, nil)
	res := htPrefetchProbe(t, srv.URL(), 1<<20)
	out := newHTOutput()
	if err := htRun(t, htCtx(t, 10*time.Second), res, htSourceGraph(htSourceConfig(nil), out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	log := srv.Log()
	if len(log) != 2 || log[0].Range != "bytes=0-1048575" || log[1].Range != "bytes=1048576-" || log[1].IfRange == "" {
		t.Fatalf("requests %+v, want the probe's and one for the rest with If-Range", log)
	}
	if log[0].RemoteAddr != log[1].RemoteAddr {
		t.Errorf("the rest came over a new connection: %s, then %s", log[0].RemoteAddr, log[1].RemoteAddr)
	}
}

// A reader takes the probe's answer for the range at 0, which it holds
// exactly: no request of its own for it. Four ranges, three more GETs.
func TestHTTPReaderPrefetched(t *testing.T) {
	htNoLeaks(t)
	const size, piece = 4 << 20, 1 << 20
	srv := htOrigin(t, size, nil)
	res := htPrefetchProbe(t, srv.URL(), piece)
	out := newHTOutput()
	out.ordered = false
	cfg := httpReaderDef.Defaults
	cfg.StealMin = 0 // one request per range, whatever the machine's speed
	if err := htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(htPieces(size, piece), 2, cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	zero := 0
	for _, r := range srv.Log() {
		if r.Range == "bytes=0-1048575" {
			zero++
		}
	}
	if st := srv.Stats(); st.GETs != 4 || zero != 1 {
		t.Fatalf("%d GETs, %d for the range at 0; want 4 (the probe's among them) and one", st.GETs, zero)
	}
}

// An answer the probe kept for more than the stage needs (a piece of 1 MiB
// from a probe that asked 2) gives the stage its bytes and no more.
func TestHTTPReaderPrefetchedLonger(t *testing.T) {
	htNoLeaks(t)
	const size, piece = 3 << 20, 1 << 20
	srv := htOrigin(t, size, func(o *origin.Options) { o.Seed = 1 })
	res := htPrefetchProbe(t, srv.URL(), 2*piece)
	out := newHTOutput()
	out.ordered = false
	cfg := httpReaderDef.Defaults
	cfg.StealMin = 0
	if err := htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(htPieces(size, piece), 1, cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	if st := srv.Stats(); st.GETs != 3 {
		t.Fatalf("%d GETs, want the probe's and two more", st.GETs)
	}
}
