package dlflow_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// logServer serves body with http.ServeContent, which answers
// If-Modified-Since with 304, and logs each request's method and status.
type logServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	modTime time.Time
	log     []string // "GET 206", "HEAD 304", ...
}

func newLogServer(t *testing.T, body []byte, modTime time.Time) *logServer {
	s := &logServer{body: body, modTime: modTime}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body, mod := s.body, s.modTime
		s.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		http.ServeContent(rec, r, "file.bin", mod, bytes.NewReader(body))
		s.mu.Lock()
		s.log = append(s.log, r.Method+" "+http.StatusText(rec.status))
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *logServer) set(body []byte, modTime time.Time) {
	s.mu.Lock()
	s.body, s.modTime = body, modTime
	s.mu.Unlock()
}

// bodies counts the answers that carried a body: GETs answered 200 or 206.
func (s *logServer) bodies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.log {
		if l == "GET OK" || l == "GET Partial Content" {
			n++
		}
	}
	return n
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// TestIfNewerNotModified: a completed file gets the server's Last-Modified
// as its time; an IfNewer download of it again asks with If-Modified-Since,
// gets a 304, fetches no body and succeeds with UpToDate. Once the server
// has a newer copy, IfNewer replaces the file with it.
func TestIfNewerNotModified(t *testing.T) {
	noLeaks(t)
	old := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	v1 := bytes.Repeat([]byte("one "), 50_000)
	srv := newLogServer(t, v1, old)
	out := filepath.Join(t.TempDir(), "f.bin")
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	if _, err := c.Do(ctx, &dlflow.Request{URL: srv.URL + "/f.bin", Path: out}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil || !fi.ModTime().Equal(old) {
		t.Fatalf("mtime %v (%v), want the Last-Modified %v", fi.ModTime(), err, old)
	}
	before := srv.bodies()
	res, err := c.Do(ctx, &dlflow.Request{URL: srv.URL + "/f.bin", Path: out, IfNewer: true})
	if err != nil || !res.UpToDate || res.Bytes != int64(len(v1)) {
		t.Fatalf("second run: %+v, %v; want UpToDate with %d bytes", res, err, len(v1))
	}
	if n := srv.bodies() - before; n != 0 {
		t.Fatalf("the up-to-date run fetched %d bodies; log %q", n, srv.log)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, v1) {
		t.Fatal("the up-to-date file changed")
	}

	// Without IfNewer the existing file is refused, as always.
	if _, err := c.Do(ctx, &dlflow.Request{URL: srv.URL + "/f.bin", Path: out}); !errors.Is(err, dlflow.ErrOutputExists) {
		t.Fatalf("without IfNewer: %v, want ErrOutputExists", err)
	}

	newer := old.Add(time.Hour)
	v2 := bytes.Repeat([]byte("two!"), 60_000)
	srv.set(v2, newer)
	res, err = c.Do(ctx, &dlflow.Request{URL: srv.URL + "/f.bin", Path: out, IfNewer: true})
	if err != nil || res.UpToDate {
		t.Fatalf("newer copy: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, v2) {
		t.Fatalf("the file is not the newer copy (%d bytes)", len(got))
	}
	if fi, _ := os.Stat(out); !fi.ModTime().Equal(newer) {
		t.Fatalf("mtime %v, want %v", fi.ModTime(), newer)
	}
}

// TestIfNewerIgnoredCondition: the test origin ignores If-Modified-Since
// and answers HEAD 200; the same Last-Modified and size then mean up to
// date, and no GET is sent. Without Path the output checked is the one the
// URL names, inside Dir.
func TestIfNewerIgnoredCondition(t *testing.T) {
	noLeaks(t)
	const size, seed = 300<<10 + 5, 11
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	dir := t.TempDir()
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := c.Do(ctx, &dlflow.Request{URL: srv.URL(), Dir: dir, IfNewer: true})
	if err != nil || res.UpToDate {
		t.Fatalf("first run: %+v, %v", res, err)
	}
	assertComplete(t, res.Path, size, seed)
	gets := srv.Stats().GETs
	res, err = c.Do(ctx, &dlflow.Request{URL: srv.URL(), Dir: dir, IfNewer: true})
	if err != nil || !res.UpToDate {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	if n := srv.Stats().GETs - gets; n != 0 {
		t.Fatalf("the up-to-date run sent %d GETs", n)
	}
	assertComplete(t, res.Path, size, seed)

	// A file of another size is not up to date, whatever its time.
	if err := os.WriteFile(res.Path, []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	far := origin.DefaultLastModified.Add(24 * time.Hour)
	if err := os.Chtimes(res.Path, far, far); err != nil {
		t.Fatal(err)
	}
	res, err = c.Do(ctx, &dlflow.Request{URL: srv.URL(), Dir: dir, IfNewer: true})
	if err != nil || res.UpToDate {
		t.Fatalf("third run: %+v, %v", res, err)
	}
	assertComplete(t, res.Path, size, seed)
}

// TestRetryPolicy: Request.Retry replaces the topology's tries: three
// failing GETs defeat one retry and not three.
func TestRetryPolicy(t *testing.T) {
	noLeaks(t)
	const size, seed = 100<<10 + 1, 12
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	dir := t.TempDir()
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 3})
	_, err := c.Do(ctx, &dlflow.Request{URL: srv.URL(), Path: filepath.Join(dir, "a"), Retry: &dlflow.Retry{Retries: 1, Delay: time.Millisecond}})
	if err == nil {
		t.Fatal("one retry got past three failures")
	}
	if got := srv.Stats().GETs; got != 2 {
		t.Fatalf("%d GETs with one retry, want 2", got)
	}
	srv.ResetStats()
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 3})
	res, err := c.Do(ctx, &dlflow.Request{URL: srv.URL(), Path: filepath.Join(dir, "b"), Retry: &dlflow.Retry{Retries: 3, Delay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	assertComplete(t, res.Path, size, seed)
	if res.Retries != 3 {
		t.Fatalf("%d retries, want 3", res.Retries)
	}
	if _, err := c.Do(ctx, &dlflow.Request{URL: srv.URL(), Path: filepath.Join(dir, "c"), Retry: &dlflow.Retry{Retries: -2}}); !errors.As(err, new(*dlflow.RequestError)) {
		t.Fatalf("negative retries: %v, want a *RequestError", err)
	}
}

// TestMaxTime: a download slower than MaxTime fails with a *MaxTimeError,
// keeps its partial data and leaves no output.
func TestMaxTime(t *testing.T) {
	noLeaks(t)
	const size = 8 << 20
	srv := startOrigin(t, origin.Options{Size: size, Seed: 13, RateLimit: 1 << 20}) // 8 s for the whole file
	out := filepath.Join(t.TempDir(), "slow.bin")
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := c.Do(ctx, &dlflow.Request{URL: srv.URL(), Path: out, MaxTime: 1500 * time.Millisecond})
	var mt *dlflow.MaxTimeError
	if !errors.As(err, &mt) || mt.MaxTime != 1500*time.Millisecond {
		t.Fatalf("err %v (%T), want a *MaxTimeError", err, err)
	}
	assertMissing(t, out)
	if res.Partial != out+".tmp" || res.Bytes <= 0 || res.Bytes >= size {
		t.Fatalf("partial %q with %d bytes, want %s.tmp with some of %d", res.Partial, res.Bytes, out, size)
	}
}

// TestIfNewerNoLastModified: a server that gives no Last-Modified cannot
// say whether its copy is newer: IfNewer fetches the file again, replaces
// the output, and warns that the server was the limit.
func TestIfNewerNoLastModified(t *testing.T) {
	noLeaks(t)
	v1, v2 := bytes.Repeat([]byte("a"), 5000), bytes.Repeat([]byte("b"), 7000)
	srv := newLogServer(t, v1, time.Time{}) // the zero time: no Last-Modified
	out := filepath.Join(t.TempDir(), "f.bin")
	if err := os.WriteFile(out, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c := newClient(t, dlflow.WithLogger(zerolog.New(&logs).Level(zerolog.WarnLevel)))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := c.Do(ctx, &dlflow.Request{URL: srv.URL + "/f.bin", Path: out, IfNewer: true})
	if err != nil || res.UpToDate {
		t.Fatalf("%+v, %v", res, err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, v1) {
		t.Fatalf("the output is not the server's copy (%d bytes)", len(got))
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "no Last-Modified") {
		t.Fatalf("no warning that the server cannot tell: %s", logs.String())
	}
}
