package dlflow_test

// Fault tests (see faults_range_test.go): failures that are retried, those
// that are not, redirects and timeouts.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/httpx"
)

// TestFaultTransient: connection resets and retryable statuses are retried
// with backoff, resuming from the last byte received; the result counts
// every retry.
func TestFaultTransient(t *testing.T) {
	type fault struct {
		f        origin.Faults
		failures int64 // GETs that fail, each retried once
	}
	cases := map[string]fault{
		"reset mid-body":     {origin.Faults{DropAfter: 300 << 10, DropRequests: 3}, 3},
		"reset after header": {origin.Faults{DropRequests: 2}, 2},
	}
	for _, status := range []int{408, 429, 500, 502, 503, 504} {
		cases[fmt.Sprint(status)] = fault{origin.Faults{FailStatus: status, FailCount: 3}, 3}
	}
	for name, tc := range cases {
		for _, topo := range fltTopologies {
			t.Run(name+"/"+topo, func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				srv.SetFaults(tc.f)
				out := fltOut(t)
				var sets []string
				if isRanged(topo) {
					// Work stealing may fetch a slow tail twice on purpose;
					// this test counts bytes to prove retries resume, so it
					// runs without it (steal_test.go covers stealing).
					sets = []string{"stages.fetch.config.steal_min=0"}
				}
				res, err := do(t, fltRequest(topo, srv.URL(), out, sets...))
				fltOK(t, res, err, out, fltSize, fltSeed)
				if res.Retries != tc.failures {
					t.Errorf("result counts %d retries, want %d", res.Retries, tc.failures)
				}
				// Every byte received before a reset is kept, so the
				// server sends the file about once (plus error pages).
				if n := srv.Stats().BytesServed; n > fltSize+64<<10 {
					t.Fatalf("%d bytes served for a %d byte file: a retry started over", n, fltSize)
				}
			})
		}
	}
}

// TestFaultStall: a body that stops sending is cancelled after the idle
// timeout and resumed; a stage's idle_timeout and the transport's
// http.idle_timeout both work.
func TestFaultStall(t *testing.T) {
	settings := map[string][]string{
		"stage":     {"stages.fetch.config.idle_timeout=300ms"},
		"transport": {"stages.fetch.config.idle_timeout=0s", "http.idle_timeout=300ms"},
	}
	for name, sets := range settings {
		for _, topo := range fltTopologies {
			t.Run(name+"/"+topo, func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				// The first GET (the probe's, whose answer the download
				// reads) trickles one byte a second: a stall.
				srv.SetFaults(origin.Faults{Trickle: 1, TrickleRequest: 1})
				out := fltOut(t)
				start := time.Now()
				res, err := do(t, fltRequest(topo, srv.URL(), out, sets...))
				fltOK(t, res, err, out, fltSize, fltSeed)
				if d := time.Since(start); d > 20*time.Second {
					t.Fatalf("took %v: the stall was not cut", d)
				}
				// The stage's timer cancels the request, a retry the
				// result counts. The transport's deadline fires before
				// the response header of a reused connection, and
				// net/http itself replays such a GET on a new one, unseen
				// by the stage and uncounted.
				// A ranged topology may instead replace the slow
				// connection (work stealing), which is no retry.
				if name == "stage" && !strings.HasPrefix(topo, "ranged") && res.Retries == 0 {
					t.Error("the stalled request was not retried")
				}
			})
		}
	}
}

// TestFaultRetryAfter: a 503 with Retry-After: 1 waits a second, not the
// configured 10ms backoff.
func TestFaultRetryAfter(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 1, RetryAfter: "1"})
	out := fltOut(t)
	start := time.Now()
	res, err := do(t, fltRequest("stream", srv.URL(), out))
	fltOK(t, res, err, out, fltSize, fltSeed)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("retried after %v, Retry-After asked for 1s", d)
	}
	if res.Retries != 1 {
		t.Errorf("result counts %d retries, want 1", res.Retries)
	}
}

