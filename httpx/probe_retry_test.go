package httpx

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// fastRetry retries quickly, so that a wait of a second can only come from
// the server's Retry-After.
var fastRetry = RetryConfig{Attempts: 5, Total: 10, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}

// probeWith runs ProbeWith with opts, logging into the returned buffer.
func probeWith(t *testing.T, client *http.Client, header http.Header, url string, opts ProbeOptions) (*pipeline.Resource, ProbeStats, error, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	opts.Log = zerolog.New(&log)
	res, st, err := ProbeWith(htCtx(t, 20*time.Second), client, header, url, opts)
	return res, st, err, &log
}

// retryLines returns the warnings ProbeWith logged for its retries.
func retryLines(t *testing.T, log *bytes.Buffer) []string {
	t.Helper()
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSpace(log.String()), "\n") {
		if line == "" {
			continue
		}
		if !strings.Contains(line, `"level":"warn"`) || !strings.Contains(line, `"message":"retrying the probe"`) {
			t.Fatalf("unexpected log line %s", line)
		}
		lines = append(lines, line)
	}
	return lines
}

// TestProbeRetriesTransientFailures: a server that fails HEAD and GET
// alike (#10.2) is asked again after the backoff or its Retry-After, and
// the probe succeeds on the next try.
func TestProbeRetriesTransientFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults origin.Faults
		// wait is the Retry-After the retry must honour (0: backoff).
		wait time.Duration
	}{
		{"503 Retry-After", origin.Faults{FailStatus: 503, FailCount: 2, RetryAfter: "1", FailAnyMethod: true}, time.Second},
		{"429 Retry-After", origin.Faults{FailStatus: 429, FailCount: 2, RetryAfter: "1", FailAnyMethod: true}, time.Second},
		{"500 to the first two requests", origin.Faults{FailStatus: 500, FailCount: 2, FailAnyMethod: true}, 0},
		{"reset on connect", origin.Faults{ResetRequests: 2}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, 5000, nil)
			srv.SetFaults(tc.faults)
			c, h := htClient(t, nil)
			start := time.Now()
			res, st, err, log := probeWith(t, c, h, srv.URL(), ProbeOptions{Retry: fastRetry})
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			if res.Size != 5000 || !res.AcceptRanges || res.ETag == "" || res.URL != srv.URL() {
				t.Fatalf("resource %+v", res)
			}
			srv.WaitIdle(5 * time.Second)
			if s := srv.Stats(); s.HEADs != 2 || s.GETs != 1 {
				t.Fatalf("server saw %d HEADs and %d GETs, want HEAD, GET, then HEAD", s.HEADs, s.GETs)
			}
			if st != (ProbeStats{Requests: 3, Retries: 1}) {
				t.Fatalf("stats %+v, want 3 requests and 1 retry", st)
			}
			lines := retryLines(t, log)
			if len(lines) != 1 || !strings.Contains(lines[0], `"attempt":1`) {
				t.Fatalf("log %q, want one warning for attempt 1", lines)
			}
			if tc.wait > 0 {
				// The logged wait is the server's, not a backoff of at
				// most 10ms, and the probe did wait it.
				if want := fmt.Sprintf(`"backoff_s":%g`, tc.wait.Seconds()); !strings.Contains(lines[0], want) {
					t.Fatalf("log %s, want %s", lines[0], want)
				}
				if elapsed < tc.wait {
					t.Fatalf("probe took %v, less than the Retry-After of %v", elapsed, tc.wait)
				}
			}
		})
	}
}

