package origin

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testSize = 1<<20 + 4321
	testSeed = 99
)

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newClient returns a client that neither adds Accept-Encoding nor
// decompresses, and that follows no redirects unless follow is set.
func newClient(t *testing.T, follow bool) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

type result struct {
	resp *http.Response
	body []byte
	err  error // error reading the body
}

func do(t *testing.T, c *http.Client, method, url string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{resp: resp, body: body, err: err}
}

func content(off, n int64, seed uint64) []byte {
	p := make([]byte, n)
	Fill(p, off, seed)
	return p
}

func wantStatus(t *testing.T, r result, code int) {
	t.Helper()
	if r.resp.StatusCode != code {
		t.Fatalf("status = %d, want %d", r.resp.StatusCode, code)
	}
}

func wantHeader(t *testing.T, r result, key, val string) {
	t.Helper()
	if got := r.resp.Header.Get(key); got != val {
		t.Fatalf("%s = %q, want %q", key, got, val)
	}
}

func wantFull(t *testing.T, r result, size int64, seed uint64) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("body read error: %v", r.err)
	}
	if int64(len(r.body)) != size || sha256.Sum256(r.body) != SHA256(size, seed) {
		t.Fatalf("body: len %d (want %d), sha256 mismatch", len(r.body), size)
	}
}

func TestFullGET(t *testing.T) {
	s := startServer(t, Options{Size: testSize, Seed: testSeed})
	c := newClient(t, false)
	r := do(t, c, http.MethodGet, s.URL())
	wantStatus(t, r, 200)
	wantFull(t, r, testSize, testSeed)
	wantHeader(t, r, "Content-Length", strconv.Itoa(testSize))
	wantHeader(t, r, "Accept-Ranges", "bytes")
	wantHeader(t, r, "ETag", fmt.Sprintf(`"%x-%x"`, testSize, testSeed))
	wantHeader(t, r, "Last-Modified", DefaultLastModified.Format(http.TimeFormat))
	wantHeader(t, r, "Content-Range", "")
	if s.URL() != s.BaseURL()+DefaultPath {
		t.Fatalf("URL = %q", s.URL())
	}

	empty := startServer(t, Options{Size: 0, Path: "/empty", ETag: `"e"`})
	r = do(t, c, http.MethodGet, empty.URL())
	wantStatus(t, r, 200)
	wantFull(t, r, 0, 0)
	wantHeader(t, r, "ETag", `"e"`)
}

func TestRangeGET(t *testing.T) {
	s := startServer(t, Options{Size: testSize, Seed: testSeed})
	c := newClient(t, false)
	cases := []struct {
		rng        string
		start, end int64
	}{
		{"bytes=0-99", 0, 99},
		{"bytes=5-5", 5, 5},
		{"bytes=1000-", 1000, testSize - 1},
		{"bytes=-50", testSize - 50, testSize - 1},
		{"bytes=-99999999", 0, testSize - 1},
		{"bytes=777-99999999", 777, testSize - 1},
		{"bytes=262141-524300", 262141, 524300},
		{"Bytes= 3-10", 3, 10},
	}
	for _, tc := range cases {
		r := do(t, c, http.MethodGet, s.URL(), "Range", tc.rng)
		wantStatus(t, r, 206)
		wantHeader(t, r, "Content-Range", fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, testSize))
		wantHeader(t, r, "Content-Length", strconv.FormatInt(tc.end-tc.start+1, 10))
		wantHeader(t, r, "Accept-Ranges", "bytes")
		if r.err != nil || !bytes.Equal(r.body, content(tc.start, tc.end-tc.start+1, testSeed)) {
			t.Fatalf("%s: body mismatch (err %v, len %d)", tc.rng, r.err, len(r.body))
		}
	}
	// Multi-range, malformed and non-bytes ranges: full 200.
	for _, rng := range []string{"bytes=0-1,5-6", "bytes=9-3", "bytes=x-", "items=0-1", "bytes=+1-2"} {
		r := do(t, c, http.MethodGet, s.URL(), "Range", rng)
		wantStatus(t, r, 200)
		wantFull(t, r, testSize, testSeed)
	}
}

