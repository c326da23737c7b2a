package dlflow_test

// The example topologies download the exact bytes, use the connections
// asked for, fall back to one stream where ranges cannot work, and leave
// no goroutine behind, however the download ends.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/httpx"
)

// builtin is how a result names a built-in topology.
func builtin(topology string) string { return "(built-in) " + topology + ".yaml" }

func TestGetStreamsTheExactBytes(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: 3<<20 + 5, Seed: 7})
	out := fltOut(t)
	res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: "stream"}})
	fltOK(t, res, err, out, 3<<20+5, 7)
	if res.Topology != builtin("stream") || res.Connections != 1 || res.URL != srv.URL() {
		t.Errorf("result %+v", res)
	}
}

// TestGetExampleTopologies runs every shipped topology over the sizes that
// hit its edge cases: empty, one byte, a size that is a multiple of neither
// the 4 MiB piece nor the 256 KiB buffer, and one large enough for many
// pieces in flight.
func TestGetExampleTopologies(t *testing.T) {
	sizes := []int64{0, 1, 9<<20 + 4097, 64 << 20}
	for _, topo := range fltTopologies {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", topo, size), func(t *testing.T) {
				t.Parallel()
				seed := uint64(size) + 11
				srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
				out := fltOut(t)
				res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: topo}})
				fltOK(t, res, err, out, size, seed)
				if res.Topology != builtin(topo) || res.Retries != 0 || res.Resumed != 0 {
					t.Errorf("result %+v", res)
				}
				srv.WaitIdle(5 * time.Second)
				if isRanged(topo) && size > 4<<20 && len(rangedGETs(srv.Log())) < 2 {
					t.Errorf("%d-byte file fetched with %d range requests, want one per 4 MiB piece",
						size, len(rangedGETs(srv.Log())))
				}
			})
		}
	}
}

// TestGetConnections checks that Request.Connections reaches the range
// readers: the file arrives by Range requests from at most that many
// connections, and the result counts them.
func TestGetConnections(t *testing.T) {
	const size, seed = 40<<20 + 17, 5
	for _, topo := range fltRangedTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: topo}, Connections: 3})
			fltOK(t, res, err, out, size, seed)
			if res.Connections != 3 {
				t.Errorf("result counts %d connections, want 3", res.Connections)
			}
			srv.WaitIdle(5 * time.Second)
			// Each reader asks for its share of whole pieces (ranged), or
			// for one piece at a time under the reorder window
			// (ranged-ordered): at least one request per connection.
			ranged := rangedGETs(srv.Log())
			if len(ranged) < 3 {
				t.Fatalf("%d range requests, want at least 3 (one per connection)", len(ranged))
			}
			// Each reader keeps its own connection, so three readers use at
			// most three, and the probe's, whose answer the first reader
			// reads (a retry could add one; none is expected here).
			// On a loaded machine work stealing may drop a slow answer,
			// which closes its connection: each such answer allows one
			// more connection, never more requests at once.
			cut := cutShort(ranged, size)
			conns := map[string]bool{}
			for _, r := range ranged {
				conns[r.RemoteAddr] = true
			}
			if len(conns) > 4+cut {
				t.Errorf("range requests came from %d connections (%d answers cut short), want at most %d: %v", len(conns), cut, 4+cut, conns)
			}
			// At most three requests at once. The probe's connection is
			// reused by a reader when it is back in the idle pool in time;
			// on a loaded machine the readers may have dialled before, and
			// it idles beside them until the end: one more, never two.
			if st := srv.Stats(); st.MaxOpenConns > int64(4+cut) || st.MaxInFlight > 3 {
				t.Errorf("%d connections open and %d requests in flight at once (%d answers cut short), want at most %d and 3",
					st.MaxOpenConns, st.MaxInFlight, cut, 4+cut)
			}
		})
	}
}

