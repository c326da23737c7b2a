package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

func htReaderConfig(mod func(*HTTPReaderConfig)) HTTPReaderConfig {
	cfg := httpReaderDef.Defaults
	cfg.Backoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

func TestHTTPReaderSizes(t *testing.T) {
	const buffer, piece = 64 << 10, 1 << 20
	for _, size := range []int64{0, 1, 3*buffer + 7, 5*piece + 12345, 8 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, size, nil)
			res := htProbe(t, srv.URL())
			srv.ResetStats()
			out := newHTOutput()
			ranges := htPieces(size, piece)
			// No work stealing: it would add requests on a loaded machine
			// (a range that looks slow is split), and this test counts
			// one request per range. steal_test.go tests stealing.
			cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.Buffer, c.StealMin = buffer, 0 })
			if err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(ranges, 4, cfg, out)...); err != nil {
				t.Fatal(err)
			}
			htCheck(t, out, size)
			if !srv.WaitIdle(5 * time.Second) {
				t.Fatal("origin still busy")
			}
			log := srv.Log()
			if len(log) != len(ranges) {
				t.Fatalf("%d requests for %d ranges", len(log), len(ranges))
			}
			want := map[string]bool{}
			for _, r := range ranges {
				want[fmt.Sprintf("bytes=%d-%d", r.Start, r.End-1)] = true
			}
			for _, req := range log {
				if !want[req.Range] || req.IfRange != res.ETag || req.Status != http.StatusPartialContent || req.AcceptEncoding != "identity" {
					t.Fatalf("request %+v", req)
				}
			}
		})
	}
}

// TestHTTPReaderConnections: 4 workers use 4 connections. The server holds
// every GET until all 4 arrived, so each worker has a request in flight at
// once whatever the scheduler does; with the origin's plain rate limit, a
// worker that started late on a loaded machine found no piece left and the
// run used 3 (#10.12).
func TestHTTPReaderConnections(t *testing.T) {
	htNoLeaks(t)
	const size, workers = 8 << 20, 4
	var (
		mu      sync.Mutex
		conns   = map[string]bool{}
		arrived int
		all     = make(chan struct{})
	)
	srv := newHTFileServer(t, htContent(size), func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 0 {
			return false // the probe's HEAD
		}
		mu.Lock()
		conns[r.RemoteAddr] = true
		if arrived++; arrived == workers {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(10 * time.Second): // bounded: the count below fails
		case <-r.Context().Done():
		}
		return false
	})
	res := htProbe(t, srv.URL)
	out := newHTOutput()
	// One piece per worker and no work stealing: nothing but the 4 pieces
	// is requested.
	cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.StealMin = 0 })
	if err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(htPieces(size, size/workers), workers, cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	mu.Lock()
	defer mu.Unlock()
	if arrived != workers || len(conns) != workers {
		t.Fatalf("%d GETs on %d connections, want %d on %d", arrived, len(conns), workers, workers)
	}
}

// TestHTTPReaderWholeStream: Range{0,-1} is a plain GET to EOF, also with
// an unknown size.
func TestHTTPReaderWholeStream(t *testing.T) {
	htNoLeaks(t)
	const size = 2<<20 + 5
	srv := htOrigin(t, size, nil)
	srv.SetFaults(origin.Faults{NoLength: true})
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	out := newHTOutput()
	ranges := []pipeline.Range{{Start: 0, End: -1}}
	if err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(ranges, 1, htReaderConfig(nil), out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	if log := srv.Log(); len(log) != 1 || log[0].Range != "" {
		t.Fatalf("requests %+v", log)
	}
}

// TestHTTPReaderResumesShortBody: the retry of a cut range starts at the
// first missing byte, not at the range start, and nothing is sent twice.
func TestHTTPReaderResumesShortBody(t *testing.T) {
	htNoLeaks(t)
	const size, cut = 3 << 20, 100_003
	data := htContent(size)
	var cutDone atomic.Bool
	srv := newHTFileServer(t, data, func(n int, w http.ResponseWriter, r *http.Request) bool {
		// Only the first request for the middle range is cut.
		if r.Header.Get("Range") != "bytes=1048576-2097151" || cutDone.Swap(true) {
			return false
		}
		http.ServeContent(&htCutWriter{ResponseWriter: w, left: cut}, r, "f", htModTime, bytes.NewReader(data))
		return true
	})
	res := htProbe(t, srv.URL)
	out := newHTOutput()
	// One piece per request, so that the middle piece is a request.
	cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.MaxRequest = 1 })
	if err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(htPieces(size, 1<<20), 2, cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	retry := fmt.Sprintf("GET bytes=%d-2097151", 1<<20+cut)
	found := false
	for _, r := range srv.Requests() {
		found = found || r == retry
	}
	if !found {
		t.Fatalf("requests %q, want %q among them", srv.Requests(), retry)
	}
}