func TestUnsatisfiableRange(t *testing.T) {
	s := startServer(t, Options{Size: testSize, Seed: testSeed})
	c := newClient(t, false)
	for _, rng := range []string{fmt.Sprintf("bytes=%d-", testSize), "bytes=-0", "bytes=99999999-99999999"} {
		r := do(t, c, http.MethodGet, s.URL(), "Range", rng)
		wantStatus(t, r, 416)
		wantHeader(t, r, "Content-Range", fmt.Sprintf("bytes */%d", testSize))
		if len(r.body) != 0 {
			t.Fatalf("416 body has %d bytes", len(r.body))
		}
	}
}

func TestIfRange(t *testing.T) {
	lm := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	s := startServer(t, Options{Size: testSize, Seed: testSeed, ETag: `"v1"`, LastModified: lm})
	c := newClient(t, false)
	cases := []struct {
		ifRange string
		status  int
	}{
		{`"v1"`, 206},
		{`"v0"`, 200},
		{`W/"v1"`, 200},
		{lm.Format(http.TimeFormat), 206},
		{lm.Add(time.Second).Format(http.TimeFormat), 200},
		{"garbage", 200},
	}
	for _, tc := range cases {
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=10-19", "If-Range", tc.ifRange)
		if r.resp.StatusCode != tc.status {
			t.Fatalf("If-Range %q: status %d, want %d", tc.ifRange, r.resp.StatusCode, tc.status)
		}
		if tc.status == 200 {
			wantFull(t, r, testSize, testSeed)
		} else if !bytes.Equal(r.body, content(10, 10, testSeed)) {
			t.Fatalf("If-Range %q: body mismatch", tc.ifRange)
		}
	}
}

func TestHEADAndRouting(t *testing.T) {
	s := startServer(t, Options{Size: testSize, Seed: testSeed, Path: "/dir/x.iso"})
	c := newClient(t, false)
	r := do(t, c, http.MethodHead, s.URL())
	wantStatus(t, r, 200)
	wantHeader(t, r, "Content-Length", strconv.Itoa(testSize))
	wantHeader(t, r, "Accept-Ranges", "bytes")
	wantHeader(t, r, "ETag", fmt.Sprintf(`"%x-%x"`, testSize, testSeed))
	if len(r.body) != 0 {
		t.Fatal("HEAD returned a body")
	}
	r = do(t, c, http.MethodHead, s.URL(), "Range", "bytes=0-9")
	wantStatus(t, r, 206)
	wantHeader(t, r, "Content-Range", fmt.Sprintf("bytes 0-9/%d", testSize))

	wantStatus(t, do(t, c, http.MethodGet, s.BaseURL()+"/other"), 404)
	wantStatus(t, do(t, c, http.MethodGet, s.BaseURL()+"/r/1"), 404)
	r = do(t, c, http.MethodPost, s.URL())
	wantStatus(t, r, 405)
	wantHeader(t, r, "Allow", "GET, HEAD")
}