// TestGetWithoutContentLength: a chunked answer of unknown length. The
// sequential topologies just stream it; the ranged ones cannot split an
// unknown size and must fall back to one plain GET.
func TestGetWithoutContentLength(t *testing.T) {
	const size, seed = 5<<20 + 333, 9
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
			srv.SetFaults(origin.Faults{NoLength: true})
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: topo}})
			fltOK(t, res, err, out, size, seed)
			srv.WaitIdle(5 * time.Second)
			// One GET: the probe's, whose 200 answer (no length, no
			// ranges) is the stream.
			if log := srv.Log(); len(log) != 1 || log[0].Method != "GET" || log[0].Status != 200 {
				t.Errorf("requests %+v, want the probe's GET alone, answered 200", log)
			}
		})
	}
}

// TestGetDefaultTopology: without a topology the library picks stream for
// a small file and ranged for a large one that the server serves by
// ranges, and the result names it.
func TestGetDefaultTopology(t *testing.T) {
	cases := []struct {
		name   string
		size   int64
		ranged bool
	}{
		{"small-streams", 1<<20 + 3, false},
		{"large-ranged", 20<<20 + 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: c.size, Seed: 3})
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out})
			fltOK(t, res, err, out, c.size, 3)
			want := map[bool]string{false: builtin("stream"), true: builtin("ranged")}[c.ranged]
			if res.Topology != want {
				t.Errorf("result topology %q, want %q", res.Topology, want)
			}
			srv.WaitIdle(5 * time.Second)
			// The probe asks for the ranged topology's first piece: a small
			// file is that one answer, a large one that and more ranges.
			log := srv.Log()
			if n := len(log); c.ranged && n < 3 {
				t.Errorf("%d requests for a %d-byte file, want the ranged topology's", n, c.size)
			} else if !c.ranged && (n != 1 || log[0].Method != "GET" || log[0].Status != 206) {
				t.Errorf("requests %+v for a %d-byte file, want the probe's GET alone", log, c.size)
			}
			if st := srv.Stats(); st.HEADs != 0 {
				t.Errorf("%d HEADs, want none", st.HEADs)
			}
		})
	}
}

// errStop is the cause a caller cancels a download's context with.
var errStop = errors.New("stopped by the caller")

// TestGetCancelledLeaksNothing cancels a throttled download mid-body, by
// Download.Cancel or by its context with a cause: Wait returns promptly
// with context.Canceled or the cause, the partial PATH.tmp is kept (and
// named by the result) for a resume, the output is never created, and no
// goroutine is left behind (idle keep-alive connections included).
func TestGetCancelledLeaksNothing(t *testing.T) {
	for _, topo := range fltTopologies {
		for _, how := range []string{"Cancel", "context"} {
			t.Run(topo+"/"+how, func(t *testing.T) {
				noLeaks(t)
				before := goleak.IgnoreCurrent()
				srv := startOrigin(t, origin.Options{Size: 32 << 20, Seed: 1, RateLimit: 2 << 20})
				out := fltOut(t)
				client := dlflow.NewClient()
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				d := client.Start(ctx, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: topo}})
				// Cancel once bytes are flowing (a PATH.tmp that nothing
				// was written into is not kept), within a bound.
				for deadline := time.Now().Add(10 * time.Second); d.Progress().Done < 1<<20 && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				if how == "Cancel" {
					d.Cancel()
				} else {
					cancel(errStop)
				}
				start := time.Now()
				res, err := d.Wait()
				if dt := time.Since(start); dt > 10*time.Second {
					t.Errorf("cancelled download took %v", dt)
				}
				want := map[string]error{"Cancel": context.Canceled, "context": errStop}[how]
				fltFailed(t, res, err, out)
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
				if res.Bytes >= 32<<20 {
					t.Errorf("result %+v: a cancelled download complete", res)
				}
				if topo == "ranged" {
					// Positional: the bytes are where they belong, with
					// holes between; the state says which are there.
					if _, serr := os.Stat(out + ".tmp"); (serr == nil) != (res.Partial == out+".tmp") {
						t.Errorf("result partial %q; PATH.tmp: %v", res.Partial, serr)
					}
				} else {
					fltPartialKept(t, res, out, 32<<20, 1, 0)
				}
				client.CloseIdleConnections()
				verifyNoClientLeaks(t, before)
			})
		}
	}
}

