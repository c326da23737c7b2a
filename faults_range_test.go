package dlflow_test

// Fault tests: every misbehaviour of a server that docs/FAULTS.md lists
// ends either with the exact bytes at the output path (sha256 checked) or
// with a clean failure: an error naming the cause, no output file, and the
// partial data kept where a rerun can use it. Each downloads from a real
// server on 127.0.0.1, across the example topologies where the fault
// applies. This file: what a server gets wrong about ranges, lengths,
// encodings and versions.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/httpx"
)

// TestFaultIgnoreRange: the server advertises ranges but answers every
// Range request with 200 and the whole body. Every topology gets the exact
// bytes: the range at 0 streams the whole body and the others are dropped.
func TestFaultIgnoreRange(t *testing.T) {
	cases := map[string][]string{}
	for _, topo := range fltTopologies {
		cases[topo] = nil
	}
	// A reorder window smaller than the file: the ranges dropped by the
	// other readers hold no credit, so the stream from 0 is never starved.
	cases["ranged-ordered/window=2MiB"] = []string{"stages.order.config.window=2MiB"}
	for name, sets := range cases {
		topo, _, _ := strings.Cut(name, "/")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{IgnoreRange: true})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out, sets...))
			fltOK(t, res, err, out, fltSize, fltSeed)
			srv.WaitIdle(5 * time.Second)
			full := 0
			for _, r := range srv.Log() {
				if r.Method == http.MethodGet && r.Bytes == fltSize {
					full++
				}
			}
			if full != 1 {
				t.Fatalf("the whole body was sent %d times, want 1", full)
			}
		})
	}
}

// TestFaultIgnoreRangeCannotResume: a stream cut by a server that ignores
// ranges cannot be resumed. The probe's GET asked for a range and got the
// whole body with 200, so the download knows it: it streams that answer,
// asks no range of a server that ignores them, fails at the cut, and keeps
// the prefix it received. (A 200 to a resume request past 0 is refused by
// the readers: TestHTTPReaderFaultWholeBodyCut, TestHTTPSourceFaults.)
func TestFaultIgnoreRangeCannotResume(t *testing.T) {
	for _, topo := range []string{"stream", "ranged"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			// Every GET is cut after 1 MiB, so the range at 0 that streams
			// the whole body is cut too.
			srv.SetFaults(origin.Faults{IgnoreRange: true, DropAfter: 1 << 20})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltFailed(t, res, err, out, "cannot resume at byte 1048576")
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("err = %v, want it to wrap io.ErrUnexpectedEOF", err)
			}
			if n := srv.Stats().GETs; n != 1 {
				t.Errorf("%d GETs, want the probe's one", n)
			}
			if topo == "stream" {
				fltPartialKept(t, res, out, fltSize, fltSeed, 0)
			}
		})
	}
}

// TestFaultProbeNoAcceptRanges: a server that answers the probe's ranged
// GET with 200 and no Accept-Ranges (nginx with max_ranges 0) makes the
// ranged topologies one stream: that answer, and no other request.
func TestFaultProbeNoAcceptRanges(t *testing.T) {
	for _, topo := range fltRangedTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			// NoLength answers without Accept-Ranges (and without a length).
			srv.SetFaults(origin.Faults{NoLength: true})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltOK(t, res, err, out, fltSize, fltSeed)
			if log := srv.Log(); len(log) != 1 || log[0].Method != http.MethodGet || log[0].Status != http.StatusOK {
				t.Fatalf("requests %+v, want the probe's GET alone, answered 200", log)
			}
		})
	}
}

// TestFaultWrongContentRange: a 206 whose Content-Range is not the range
// asked for is never written.
func TestFaultWrongContentRange(t *testing.T) {
	for _, topo := range fltRangedTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{WrongContentRange: true})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltFailed(t, res, err, out, "Content-Range", "not honoured")
			var re *httpx.RangeError
			if !errors.As(err, &re) || re.Status != http.StatusPartialContent || re.ContentRange == "" {
				t.Errorf("err = %v, want a *httpx.RangeError for a 206", err)
			}
		})
	}
}

// TestFaultShortBody: a body shorter than its Content-Length is resumed
// from the first missing byte.
func TestFaultShortBody(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{ShortBody: 1000, ShortBodyRequests: 3})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltOK(t, res, err, out, fltSize, fltSeed)
			if res.Retries == 0 {
				t.Errorf("result counts no retry after %d short bodies", 3)
			}
			if !isRanged(topo) {
				// The one stream was resumed with a Range request from
				// where it was cut.
				want := fmt.Sprintf("bytes=%d-", fltSize-1000)
				resumed := false
				for _, r := range srv.Log() {
					resumed = resumed || r.Range == want
				}
				if !resumed {
					t.Fatalf("no request for %s: %+v", want, srv.Log())
				}
			}
		})
	}
}