func TestStatsAndLog(t *testing.T) {
	s := startServer(t, Options{Size: testSize, Seed: testSeed})
	c := newClient(t, false)
	do(t, c, http.MethodHead, s.URL())
	do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-99", "If-Range", `"x"`, "Accept-Encoding", "gzip")
	do(t, c, http.MethodGet, s.URL(), "Range", "bytes=100-199")
	do(t, c, http.MethodGet, s.BaseURL()+"/nope")
	if !s.WaitIdle(5 * time.Second) {
		t.Fatal("server not idle")
	}
	st := s.Stats()
	// If-Range "x" does not match, so the second request gets the full body.
	wantBytes := int64(testSize + 100 + len("not found\n"))
	if st.Requests != 4 || st.GETs != 3 || st.HEADs != 1 || st.BytesServed != wantBytes {
		t.Fatalf("stats = %+v, want 4 requests, 3 GETs, 1 HEAD, %d bytes", st, wantBytes)
	}
	log := s.Log()
	if len(log) != 4 {
		t.Fatalf("log has %d entries", len(log))
	}
	want := Request{Method: "GET", Path: DefaultPath, Range: "bytes=0-99", IfRange: `"x"`, AcceptEncoding: "gzip", Status: 200, Bytes: testSize}
	got := log[1]
	got.RemoteAddr = ""
	if got != want {
		t.Fatalf("log[1] = %+v, want %+v", got, want)
	}
	if log[0].Method != "HEAD" || log[0].Status != 200 || log[0].Bytes != 0 {
		t.Fatalf("log[0] = %+v", log[0])
	}
	if log[2].Status != 206 || log[2].Bytes != 100 || log[3].Status != 404 {
		t.Fatalf("log[2..3] = %+v", log[2:])
	}
	if log[0].RemoteAddr == "" {
		t.Fatal("RemoteAddr not recorded")
	}
	s.ResetStats()
	// The client's keep-alive connection stays open: a reset starts the
	// high-water mark of connections from the ones open now.
	if st := s.Stats(); st != (Stats{MaxOpenConns: 1}) || len(s.Log()) != 0 {
		t.Fatalf("after reset: %+v, %d log entries", st, len(s.Log()))
	}
}

func TestRateLimitAndLatency(t *testing.T) {
	s := startServer(t, Options{Size: 256 << 10, Seed: 1, RateLimit: 1 << 20})
	c := newClient(t, false)
	start := time.Now()
	r := do(t, c, http.MethodGet, s.URL())
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("256 KiB at 1 MiB/s took %v", el)
	}
	wantFull(t, r, 256<<10, 1)

	l := startServer(t, Options{Size: 10, Latency: 100 * time.Millisecond})
	start = time.Now()
	wantStatus(t, do(t, c, http.MethodHead, l.URL()), 200)
	if el := time.Since(start); el < 90*time.Millisecond {
		t.Fatalf("latency 100ms but response after %v", el)
	}
}