func TestHTTPReaderRetriesStatus(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 3<<20, nil)
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 2, RetryAfter: "0"})
	out := newHTOutput()
	// No work stealing, which could add a GET on a loaded machine: the
	// count below is of retries.
	cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.Backoff, c.MaxBackoff, c.StealMin = time.Hour, time.Hour, 0 })
	start := time.Now()
	if err := htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(htPieces(3<<20, 1<<20), 2, cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, 3<<20)
	if d := time.Since(start); d > 5*time.Second || srv.Stats().GETs != 5 {
		t.Fatalf("took %v with %d GETs", d, srv.Stats().GETs)
	}
}

func TestHTTPReaderRetryBudget(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 3<<20, nil)
	res := htProbe(t, srv.URL())
	srv.SetFaults(origin.Faults{FailStatus: 500, FailCount: 100})
	cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.Total = 2 })
	err := htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(htPieces(3<<20, 1<<20), 3, cfg, newHTOutput())...)
	var he *httpx.HTTPError
	if !errors.As(err, &he) || he.Status != 500 || !strings.Contains(err.Error(), "2 retries are spent") {
		t.Fatalf("err = %v", err)
	}
	// A fresh origin: requests the first run cancelled may still reach the
	// old one and would be counted.
	srv = htOrigin(t, 1<<20, nil)
	res = htProbe(t, srv.URL())
	srv.SetFaults(origin.Faults{FailStatus: 500, FailCount: 100})
	cfg = htReaderConfig(func(c *HTTPReaderConfig) { c.Attempts = 3 })
	err = htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(htPieces(1<<20, 1<<20), 1, cfg, newHTOutput())...)
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "after 3 attempts") || srv.Stats().GETs != 3 {
		t.Fatalf("err = %v after %d GETs", err, srv.Stats().GETs)
	}
}

func TestHTTPReaderPermanentErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults origin.Faults
		ranges []pipeline.Range
		check  func(error) bool
	}{
		{"404", origin.Faults{Status: 404}, htPieces(2<<20, 1<<20), func(err error) bool {
			var he *httpx.HTTPError
			return errors.As(err, &he) && he.Status == 404 && strings.Contains(err.Error(), "http 404 Not Found from http://")
		}},
		{"beyond the end", origin.Faults{}, []pipeline.Range{{Start: 0, End: -1}, {Start: 5 << 20, End: -1}}, func(err error) bool {
			return strings.Contains(err.Error(), "beyond the resource")
		}},
		{"wrong Content-Range", origin.Faults{WrongContentRange: true}, htPieces(2<<20, 1<<20), func(err error) bool {
			var re *httpx.RangeError
			return errors.As(err, &re) && strings.Contains(err.Error(), "Content-Range")
		}},
		{"200 to a range", origin.Faults{IgnoreRange: true}, htPieces(2<<20, 1<<20)[1:], func(err error) bool {
			var re *httpx.RangeError
			return errors.As(err, &re) && re.Status == 200 && re.Range.Start == 1<<20
		}},
		{"changed", origin.Faults{ChangeETagAfter: 1}, htPieces(2<<20, 1<<20), func(err error) bool {
			return errors.Is(err, httpx.ErrResourceChanged)
		}},
		{"gzip", origin.Faults{Gzip: true}, htPieces(2<<20, 2<<20), func(err error) bool {
			var ee *httpx.EncodingError
			return errors.As(err, &ee) && ee.Encoding == "gzip"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, 2<<20, nil)
			res := htProbe(t, srv.URL())
			srv.ResetStats()
			srv.SetFaults(tc.faults)
			// One piece per request: "changed" needs a second request.
			cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.MaxRequest = 1 })
			err := htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(tc.ranges, 1, cfg, newHTOutput())...)
			if err == nil || !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
			if gets := srv.Stats().GETs; gets > int64(len(tc.ranges)) {
				t.Fatalf("%d GETs: a permanent error was retried", gets)
			}
		})
	}
}

