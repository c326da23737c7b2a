package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

func htSourceConfig(mod func(*HTTPSourceConfig)) HTTPSourceConfig {
	cfg := httpSourceDef.Defaults
	cfg.Backoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

func TestHTTPSourceSizes(t *testing.T) {
	const buffer = 64 << 10
	for _, size := range []int64{0, 1, 3*buffer + 7, 8 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, size, nil)
			res := htProbe(t, srv.URL())
			out := newHTOutput()
			cfg := htSourceConfig(func(c *HTTPSourceConfig) { c.Buffer = buffer })
			if err := htRun(t, htCtx(t, 30*time.Second), res, htSourceGraph(cfg, out)...); err != nil {
				t.Fatal(err)
			}
			htCheck(t, out, size)
			if !out.ordered {
				t.Fatal("chunks out of order")
			}
			for i, c := range out.chunks[:max(len(out.chunks)-1, 0)] {
				if c.End-c.Start != buffer {
					t.Fatalf("chunk %d holds %d bytes; only the last may be short of %d", i, c.End-c.Start, buffer)
				}
			}
			if st := srv.Stats(); st.GETs != 1 {
				t.Fatalf("%d GETs, want 1", st.GETs)
			}
			if log := srv.Log(); log[len(log)-1].Range != "" || log[len(log)-1].AcceptEncoding != "identity" {
				t.Fatalf("request %+v", log[len(log)-1])
			}
		})
	}
}

// TestHTTPSourceResumesShortBody: the first body is cut; the retry asks for
// exactly the first missing byte, with If-Range.
func TestHTTPSourceResumesShortBody(t *testing.T) {
	htNoLeaks(t)
	const size, cut = 1<<20 + 11, 300_001
	data := htContent(size)
	srv := newHTFileServer(t, data, func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n != 1 {
			return false
		}
		http.ServeContent(&htCutWriter{ResponseWriter: w, left: cut}, r, "f", htModTime, bytes.NewReader(data))
		return true
	})
	res := htProbe(t, srv.URL)
	out := newHTOutput()
	if err := htRun(t, htCtx(t, 30*time.Second), res, htSourceGraph(htSourceConfig(nil), out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	reqs := srv.Requests()
	if want := []string{"HEAD ", "GET ", fmt.Sprintf("GET bytes=%d-", cut)}; fmt.Sprint(reqs) != fmt.Sprint(want) {
		t.Fatalf("requests %q, want %q", reqs, want)
	}
}

func TestHTTPSourceRetriesDroppedConnections(t *testing.T) {
	htNoLeaks(t)
	const size = 4 << 20
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	srv.SetFaults(origin.Faults{DropAfter: 1 << 20, DropRequests: 3})
	out := newHTOutput()
	if err := htRun(t, htCtx(t, 30*time.Second), res, htSourceGraph(htSourceConfig(nil), out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	log := srv.Log()
	for i, want := range []string{"", "bytes=1048576-", "bytes=2097152-", "bytes=3145728-"} {
		if log[i].Range != want || (i > 0 && log[i].IfRange != res.ETag) {
			t.Fatalf("request %d: %+v, want Range %q with If-Range", i, log[i], want)
		}
	}
}

// TestHTTPSourceChangedResource: the resume request finds a new version.
func TestHTTPSourceChangedResource(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 2<<20, nil)
	res := htProbe(t, srv.URL())
	srv.SetFaults(origin.Faults{DropAfter: 1 << 20, DropRequests: 1, ChangeETagAfter: 1})
	out := newHTOutput()
	err := htRun(t, htCtx(t, 30*time.Second), res, htSourceGraph(htSourceConfig(nil), out)...)
	if !errors.Is(err, httpx.ErrResourceChanged) {
		t.Fatalf("err = %v, want httpx.ErrResourceChanged", err)
	}
}

// TestHTTPSourceUnknownSize: chunked bodies stream to EOF; a cut one is an
// error, never a short file.
func TestHTTPSourceUnknownSize(t *testing.T) {
	htNoLeaks(t)
	const size = 1<<20 + 3
	srv := htOrigin(t, size, nil)
	srv.SetFaults(origin.Faults{NoLength: true})
	res := htProbe(t, srv.URL())
	if res.Size != -1 || res.AcceptRanges {
		t.Fatalf("resource %+v", res)
	}
	out := newHTOutput()
	if err := htRun(t, htCtx(t, 30*time.Second), res, htSourceGraph(htSourceConfig(nil), out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)

	srv.SetFaults(origin.Faults{NoLength: true, DropAfter: 500_000, DropRequests: 1})
	out = newHTOutput()
	err := htRun(t, htCtx(t, 30*time.Second), res, htSourceGraph(htSourceConfig(nil), out)...)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "does not accept ranges") {
		t.Fatalf("err = %v, want an unexpected EOF that cannot be resumed", err)
	}
}

func TestHTTPSourceRejectsEncoding(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 1000, nil)
	res := htProbe(t, srv.URL())
	srv.SetFaults(origin.Faults{Gzip: true})
	err := htRun(t, htCtx(t, 10*time.Second), res, htSourceGraph(htSourceConfig(nil), newHTOutput())...)
	var ee *httpx.EncodingError
	if !errors.As(err, &ee) || ee.Encoding != "gzip" {
		t.Fatalf("err = %v, want *httpx.EncodingError", err)
	}
}

func TestHTTPSourceStatus(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 1000, nil)
	res := htProbe(t, srv.URL())
	srv.ResetStats()
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 2, RetryAfter: "0"})
	out := newHTOutput()
	cfg := htSourceConfig(func(c *HTTPSourceConfig) { c.Backoff, c.MaxBackoff = time.Hour, time.Hour })
	start := time.Now()
	if err := htRun(t, htCtx(t, 10*time.Second), res, htSourceGraph(cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, 1000)
	if d := time.Since(start); d > 5*time.Second || srv.Stats().GETs != 3 {
		t.Fatalf("took %v and %d GETs; Retry-After: 0 must replace the backoff", d, srv.Stats().GETs)
	}

	srv.ResetStats()
	srv.SetFaults(origin.Faults{Status: 404})
	err := htRun(t, htCtx(t, 10*time.Second), res, htSourceGraph(htSourceConfig(nil), newHTOutput())...)
	var he *httpx.HTTPError
	if !errors.As(err, &he) || he.Status != 404 || !strings.Contains(err.Error(), "404 Not Found") || srv.Stats().GETs != 1 {
		t.Fatalf("err = %v after %d GETs, want one 404", err, srv.Stats().GETs)
	}
}