func TestCloseInterruptsAndNoLeak(t *testing.T) {
	s, err := Start(Options{Size: 10 << 20, RateLimit: 64 << 10, Latency: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() {
		resp, err := c.Get(s.URL())
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().BytesServed == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The body would take 160 s at 64 KiB/s: a bound far below that shows
	// Close interrupted it, with room for a loaded machine.
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("Close took %v", el)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("throttled download of 10 MiB completed despite Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client did not finish after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	tr.CloseIdleConnections()
	goleak.VerifyNone(t)
}

func TestClientCancelStopsHandler(t *testing.T) {
	s := startServer(t, Options{Size: 100 << 20, RateLimit: 100 << 10})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // closes the connection mid-body
	if !s.WaitIdle(5 * time.Second) {
		t.Fatal("handler still running 5s after the client went away")
	}
	if n := s.Stats().BytesServed; n >= 100<<20 {
		t.Fatalf("served %d bytes", n)
	}
}

// faultsServer starts the origin the TestFaults* tests set faults on, and
// a client that does not follow redirects and one that does.
func faultsServer(t *testing.T) (s *Server, c, follow *http.Client, size int64) {
	t.Helper()
	return startServer(t, Options{Size: testSize, Seed: testSeed}), newClient(t, false), newClient(t, true), int64(testSize)
}

// TestFaultsBody: the faults that cut or shift the body: a range ignored or
// mislabelled, a short or dropped body, no HEAD; with the faults cleared
// the origin serves the whole file again.
func TestFaultsBody(t *testing.T) {
	s, c, _, size := faultsServer(t)

	t.Run("IgnoreRange", func(t *testing.T) {
		s.SetFaults(Faults{IgnoreRange: true})
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=10-19")
		wantStatus(t, r, 200)
		wantHeader(t, r, "Content-Range", "")
		wantFull(t, r, size, testSeed)
	})

	t.Run("WrongContentRange", func(t *testing.T) {
		s.SetFaults(Faults{WrongContentRange: true})
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=10-19")
		wantStatus(t, r, 206)
		wantHeader(t, r, "Content-Range", fmt.Sprintf("bytes 11-20/%d", size))
		if !bytes.Equal(r.body, content(11, 10, testSeed)) {
			t.Fatal("body is not the shifted range")
		}
		r = do(t, c, http.MethodGet, s.URL(), "Range", "bytes=-10")
		wantHeader(t, r, "Content-Range", fmt.Sprintf("bytes %d-%d/%d", size-11, size-2, size))
		if !bytes.Equal(r.body, content(size-11, 10, testSeed)) {
			t.Fatal("body is not the shifted tail range")
		}
	})

	t.Run("ShortBody", func(t *testing.T) {
		s.SetFaults(Faults{ShortBody: 100, ShortBodyRequests: 2})
		for i := range 2 {
			r := do(t, c, http.MethodGet, s.URL())
			wantHeader(t, r, "Content-Length", strconv.FormatInt(size, 10))
			if !errors.Is(r.err, io.ErrUnexpectedEOF) {
				t.Fatalf("request %d: read error %v, want unexpected EOF", i, r.err)
			}
			if int64(len(r.body)) != size-100 || !bytes.Equal(r.body, content(0, size-100, testSeed)) {
				t.Fatalf("request %d: got %d bytes, want %d correct bytes", i, len(r.body), size-100)
			}
		}
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=100-199")
		wantStatus(t, r, 206)
		if r.err != nil || !bytes.Equal(r.body, content(100, 100, testSeed)) {
			t.Fatalf("third request should be complete: %v", r.err)
		}
	})

	t.Run("DropAfter", func(t *testing.T) {
		s.SetFaults(Faults{DropAfter: 300000, DropRequests: 1})
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=1000-")
		wantStatus(t, r, 206)
		if r.err == nil {
			t.Fatal("dropped response read without error")
		}
		if len(r.body) != 300000 || !bytes.Equal(r.body, content(1000, 300000, testSeed)) {
			t.Fatalf("got %d bytes before drop, want 300000 correct", len(r.body))
		}
		wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)

		s.SetFaults(Faults{DropRequests: 1})
		r = do(t, c, http.MethodGet, s.URL())
		if r.err == nil || len(r.body) != 0 {
			t.Fatalf("drop after header: err %v, %d bytes", r.err, len(r.body))
		}
	})

	t.Run("NoHEAD", func(t *testing.T) {
		s.SetFaults(Faults{NoHEAD: 405})
		wantStatus(t, do(t, c, http.MethodHead, s.URL()), 405)
		wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)
	})

	s.SetFaults(Faults{})
	wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)
}

// TestFaultsEncoding: the faults of framing and encoding, no length and
// gzip; with the faults cleared the origin serves the whole file again.
func TestFaultsEncoding(t *testing.T) {
	s, c, _, size := faultsServer(t)
	t.Run("NoLength", func(t *testing.T) {
		small := startServer(t, Options{Size: 100, Seed: 5})
		for _, srv := range []*Server{s, small} {
			srv.SetFaults(Faults{NoLength: true})
			n := srv.Options().Size
			r := do(t, c, http.MethodGet, srv.URL(), "Range", "bytes=0-9")
			wantStatus(t, r, 200)
			if r.resp.ContentLength != -1 || len(r.resp.TransferEncoding) != 1 || r.resp.TransferEncoding[0] != "chunked" {
				t.Fatalf("ContentLength %d, TransferEncoding %v", r.resp.ContentLength, r.resp.TransferEncoding)
			}
			wantHeader(t, r, "Accept-Ranges", "")
			wantFull(t, r, n, srv.Options().Seed)
			r = do(t, c, http.MethodHead, srv.URL())
			wantHeader(t, r, "Content-Length", "")
			wantHeader(t, r, "Accept-Ranges", "")
		}
	})

	t.Run("Gzip", func(t *testing.T) {
		s.SetFaults(Faults{Gzip: true})
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-9", "Accept-Encoding", "identity")
		wantStatus(t, r, 200)
		wantHeader(t, r, "Content-Encoding", "gzip")
		wantHeader(t, r, "Accept-Ranges", "")
		if r.err != nil {
			t.Fatal(r.err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		wantFull(t, result{resp: r.resp, body: plain}, size, testSeed)
	})

	s.SetFaults(Faults{})
	wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)
}

// TestFaultsVersionsAndTiming: the faults of time and versions: a changed
// ETag, trickled answers, failed statuses then drops; with the faults
// cleared the origin serves the whole file again.
func TestFaultsVersionsAndTiming(t *testing.T) {
	s, c, _, size := faultsServer(t)

	t.Run("ChangeETagAfter", func(t *testing.T) {
		s.SetFaults(Faults{ChangeETagAfter: 1})
		oldTag := fmt.Sprintf(`"%x-%x"`, size, testSeed)
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-99")
		wantHeader(t, r, "ETag", oldTag)
		if !bytes.Equal(r.body, content(0, 100, testSeed)) {
			t.Fatal("first GET body mismatch")
		}
		r = do(t, c, http.MethodGet, s.URL(), "Range", "bytes=100-199", "If-Range", oldTag)
		wantStatus(t, r, 200)
		newTag := fmt.Sprintf(`"%x-%x"`, size, testSeed+1)
		wantHeader(t, r, "ETag", newTag)
		wantHeader(t, r, "Last-Modified", DefaultLastModified.Add(time.Hour).Format(http.TimeFormat))
		wantFull(t, r, size, testSeed+1)
		wantHeader(t, do(t, c, http.MethodHead, s.URL()), "ETag", newTag)
		r = do(t, c, http.MethodGet, s.URL(), "Range", "bytes=100-199", "If-Range", newTag)
		wantStatus(t, r, 206)
		if !bytes.Equal(r.body, content(100, 100, testSeed+1)) {
			t.Fatal("changed content mismatch")
		}
	})

	t.Run("TrickleOffset", func(t *testing.T) {
		s.SetFaults(Faults{Trickle: 64 << 10, TrickleOffset: 4096})
		start := time.Now()
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=4096-36863")
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Fatalf("32 KiB trickled at 64 KiB/s took %v", el)
		}
		if !bytes.Equal(r.body, content(4096, 32768, testSeed)) {
			t.Fatal("trickled body mismatch")
		}
		// Other offsets are not trickled (checked for correctness only).
		wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)
	})

	t.Run("TrickleRequest", func(t *testing.T) {
		s.SetFaults(Faults{Trickle: 64 << 10, TrickleRequest: 2})
		do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-32767")
		start := time.Now()
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-32767")
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Fatalf("second GET should be trickled, took %v", el)
		}
		if !bytes.Equal(r.body, content(0, 32768, testSeed)) {
			t.Fatal("trickled body mismatch")
		}
	})

	t.Run("FailStatus", func(t *testing.T) {
		s.SetFaults(Faults{FailStatus: 503, FailCount: 2, RetryAfter: "1"})
		wantStatus(t, do(t, c, http.MethodHead, s.URL()), 200) // HEAD is not failed
		for range 2 {
			r := do(t, c, http.MethodGet, s.URL())
			wantStatus(t, r, 503)
			wantHeader(t, r, "Retry-After", "1")
		}
		r := do(t, c, http.MethodGet, s.URL())
		wantStatus(t, r, 200)
		wantHeader(t, r, "Retry-After", "")
		wantFull(t, r, size, testSeed)
	})

	t.Run("FailThenDrop", func(t *testing.T) {
		s.SetFaults(Faults{FailStatus: 500, FailCount: 1, DropRequests: 1, DropAfter: 10})
		wantStatus(t, do(t, c, http.MethodGet, s.URL()), 500)
		if r := do(t, c, http.MethodGet, s.URL()); r.err == nil || len(r.body) != 10 {
			t.Fatalf("second GET: err %v, %d bytes; want drop after 10", r.err, len(r.body))
		}
		wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)
	})

	s.SetFaults(Faults{})
	wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)
}