// TestHTTPReaderAcceptsWholeBody: a server that ignores Range is fine for
// the one range that is the whole file.
func TestHTTPReaderAcceptsWholeBody(t *testing.T) {
	htNoLeaks(t)
	const size = 1<<20 + 1
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	srv.SetFaults(origin.Faults{IgnoreRange: true})
	out := newHTOutput()
	if err := htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(htPieces(size, size), 1, htReaderConfig(nil), out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
}

// TestHTTPReaderStall: a response that stops sending is cancelled after the
// idle timeout and resumed from the first missing byte.
func TestHTTPReaderStall(t *testing.T) {
	htNoLeaks(t)
	const size, sent = 1 << 20, 200_000
	data := htContent(size)
	release := make(chan struct{})
	defer close(release)
	srv := newHTFileServer(t, data, func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n != 1 {
			return false
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", size-1, size))
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(data[:sent])
		w.(http.Flusher).Flush()
		select { // stall until the client gives up (or the test ends)
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})
	res := htProbe(t, srv.URL)
	out := newHTOutput()
	cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.IdleTimeout = 200 * time.Millisecond })
	start := time.Now()
	if err := htRun(t, htCtx(t, 10*time.Second), res, htReaderGraph(htPieces(size, size), 1, cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	if reqs := srv.Requests(); fmt.Sprint(reqs[1:]) != fmt.Sprint([]string{"GET bytes=0-1048575", fmt.Sprintf("GET bytes=%d-1048575", sent)}) {
		t.Fatalf("requests %q", reqs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestHTTPReaderCancel: cancelling mid-download returns context.Canceled
// long before the download could have ended, with every buffer back, every
// request of the origin ended and no goroutine left. The origin sends 256
// KiB/s per response, so the 64 MiB take at least 64 s on 4 readers: a Run
// that waited for its readers' bodies instead of closing them would be seen
// by the bytes delivered and served (half the file), not by how fast a
// loaded scheduler lets it return. The 30 s bound is only a backstop: Run
// took 1-5 s to return under -race on a busy 2-core VM, and twice in 20
// runs more than 10 s with two busy loops at a load average of 20.
func TestHTTPReaderCancel(t *testing.T) {
	htNoLeaks(t)
	const size = 64 << 20
	srv := htOrigin(t, size, func(o *origin.Options) { o.RateLimit = 256 << 10 })
	res := htProbe(t, srv.URL())
	out := newHTOutput()
	ctx, cancel := context.WithCancel(htCtx(t, 120*time.Second))
	done := make(chan error, 1)
	go func() {
		done <- htRun(t, ctx, res, htReaderGraph(htPieces(size, 4<<20), 4, htReaderConfig(nil), out)...)
	}()
	select {
	case <-out.received:
	case <-time.After(10 * time.Second):
		t.Fatal("no bytes arrived")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of the cancel")
	}
	out.mu.Lock()
	got := out.bytes
	out.mu.Unlock()
	if got >= size/2 {
		t.Fatalf("%d of %d bytes delivered: Run waited for the bodies instead of closing them", got, size)
	}
	if !srv.WaitIdle(30 * time.Second) {
		t.Fatal("the origin still serves a request 30s after Run returned")
	}
	if st := srv.Stats(); st.BytesServed >= size/2 {
		t.Fatalf("the origin sent %d of %d bytes: a cancelled request kept reading", st.BytesServed, size)
	}
}

// TestHTTPReaderSinkFails: a failing consumer stops the readers.
func TestHTTPReaderSinkFails(t *testing.T) {
	htNoLeaks(t)
	const size = 16 << 20
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	out := newHTOutput()
	out.failAt = 1 << 20
	err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(htPieces(size, 1<<20), 4, htReaderConfig(nil), out)...)
	if err == nil || !strings.Contains(err.Error(), "on purpose") {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPReaderConfig(t *testing.T) {
	for _, mod := range []func(*HTTPReaderConfig){
		func(c *HTTPReaderConfig) { c.Buffer = 0 },
		func(c *HTTPReaderConfig) { c.IdleTimeout = -time.Second },
		func(c *HTTPReaderConfig) { c.Attempts = 0 },
		func(c *HTTPReaderConfig) { c.Backoff = -1 },
	} {
		cfg := httpReaderDef.Defaults
		mod(&cfg)
		if _, err := httpReaderDef.New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	m := httpReaderDef.Memory(HTTPReaderConfig{BodyConfig: BodyConfig{Buffer: 1 << 20}})
	if m.ChunkSize != 1<<20 || m.PerReplica != 1<<20 {
		t.Fatalf("memory %+v", m)
	}
}

// BenchmarkHTTPReader: 4 readers over loopback fetch a 256 MiB resource in
// 8 MiB ranges.
func BenchmarkHTTPReader(b *testing.B) {
	const size = 256 << 20
	srv := htOrigin(b, size, nil)
	res := htProbe(b, srv.URL())
	g, err := pipeline.Build(htRegistry(b), []pipeline.Node{
		{ID: "split", Type: "ht.ranges", Config: &htRangesConfig{Ranges: htPieces(size, 8<<20)}},
		{ID: "fetch", Type: "http.reader", Inputs: []string{"split"}, Workers: 4},
		{ID: "sink", Type: "ht.discard", Inputs: []string{"fetch"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	bufs := pipeline.NewBuffers()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Run(context.Background(), pipeline.RunOptions{Resource: res, Buffers: bufs}); err != nil {
			b.Fatal(err)
		}
	}
	if bufs.InUse() != 0 {
		b.Fatal("buffers in use")
	}
}

// ExampleHTTPReaderConfig fetches a resource as four ranges with two
// readers.
func ExampleHTTPReaderConfig() {
	data := []byte(strings.Repeat("dlflow ", 1000))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	client, header, _ := httpx.NewClient(httpx.DefaultHTTPConfig())
	defer client.CloseIdleConnections()
	res, _ := httpx.Probe(context.Background(), client, header, srv.URL)

	out := newHTOutput()
	reg := pipeline.NewRegistry()
	_ = pipeline.Register(reg, httpReaderDef)
	_ = pipeline.Register(reg, htRangesDef)
	_ = pipeline.Register(reg, htSinkDef)
	g, _ := pipeline.Build(reg, []pipeline.Node{
		{ID: "split", Type: "ht.ranges", Config: &htRangesConfig{Ranges: htPieces(res.Size, 2000)}},
		{ID: "fetch", Type: "http.reader", Inputs: []string{"split"}, Workers: 2},
		{ID: "sink", Type: "ht.sink", Inputs: []string{"fetch"}, Config: &htSinkConfig{Out: out}},
	})
	err := g.Run(context.Background(), pipeline.RunOptions{Resource: res})
	fmt.Println(res.Size, bytes.Equal(out.data, data), err)
	// Output: 7000 true <nil>
}