// TestFaultRetryLimits: the attempts and total_retries budgets end a
// download that keeps failing, with the last error in the message.
func TestFaultRetryLimits(t *testing.T) {
	t.Run("attempts", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 1000})
		out := fltOut(t)
		res, err := do(t, fltRequest("stream", srv.URL(), out, "stages.fetch.config.attempts=3"))
		fltFailed(t, res, err, out, "giving up after 3 attempts", "503")
		var he *httpx.HTTPError
		if !errors.As(err, &he) || he.Status != 503 {
			t.Errorf("err = %v, want the last *httpx.HTTPError, 503", err)
		}
		if n := srv.Stats().GETs; n != 3 {
			t.Fatalf("%d GETs, want 3", n)
		}
		if res.Retries != 2 {
			t.Errorf("result counts %d retries, want 2", res.Retries)
		}
	})
	t.Run("total_retries", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{DropAfter: 100 << 10})
		out := fltOut(t)
		res, err := do(t, fltRequest("ranged", srv.URL(), out, "stages.fetch.config.total_retries=5"))
		fltFailed(t, res, err, out, "retries are spent")
		if res.Retries != 5 {
			t.Errorf("result counts %d retries, want the 5 of the budget", res.Retries)
		}
		if res.Partial != out+".tmp" || res.Bytes <= 0 || res.Bytes >= fltSize {
			t.Errorf("result %+v, want the partial data of a cut download", res)
		}
	})
}

// TestFaultPermanentStatus: 401, 403, 404, 410 and 416 fail at once, from
// the probe or from a reader, with the status in the error.
func TestFaultPermanentStatus(t *testing.T) {
	for _, status := range []int{401, 403, 404, 410, 416} {
		t.Run(fmt.Sprintf("probe/%d", status), func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{Status: status})
			out := fltOut(t)
			res, err := do(t, fltRequest("ranged", srv.URL(), out))
			fltFailed(t, res, err, out, fmt.Sprintf("http %d", status))
			var pe *dlflow.ProbeError
			var he *httpx.HTTPError
			if !errors.As(err, &pe) || !errors.As(err, &he) || he.Status != status || pe.URL != srv.URL() {
				t.Errorf("err = %v, want a *dlflow.ProbeError of %s wrapping an *httpx.HTTPError, %d", err, srv.URL(), status)
			}
			if n := srv.Stats().Requests; n > 2 {
				t.Fatalf("%d requests: a permanent status was retried", n)
			}
			if res.Partial != "" {
				t.Errorf("result partial %q after a failed probe", res.Partial)
			}
		})
		for _, topo := range []string{"stream", "ranged"} {
			t.Run(fmt.Sprintf("%s/%d", topo, status), func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				// The probe's GET passes; the first GET after it fails: a
				// later piece of ranged; for stream, whose one GET is the
				// probe's, the request for the rest of a body cut short.
				faults := origin.Faults{FailStatus: status, FailCount: 1, FailAfter: 1}
				retries := int64(0)
				if topo == "stream" {
					faults.DropAfter, faults.DropRequests, retries = 100<<10, 1, 1
				}
				srv.SetFaults(faults)
				out := fltOut(t)
				res, err := do(t, fltRequest(topo, srv.URL(), out))
				fltFailed(t, res, err, out, fmt.Sprintf("http %d", status))
				var he *httpx.HTTPError
				if !errors.As(err, &he) || he.Status != status {
					t.Errorf("err = %v, want an *httpx.HTTPError, %d", err, status)
				}
				if errors.As(err, new(*dlflow.ProbeError)) {
					t.Errorf("err = %v is a probe error; the probe passed", err)
				}
				if res.Retries != retries {
					t.Fatalf("%d retries, want %d: a permanent status is not retried", res.Retries, retries)
				}
			})
		}
	}
}