// TestFaultsRedirects: redirects within the origin and to another, and a
// fixed status; with the faults cleared the origin serves the whole file
// again.
func TestFaultsRedirects(t *testing.T) {
	s, c, follow, size := faultsServer(t)

	t.Run("Redirects", func(t *testing.T) {
		s.SetFaults(Faults{Redirects: 3})
		r := do(t, c, http.MethodGet, s.URL())
		wantStatus(t, r, 302)
		wantHeader(t, r, "Location", "/r/1")
		s.WaitIdle(5 * time.Second)
		s.ResetStats()
		wantFull(t, do(t, follow, http.MethodGet, s.URL()), size, testSeed)
		s.WaitIdle(5 * time.Second)
		var paths []string
		for _, e := range s.Log() {
			paths = append(paths, fmt.Sprintf("%s:%d", e.Path, e.Status))
		}
		if want := fmt.Sprint([]string{DefaultPath + ":302", "/r/1:302", "/r/2:302", "/r/3:200"}); fmt.Sprint(paths) != want {
			t.Fatalf("redirect chain %v, want %v", paths, want)
		}
		wantStatus(t, do(t, c, http.MethodGet, s.BaseURL()+"/r/4"), 404)
	})

	t.Run("RedirectTo", func(t *testing.T) {
		other := startServer(t, Options{Size: 5000, Seed: 123})
		s.SetFaults(Faults{RedirectTo: other.URL()})
		r := do(t, c, http.MethodHead, s.URL())
		wantStatus(t, r, 302)
		wantHeader(t, r, "Location", other.URL())
		wantFull(t, do(t, follow, http.MethodGet, s.URL()), 5000, 123)
	})

	t.Run("Status", func(t *testing.T) {
		s.SetFaults(Faults{Status: 410})
		wantStatus(t, do(t, c, http.MethodGet, s.URL()), 410)
		wantStatus(t, do(t, c, http.MethodHead, s.URL()), 410)
		wantStatus(t, do(t, c, http.MethodGet, s.BaseURL()+"/elsewhere"), 410)
	})

	s.SetFaults(Faults{})
	wantFull(t, do(t, c, http.MethodGet, s.URL()), size, testSeed)
}

func TestConcurrentRangesWithFaultSwitching(t *testing.T) {
	s := startServer(t, Options{Size: 4 << 20, Seed: 8})
	c := newClient(t, false)
	const parts = 8
	partSize := int64(4<<20) / parts
	errs := make(chan error, parts)
	for i := range parts {
		go func() {
			off := int64(i) * partSize
			req, _ := http.NewRequest(http.MethodGet, s.URL(), nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+partSize-1))
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil && !bytes.Equal(body, content(off, partSize, 8)) {
				err = fmt.Errorf("part %d mismatch", i)
			}
			errs <- err
		}()
	}
	for range 20 {
		s.SetFaults(Faults{RetryAfter: "2"}) // harmless faults, exercised concurrently
		_ = s.Stats()
		_ = s.Log()
	}
	for range parts {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("timeout")
		}
	}
}

func BenchmarkServeGET(b *testing.B) {
	const size = 256 << 20
	s, err := Start(Options{Size: size, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	for b.Loop() {
		resp, err := c.Get(s.URL())
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		for {
			m, err := resp.Body.Read(buf)
			n += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		resp.Body.Close()
		if n != size {
			b.Fatalf("read %d bytes", n)
		}
	}
}