// TestProbeRetryLimits: the attempts and the probe's retry budget end a
// failure that does not stop, with the last error; a HEAD refused for good
// is not asked again.
func TestProbeRetryLimits(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 5000, nil)
	c, h := htClient(t, nil)
	u := srv.URL()

	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 100, FailAnyMethod: true})
	_, st, err, log := probeWith(t, c, h, u, ProbeOptions{Retry: RetryConfig{Attempts: 3, Total: 10, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}})
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 503 || err.Error() != "giving up after 3 attempts: http 503 Service Unavailable from "+u {
		t.Fatalf("err = %v", err)
	}
	if st != (ProbeStats{Requests: 6, Retries: 2}) || len(retryLines(t, log)) != 2 {
		t.Fatalf("stats %+v, log %s", st, log)
	}

	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 100, FailAnyMethod: true})
	_, st, err, _ = probeWith(t, c, h, u, ProbeOptions{Retry: RetryConfig{Attempts: 10, Total: 1, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}})
	if err == nil || err.Error() != "giving up: the probe's 1 retries are spent: http 503 Service Unavailable from "+u || st.Retries != 1 {
		t.Fatalf("err = %v, stats %+v", err, st)
	}

	// HEAD is refused for good: the retries ask the GET alone.
	srv.SetFaults(origin.Faults{NoHEAD: 405, FailStatus: 502, FailCount: 2})
	srv.ResetStats()
	res, st, err, _ := probeWith(t, c, h, u, ProbeOptions{Retry: fastRetry})
	if err != nil || res.Size != 5000 {
		t.Fatalf("probe: %v %+v", err, res)
	}
	srv.WaitIdle(5 * time.Second)
	if s := srv.Stats(); s.HEADs != 1 || s.GETs != 3 || st != (ProbeStats{Requests: 4, Retries: 2}) {
		t.Fatalf("server %+v, probe %+v: want one HEAD and three GETs", s, st)
	}

	// A bad policy is refused before any request.
	srv.ResetStats()
	_, _, err, _ = probeWith(t, c, h, u, ProbeOptions{Retry: RetryConfig{Attempts: 0, Backoff: time.Second, MaxBackoff: time.Second}})
	if err == nil || err.Error() != "probe retry policy: attempts must be at least 1, got 0" || srv.Stats().Requests != 0 {
		t.Fatalf("err = %v, %d requests", err, srv.Stats().Requests)
	}
}

// TestProbePermanentFailuresAreNotRetried: answers that will not change
// fail at once under a retry policy that would allow many tries.
func TestProbePermanentFailuresAreNotRetried(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 5000, nil)
	c, h := htClient(t, func(c *HTTPConfig) { c.MaxRedirects = 1 })
	for _, tc := range []struct {
		name     string
		faults   origin.Faults
		requests int64
		want     string
	}{
		{"401", origin.Faults{Status: 401}, 1, "http 401 Unauthorized from "},
		{"404", origin.Faults{Status: 404}, 1, "http 404 Not Found from "},
		{"410", origin.Faults{Status: 410}, 1, "http 410 Gone from "},
		{"403 from the GET", origin.Faults{Status: 403}, 2, "http 403 Forbidden from "},
		{"refused redirect", origin.Faults{Redirects: 3}, 2, "/r/2: stopped after 1 redirects (http.max_redirects)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetFaults(tc.faults)
			srv.ResetStats()
			_, st, err, log := probeWith(t, c, h, srv.URL(), ProbeOptions{Retry: fastRetry})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			srv.WaitIdle(5 * time.Second)
			if n := srv.Stats().Requests; n != tc.requests || st.Retries != 0 || log.Len() != 0 {
				t.Fatalf("%d requests, stats %+v, log %q: want %d requests and no retry", n, st, log, tc.requests)
			}
		})
	}
	_, st, err, _ := probeWith(t, c, h, "ftp://host/file", ProbeOptions{})
	if !errors.Is(err, ErrInvalidURL) || st != (ProbeStats{}) {
		t.Fatalf("invalid URL: %v %+v", err, st)
	}
}

// silentServer accepts connections and reads requests but never answers.
// It counts connections and requests by method; the counts are final once
// the test's cleanups ran, and read through the returned function.
func silentServer(t *testing.T) (addr string, counts func() (conns int, methods []string)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		conns   []net.Conn
		methods []string
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					mu.Lock()
					methods = append(methods, req.Method)
					mu.Unlock()
				}
			})
		}
	})
	stop := sync.OnceFunc(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	t.Cleanup(stop)
	return ln.Addr().String(), func() (int, []string) {
		stop()
		return len(conns), methods
	}
}

