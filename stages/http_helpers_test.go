package stages

// Test stages and helpers shared by the tests of the HTTP side (probe,
// http.source, http.reader). Their type names start with "ht." and their Go
// names with "ht" so they do not clash with other test helpers of the
// package.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// htRangesConfig feeds fixed ranges to the stage that consumes them, Gap
// apart.
type htRangesConfig struct {
	Ranges []pipeline.Range
	Gap    time.Duration
}

var htRangesDef = pipeline.Def[htRangesConfig]{
	Type: "ht.ranges", Consumes: pipeline.None, Produces: pipeline.Ranges,
	New: func(cfg htRangesConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			for _, r := range cfg.Ranges {
				if cfg.Gap > 0 {
					time.Sleep(cfg.Gap)
				}
				if err := edges.SendRange(ctx, r); err != nil {
					return err
				}
			}
			return nil
		}), nil
	},
}

// htPieces cuts [0, size) into ranges of piece bytes.
func htPieces(size, piece int64) []pipeline.Range {
	var rs []pipeline.Range
	for off := int64(0); off < size; off += piece {
		rs = append(rs, pipeline.Range{Start: off, End: min(off+piece, size)})
	}
	return rs
}

// htOutput is what the test sink saw.
type htOutput struct {
	mu       sync.Mutex
	data     []byte
	bytes    int64 // sum of chunk lengths; more than len(data) means a duplicate
	chunks   []pipeline.Range
	ordered  bool // every chunk started where the previous one ended
	next     int64
	failAt   int64         // when > 0, the sink fails once it has this many bytes
	received chan struct{} // closed at the first chunk
	once     sync.Once
}

func newHTOutput() *htOutput { return &htOutput{ordered: true, received: make(chan struct{})} }

func (o *htOutput) write(c pipeline.Chunk) error {
	o.once.Do(func() { close(o.received) })
	o.mu.Lock()
	defer o.mu.Unlock()
	if c.Offset != o.next {
		o.ordered = false
	}
	o.next = c.End()
	if need := c.End(); need > int64(len(o.data)) {
		o.data = append(o.data, make([]byte, need-int64(len(o.data)))...)
	}
	copy(o.data[c.Offset:], c.Data)
	o.bytes += int64(len(c.Data))
	o.chunks = append(o.chunks, pipeline.Range{Start: c.Offset, End: c.End()})
	if o.failAt > 0 && o.bytes >= o.failAt {
		return fmt.Errorf("sink failed on purpose")
	}
	return nil
}

type htSinkConfig struct{ Out *htOutput }

// htSinkDef writes chunks at their offsets into Out.
var htSinkDef = pipeline.Def[htSinkConfig]{
	Type: "ht.sink", Consumes: pipeline.Bytes, Produces: pipeline.None,
	New: func(cfg htSinkConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			for {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case c, ok := <-edges.Chunks:
					if !ok {
						return nil
					}
					err := cfg.Out.write(c)
					c.Release()
					if err != nil {
						return err
					}
				}
			}
		}), nil
	},
}

// htDiscardDef releases every chunk (for benchmarks).
var htDiscardDef = pipeline.Def[struct{}]{
	Type: "ht.discard", Consumes: pipeline.Bytes, Produces: pipeline.None,
	New: func(struct{}) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			for c := range edges.Chunks {
				c.Release()
			}
			return nil
		}), nil
	},
}