// TestGetNotFoundLeaksNothing: a 404 fails the download with an
// *httpx.HTTPError, no output, and no goroutine left behind. "probe" 404s
// every request; "stage" lets the probe's GET through but cuts its body,
// and 404s the GETs after it, so the error comes out of a running graph.
func TestGetNotFoundLeaksNothing(t *testing.T) {
	faults := map[string]origin.Faults{
		"probe": {Status: 404},
		"stage": {FailStatus: 404, FailCount: 1000, FailAfter: 1, DropAfter: 100 << 10, DropRequests: 1},
	}
	for _, topo := range fltTopologies {
		for _, where := range []string{"probe", "stage"} {
			t.Run(topo+"/"+where, func(t *testing.T) {
				noLeaks(t)
				before := goleak.IgnoreCurrent()
				srv := startOrigin(t, origin.Options{Size: 9 << 20, Seed: 1})
				srv.SetFaults(faults[where])
				out := fltOut(t)
				client := dlflow.NewClient()
				res, err := client.Do(context.Background(), &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: topo}})
				fltFailed(t, res, err, out, "404")
				var he *httpx.HTTPError
				if !errors.As(err, &he) || he.Status != http.StatusNotFound {
					t.Errorf("err = %v, want an *httpx.HTTPError, 404", err)
				}
				if isProbe := errors.As(err, new(*dlflow.ProbeError)); isProbe != (where == "probe") {
					t.Errorf("err = %v: a *dlflow.ProbeError is %v, want %v", err, isProbe, where == "probe")
				}
				client.CloseIdleConnections()
				verifyNoClientLeaks(t, before)
			})
		}
	}
}

// TestGetSuccessLeaksNothing: a completed ranged download (many
// connections, all idle at the end) leaves no goroutine behind either.
func TestGetSuccessLeaksNothing(t *testing.T) {
	noLeaks(t)
	before := goleak.IgnoreCurrent()
	srv := startOrigin(t, origin.Options{Size: 20<<20 + 1, Seed: 2})
	out := filepath.Join(t.TempDir(), "out.bin")
	client := dlflow.NewClient()
	res, err := client.Do(context.Background(), &dlflow.Request{URL: srv.URL(), Path: out, Connections: 4})
	fltOK(t, res, err, out, 20<<20+1, 2)
	if res.Topology != builtin("ranged") || res.Connections != 4 {
		t.Errorf("result %+v, want the ranged topology on 4 connections", res)
	}
	client.CloseIdleConnections()
	verifyNoClientLeaks(t, before)
}

// TestGetServerIgnoringRanges: the server advertises Accept-Ranges but
// answers every Range request with 200 and the whole body. The ranged
// topologies must still produce the exact bytes, from one full-body
// stream, not by taking the whole file once per piece.
func TestGetServerIgnoringRanges(t *testing.T) {
	const size, seed = 20<<20 + 9, 4
	for _, topo := range []string{"ranged", "ranged-ordered", ""} {
		name := topo
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
			srv.SetFaults(origin.Faults{IgnoreRange: true})
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: topo}})
			fltOK(t, res, err, out, size, seed)
			srv.WaitIdle(5 * time.Second)
			var full int
			var served int64
			for _, r := range srv.Log() {
				if r.Method == "GET" {
					served += r.Bytes
					if r.Bytes == size {
						full++
					}
				}
			}
			if full != 1 {
				t.Errorf("the whole file was sent %d times, want one stream: %+v", full, srv.Log())
			}
			// Abandoned 200s push bytes into socket buffers before the
			// server sees them closed: how many depends on the machine's
			// load, so it is logged, not bounded. The client read the file
			// once (full == 1 above and the sha256).
			t.Logf("origin served %d bytes for a %d-byte file", served, size)
		})
	}
}