// TestFaultNoHEAD: HEAD refused (403 as from a presigned URL, 405, 501)
// does not matter: the probe is a GET, and no HEAD is sent. (Where HEAD is
// asked, to resume, its refusal makes the probe ask GET bytes=0-0:
// TestProbeFallsBackToRangedGET in httpx.)
func TestFaultNoHEAD(t *testing.T) {
	for _, status := range []int{403, 405, 501} {
		for _, topo := range []string{"stream", "ranged"} {
			t.Run(fmt.Sprintf("%d/%s", status, topo), func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				srv.SetFaults(origin.Faults{NoHEAD: status})
				out := fltOut(t)
				res, err := do(t, fltRequest(topo, srv.URL(), out))
				fltOK(t, res, err, out, fltSize, fltSeed)
				if n := srv.Stats().HEADs; n != 0 {
					t.Fatalf("%d HEADs, want none", n)
				}
			})
		}
	}
}

// TestFaultNoLength: no Content-Length (chunked): streamed to EOF in every
// topology.
func TestFaultNoLength(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{NoLength: true})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltOK(t, res, err, out, fltSize, fltSeed)
		})
	}
}

// TestFaultNoLengthCut: a chunked body cut before its last chunk is an
// error, never a short file; it cannot be resumed without ranges.
func TestFaultNoLengthCut(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{NoLength: true, DropAfter: 1 << 20})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltFailed(t, res, err, out, "cannot resume", "unexpected EOF")
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("err = %v, want it to wrap io.ErrUnexpectedEOF", err)
			}
			if topo == "stream" {
				fltPartialKept(t, res, out, fltSize, fltSeed, 0)
			}
		})
	}
}

// TestFaultGzip: a gzip-encoded answer despite Accept-Encoding: identity is
// an error in every topology, never decompressed nor written as the file.
func TestFaultGzip(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{Gzip: true})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltFailed(t, res, err, out, `Content-Encoding "gzip"`)
			var ee *httpx.EncodingError
			if !errors.As(err, &ee) || ee.Encoding != "gzip" {
				t.Errorf("err = %v, want a *httpx.EncodingError for gzip", err)
			}
			for _, r := range srv.Log() {
				if r.AcceptEncoding != "identity" {
					t.Fatalf("request without Accept-Encoding: identity: %+v", r)
				}
			}
		})
	}
}

// TestFaultChangedRestarts: the file changes on the server during the
// download. If-Range catches it; the download restarts from zero once,
// with a warning, Hooks.Started is called again for the new run, and the
// result is entirely the new version.
func TestFaultChangedRestarts(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			f := origin.Faults{ChangeETagAfter: 2}
			if !isRanged(topo) {
				// One stream: cut it so that its resume meets the change.
				f = origin.Faults{ChangeETagAfter: 1, DropAfter: 1 << 20, DropRequests: 1}
			}
			srv.SetFaults(f)
			out := fltOut(t)
			req := fltRequest(topo, srv.URL(), out)
			var started []dlflow.Info // appended from the download's goroutine, read after Wait
			req.Hooks.Started = func(d *dlflow.Download) { started = append(started, d.Info()) }
			logOpt, log := withLog(zerolog.WarnLevel)
			res, err := do(t, req, logOpt)
			fltOK(t, res, err, out, fltSize, fltSeed+1)
			if !contains(log.String(), `"level":"warn"`, "restarting the download from zero", "resource changed on the server") {
				t.Errorf("no restart warning:\n%s", log)
			}
			if !isRanged(topo) && res.Retries != 1 {
				// The retry after the cut, in the first run: the result
				// counts the retries of every run.
				t.Errorf("result counts %d retries, want 1", res.Retries)
			}
			if len(started) != 2 {
				t.Fatalf("Hooks.Started called %d times, want 2 (the run and its restart)", len(started))
			}
			for i, info := range started {
				if info.Path != out || info.Size != fltSize || info.Topology != "(built-in) "+topo+".yaml" {
					t.Errorf("Started call %d: info %+v", i+1, info)
				}
			}
			// Every range request carries If-Range but each run's probe,
			// the GET for the first bytes, which learns the validators.
			ifRange, probes := 0, 0
			for _, r := range srv.Log() {
				switch {
				case r.Range == "":
				case r.IfRange == "" && strings.HasPrefix(r.Range, "bytes=0-"):
					probes++
				case r.IfRange == "":
					t.Fatalf("range request without If-Range: %+v", r)
				default:
					ifRange++
				}
			}
			if ifRange == 0 || probes != 2 {
				t.Fatalf("%d range requests with If-Range, %d probes; want some, and one probe per run", ifRange, probes)
			}
		})
	}
}

// TestFaultChangedTwiceFails: a file that changes again after the restart
// fails cleanly rather than looping or mixing versions.
func TestFaultChangedTwiceFails(t *testing.T) {
	for _, topo := range fltRangedTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{ChangeETagAfter: 2, ChangeAgain: true})
			out := fltOut(t)
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltFailed(t, res, err, out, "resource changed on the server")
			if !errors.Is(err, httpx.ErrResourceChanged) {
				t.Errorf("err = %v, want httpx.ErrResourceChanged", err)
			}
		})
	}
}