// TestProbeSilentServer: a server that accepts and never answers costs one
// time budget and one request, not a HEAD's wait and then a GET's (#10.10),
// and the error says what timed out.
func TestProbeSilentServer(t *testing.T) {
	const budget = 300 * time.Millisecond
	for _, tc := range []struct {
		name  string
		probe func(c *http.Client, h http.Header, url string) (ProbeStats, error)
		mod   func(*HTTPConfig)
	}{
		{"ProbeWith Timeout", func(c *http.Client, h http.Header, url string) (ProbeStats, error) {
			_, st, err := ProbeWith(htCtx(t, 20*time.Second), c, h, url, ProbeOptions{Timeout: budget})
			return st, err
		}, nil},
		{"Probe with the client's header timeout", func(c *http.Client, h http.Header, url string) (ProbeStats, error) {
			_, err := Probe(htCtx(t, 20*time.Second), c, h, url)
			return ProbeStats{Requests: 1}, err
		}, func(c *HTTPConfig) { c.HeaderTimeout = budget }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			htNoLeaks(t)
			addr, counts := silentServer(t)
			c, h := htClient(t, tc.mod)
			start := time.Now()
			st, err := tc.probe(c, h, "http://"+addr+"/file.bin")
			elapsed := time.Since(start)
			var nr *NoResponseError
			if !errors.As(err, &nr) || !errors.Is(err, context.DeadlineExceeded) || IsTransient(err) {
				t.Fatalf("err = %v, want a *NoResponseError", err)
			}
			if want := fmt.Sprintf("no response header from %s within 300ms (HEAD)", addr); err.Error() != want {
				t.Fatalf("message %q, want %q", err.Error(), want)
			}
			if st != (ProbeStats{Requests: 1}) {
				t.Fatalf("stats %+v", st)
			}
			// One timeout, not two, is shown by the one request the
			// server saw below; the upper bound is a backstop with room
			// for a loaded machine.
			if elapsed < budget || elapsed > 10*time.Second {
				t.Fatalf("took %v with a budget of %v", elapsed, budget)
			}
			conns, methods := counts()
			if conns != 1 || len(methods) != 1 || methods[0] != http.MethodHead {
				t.Fatalf("the server saw %d connections and requests %v, want one HEAD", conns, methods)
			}
		})
	}
}

// TestProbeHEADIgnored: a server that never answers HEAD but answers GET
// gets its GET when the budget leaves time after the client's header
// timeout, and fails with one request when it does not.
func TestProbeHEADIgnored(t *testing.T) {
	htNoLeaks(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			<-r.Context().Done() // silent until the client gives up
			return
		}
		w.Header().Set("Content-Range", "bytes 0-0/4000")
		w.Header().Set("Content-Length", "1")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write([]byte("x"))
	}))
	defer srv.Close()
	c, h := htClient(t, func(c *HTTPConfig) { c.HeaderTimeout = 200 * time.Millisecond })
	u := srv.URL + "/file.bin"
	host := strings.TrimPrefix(srv.URL, "http://")

	for _, budget := range []time.Duration{-1, 5 * time.Second} {
		res, st, err := ProbeWith(htCtx(t, 20*time.Second), c, h, u, ProbeOptions{Timeout: budget})
		if err != nil || res.Size != 4000 || !res.AcceptRanges || st != (ProbeStats{Requests: 2}) {
			t.Fatalf("budget %v: %v, %+v, %+v; want the GET's answer after the HEAD's timeout", budget, err, res, st)
		}
	}
	// The default budget is the client's header timeout: HEAD spends it.
	_, st, err := ProbeWith(htCtx(t, 20*time.Second), c, h, u, ProbeOptions{})
	if want := "no response header from " + host + " within 200ms (HEAD)"; err == nil || err.Error() != want || st.Requests != 1 {
		t.Fatalf("err = %v, stats %+v; want %q", err, st, want)
	}
}

// TestProbeBudgetSpansTries: the budget is one for all tries; a server that
// is slow to fail uses it up and the probe stops, whichever request it
// was waiting for.
func TestProbeBudgetSpansTries(t *testing.T) {
	htNoLeaks(t)
	const latency, budget = 400 * time.Millisecond, 1000 * time.Millisecond
	srv := htOrigin(t, 5000, func(o *origin.Options) { o.Latency = latency })
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 100, FailAnyMethod: true})
	c, h := htClient(t, nil)
	start := time.Now()
	_, st, err, _ := probeWith(t, c, h, srv.URL(), ProbeOptions{Retry: fastRetry, Timeout: budget})
	elapsed := time.Since(start)
	host := strings.TrimPrefix(srv.BaseURL(), "http://")
	// HEAD and GET take 800ms of the budget and fail; the retry's HEAD has
	// 200ms left. On a machine so loaded that the first two took the whole
	// second, the probe stops before the third.
	switch st.Requests {
	case 3:
		if want := "no response header from " + host + " within 1s (HEAD, request 3 of the probe)"; err == nil || err.Error() != want || st.Retries != 1 {
			t.Fatalf("err = %v, stats %+v; want %q", err, st, want)
		}
	case 2:
		if want := "giving up: the probe's 1s time budget is spent: http 503 Service Unavailable from " + srv.URL(); err == nil || err.Error() != want {
			t.Fatalf("err = %v; want %q", err, want)
		}
	default:
		t.Fatalf("%d requests (err %v), want 3", st.Requests, err)
	}
	if elapsed > 10*budget {
		t.Fatalf("took %v with a budget of %v", elapsed, budget)
	}
}