// TestFaultRedirects: up to 10 redirects are followed, 11 are not; only
// http and https; no credentials to another host; no https to http unless
// http.allow_insecure_redirect.
func TestFaultRedirects(t *testing.T) {
	t.Run("3 followed", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{Redirects: 3})
		out := fltOut(t)
		res, err := do(t, fltRequest("ranged", srv.URL(), out))
		fltOK(t, res, err, out, fltSize, fltSeed)
	})
	refused := func(t *testing.T, res *dlflow.Result, err error, out, needle string) {
		t.Helper()
		fltFailed(t, res, err, out, needle)
		var re *httpx.RedirectError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, needle) || !errors.As(err, new(*dlflow.ProbeError)) {
			t.Errorf("err = %v, want a *dlflow.ProbeError wrapping an *httpx.RedirectError", err)
		}
	}
	t.Run("11 refused", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{Redirects: 11})
		out := fltOut(t)
		res, err := do(t, fltRequest("ranged", srv.URL(), out))
		refused(t, res, err, out, "stopped after 10 redirects")
	})
	t.Run("other scheme refused", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{RedirectTo: "ftp://127.0.0.1/file.bin"})
		out := fltOut(t)
		res, err := do(t, fltRequest("stream", srv.URL(), out))
		refused(t, res, err, out, `unsupported scheme "ftp"`)
	})
	t.Run("no credentials to another host", func(t *testing.T) {
		t.Parallel()
		target := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		first := startOrigin(t, origin.Options{Size: 1, Seed: 1})
		first.SetFaults(origin.Faults{RedirectTo: target.URL()})
		out := fltOut(t)
		req := fltRequest("ranged", first.URL(), out)
		req.Header = http.Header{"Authorization": {"Bearer tok"}}
		res, err := do(t, req)
		fltOK(t, res, err, out, fltSize, fltSeed)
		if log := first.Log(); len(log) == 0 || log[0].Authorization != "Bearer tok" {
			t.Fatalf("the first host did not get the credentials: %+v", log)
		}
		if len(rangedGETs(target.Log())) < 2 {
			t.Fatalf("the target got %d range requests, want the readers' requests too", len(rangedGETs(target.Log())))
		}
		for _, r := range target.Log() {
			if r.Authorization != "" {
				t.Fatalf("credentials sent to another host: %+v", r)
			}
		}
	})
	t.Run("https to http", func(t *testing.T) {
		t.Parallel()
		target := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		tlsSrv := httptest.NewTLSServer(http.RedirectHandler(target.URL(), http.StatusFound))
		t.Cleanup(tlsSrv.Close)
		out := fltOut(t)
		res, err := do(t, fltRequest("stream", tlsSrv.URL+"/file.bin", out, "http.insecure=true"))
		refused(t, res, err, out, "downgrades https to http")
		if n := target.Stats().Requests; n != 0 {
			t.Fatalf("%d requests reached the http target", n)
		}
		res, err = do(t, fltRequest("stream", tlsSrv.URL+"/file.bin", out, "http.insecure=true", "http.allow_insecure_redirect=true"))
		fltOK(t, res, err, out, fltSize, fltSeed)
	})
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestFaultHeaderTimeout: a server slower to answer than
// http.header_timeout fails the probe with a timeout, long before it would
// answer (a minute; the 20 s bound leaves a loaded machine its margin).
func TestFaultHeaderTimeout(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed, Latency: time.Minute})
	out := fltOut(t)
	start := time.Now()
	res, err := do(t, fltRequest("stream", srv.URL(), out, "http.header_timeout=200ms"))
	fltFailed(t, res, err, out, "no response header from", "within 200ms (GET)")
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %v with a 200ms header timeout", d)
	}
	if !isTimeout(err) || !errors.As(err, new(*dlflow.ProbeError)) {
		t.Errorf("err = %v, want a *dlflow.ProbeError wrapping a timeout", err)
	}
}

// TestFaultTLSTimeout: a server that accepts the connection but never
// completes the TLS handshake fails after http.tls_timeout.
func TestFaultTLSTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c) // held open, silent
		}
	}()
	t.Cleanup(func() { ln.Close(); <-accepted })
	out := fltOut(t)
	start := time.Now()
	res, err := do(t, fltRequest("stream", "https://"+ln.Addr().String()+"/file.bin", out, "http.tls_timeout=200ms"))
	fltFailed(t, res, err, out, "TLS handshake timeout")
	// The server never completes the handshake: any return with this
	// error is the timeout; the bound is a backstop with room for load.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %v with a 200ms TLS timeout", d)
	}
	if !isTimeout(err) || !errors.As(err, new(*dlflow.ProbeError)) {
		t.Errorf("err = %v, want a *dlflow.ProbeError wrapping a timeout", err)
	}
}