// Two replicas would each download the whole file: Build refuses them,
// naming the workers key.
func TestHTTPSourceOneReplica(t *testing.T) {
	nodes := htSourceGraph(htSourceConfig(nil), newHTOutput())
	nodes[0].Workers = 2
	_, err := pipeline.Build(htRegistry(t), nodes)
	var we *pipeline.WiringError
	if !errors.As(err, &we) || we.Key != "workers" || !strings.Contains(err.Error(), "http.source runs at most 1 worker (it streams one body over one connection") {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPSourceNeedsResource(t *testing.T) {
	err := htRun(t, context.Background(), nil, htSourceGraph(htSourceConfig(nil), newHTOutput())...)
	if err == nil || !strings.Contains(err.Error(), "probe") {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPSourceConfig(t *testing.T) {
	for _, mod := range []func(*HTTPSourceConfig){
		func(c *HTTPSourceConfig) { c.Buffer = 0 },
		func(c *HTTPSourceConfig) { c.Buffer = 2 << 30 },
		func(c *HTTPSourceConfig) { c.IdleTimeout = -1 },
		func(c *HTTPSourceConfig) { c.Attempts = 0 },
		func(c *HTTPSourceConfig) { c.Total = -1 },
		func(c *HTTPSourceConfig) { c.MaxBackoff = c.Backoff - 1 },
	} {
		cfg := httpSourceDef.Defaults
		mod(&cfg)
		if _, err := httpSourceDef.New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	m := httpSourceDef.Memory(httpSourceDef.Defaults)
	if m.ChunkSize != 256<<10 || m.PerReplica != 256<<10 {
		t.Fatalf("memory %+v", m)
	}
}

// ExampleHTTPSourceConfig streams a resource with http.source into a sink
// that hashes it.
func ExampleHTTPSourceConfig() {
	srv, _ := origin.Start(origin.Options{Size: 3 << 20, Seed: 7})
	defer srv.Close()
	client, header, _ := httpx.NewClient(httpx.DefaultHTTPConfig())
	defer client.CloseIdleConnections()
	res, _ := httpx.Probe(context.Background(), client, header, srv.URL())

	reg := pipeline.NewRegistry()
	_ = Register(reg)
	var got int64
	_ = pipeline.Register(reg, pipeline.Def[struct{}]{
		Type: "example.count", Consumes: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for c := range edges.Chunks {
					got += int64(len(c.Data))
					c.Release()
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "http.source", Config: &HTTPSourceConfig{BodyConfig: BodyConfig{Buffer: 1 << 20, IdleTimeout: 30 * time.Second, RetryConfig: httpx.DefaultRetry}}},
		{ID: "count", Type: "example.count", Inputs: []string{"src"}},
	})
	if err != nil {
		panic(err)
	}
	err = g.Run(context.Background(), pipeline.RunOptions{Resource: res})
	fmt.Println(got, err)
	// Output: 3145728 <nil>
}

// TestHTTPSourceCancel: cancelling mid-stream returns promptly, with every
// buffer back and no goroutine left.
func TestHTTPSourceCancel(t *testing.T) {
	htNoLeaks(t)
	const size = 64 << 20
	srv := htOrigin(t, size, func(o *origin.Options) { o.RateLimit = 4 << 20 })
	res := htProbe(t, srv.URL())
	out := newHTOutput()
	ctx, cancel := context.WithCancel(htCtx(t, 30*time.Second))
	done := make(chan error, 1)
	go func() { done <- htRun(t, ctx, res, htSourceGraph(htSourceConfig(nil), out)...) }()
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
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return promptly after cancel")
	}
}

// TestHTTPSourceStall: a silent body is abandoned after idle_timeout and
// resumed where it stopped.
func TestHTTPSourceStall(t *testing.T) {
	htNoLeaks(t)
	const size, sent = 1 << 20, 123_457
	data := htContent(size)
	release := make(chan struct{})
	defer close(release)
	srv := newHTFileServer(t, data, func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n != 1 {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		_, _ = w.Write(data[:sent])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})
	res := htProbe(t, srv.URL)
	out := newHTOutput()
	cfg := htSourceConfig(func(c *HTTPSourceConfig) { c.IdleTimeout = 200 * time.Millisecond })
	if err := htRun(t, htCtx(t, 10*time.Second), res, htSourceGraph(cfg, out)...); err != nil {
		t.Fatal(err)
	}
	htCheck(t, out, size)
	if reqs := srv.Requests(); fmt.Sprint(reqs) != fmt.Sprint([]string{"HEAD ", "GET ", fmt.Sprintf("GET bytes=%d-", sent)}) {
		t.Fatalf("requests %q", reqs)
	}
}