func htRegistry(t testing.TB) *pipeline.Registry {
	t.Helper()
	r := pipeline.NewRegistry()
	for _, err := range []error{
		pipeline.Register(r, httpSourceDef),
		pipeline.Register(r, httpReaderDef),
		pipeline.Register(r, htRangesDef),
		pipeline.Register(r, htSinkDef),
		pipeline.Register(r, htDiscardDef),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// htSourceGraph is http.source -> sink.
func htSourceGraph(cfg HTTPSourceConfig, out *htOutput) []pipeline.Node {
	return []pipeline.Node{
		{ID: "src", Type: "http.source", Config: &cfg},
		{ID: "sink", Type: "ht.sink", Inputs: []string{"src"}, Config: &htSinkConfig{Out: out}},
	}
}

// htReaderGraph is ranges -> http.reader x workers -> sink.
func htReaderGraph(ranges []pipeline.Range, workers int, cfg HTTPReaderConfig, out *htOutput) []pipeline.Node {
	return []pipeline.Node{
		{ID: "split", Type: "ht.ranges", Config: &htRangesConfig{Ranges: ranges}},
		{ID: "fetch", Type: "http.reader", Inputs: []string{"split"}, Workers: workers, Config: &cfg},
		{ID: "sink", Type: "ht.sink", Inputs: []string{"fetch"}, Config: &htSinkConfig{Out: out}},
	}
}

// htRun builds and runs nodes, and checks that every buffer came back.
func htRun(t testing.TB, ctx context.Context, res *pipeline.Resource, nodes ...pipeline.Node) error {
	t.Helper()
	g, err := pipeline.Build(htRegistry(t), nodes)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	bufs := pipeline.NewBuffers()
	err = g.Run(ctx, pipeline.RunOptions{Resource: res, Buffers: bufs, Log: zerolog.Nop()})
	if n := bufs.InUse(); n != 0 {
		t.Errorf("%d bytes of buffers still in use after the run", n)
	}
	return err
}

// htNoLeaks checks, after every other cleanup of the test, that the test
// left no goroutine behind. Call it first.
func htNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// htClient returns a client with the default config whose idle connections
// are closed when the test ends.
func htClient(t testing.TB, mod func(*httpx.HTTPConfig)) (*http.Client, http.Header) {
	t.Helper()
	cfg := httpx.DefaultHTTPConfig()
	if mod != nil {
		mod(&cfg)
	}
	c, h, err := httpx.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, h
}

// htProbe probes url with a default client.
func htProbe(t testing.TB, url string) *pipeline.Resource {
	t.Helper()
	c, h := htClient(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := httpx.Probe(ctx, c, h, url)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return res
}

// htOrigin starts the test origin with size bytes of seed 1.
func htOrigin(t testing.TB, size int64, mod func(*origin.Options)) *origin.Server {
	t.Helper()
	opts := origin.Options{Size: size, Seed: 1}
	if mod != nil {
		mod(&opts)
	}
	srv, err := origin.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// htCheck asserts that out holds exactly the size bytes of seed 1, each
// once.
func htCheck(t testing.TB, out *htOutput, size int64) {
	t.Helper()
	out.mu.Lock()
	defer out.mu.Unlock()
	if int64(len(out.data)) != size || out.bytes != size {
		t.Fatalf("got %d bytes (%d received), want %d", len(out.data), out.bytes, size)
	}
	if got, want := sha256.Sum256(out.data), origin.SHA256(size, 1); got != want {
		t.Fatalf("sha256 %x, want %x", got, want)
	}
}

// htContent is size bytes of the origin's seed-1 content.
func htContent(size int64) []byte {
	b := make([]byte, size)
	origin.Fill(b, 0, 1)
	return b
}

// htFileServer serves data with ETag and Last-Modified through
// http.ServeContent (Range and If-Range included). before, when set, runs
// first (the ETag header already set) and may answer the request itself by
// returning true; n numbers the GETs from 1 (0 for other methods). Every request's
// method and Range header is logged.
type htFileServer struct {
	*httptest.Server
	data   []byte
	etag   string
	before func(n int, w http.ResponseWriter, r *http.Request) bool

	mu   sync.Mutex
	gets int
	log  []string // "GET bytes=0-" ...
}

func newHTFileServer(t testing.TB, data []byte, before func(n int, w http.ResponseWriter, r *http.Request) bool) *htFileServer {
	s := &htFileServer{data: data, etag: `"v1-` + strconv.Itoa(len(data)) + `"`, before: before}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

var htModTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func (s *htFileServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.Header.Get("Range"))
	n := 0
	if r.Method == http.MethodGet {
		s.gets++
		n = s.gets
	}
	s.mu.Unlock()
	w.Header().Set("ETag", s.etag)
	if s.before != nil && s.before(n, w, r) {
		return
	}
	http.ServeContent(w, r, "file.bin", htModTime, bytes.NewReader(s.data))
}

// Requests returns the log of "METHOD Range" lines.
func (s *htFileServer) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// htCutWriter passes at most left body bytes, then fails every write, so a
// handler writing through it sends a body shorter than its Content-Length.
type htCutWriter struct {
	http.ResponseWriter
	left int
}

func (w *htCutWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n, _ := w.ResponseWriter.Write(p[:w.left])
		w.left = 0
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		return n, fmt.Errorf("cut")
	}
	w.left -= len(p)
	return w.ResponseWriter.Write(p)
}

func htCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
