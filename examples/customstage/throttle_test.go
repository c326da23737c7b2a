package customstage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples/customstage"
	"github.com/dlflow/dlflow/pipeline"
	_ "github.com/dlflow/dlflow/sinks"  // file.sink, for throttled.yaml
	_ "github.com/dlflow/dlflow/stages" // http.source, for throttled.yaml
	// http.source, NewClient, Probe
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testData is n reproducible pseudo-random bytes.
func testData(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(b)
	return b
}

// memConfig configures the in-memory source and the collecting sink.
type memConfig struct{}

// collector gathers what reaches the sink, at the chunks' offsets.
type collector struct {
	mu   sync.Mutex
	data []byte
}

// testRegistry is an isolated registry with throttle.tap, a source emitting
// data in chunks of chunk bytes from a pool, and a sink copying each chunk
// into c at its offset. The sink consumes ordered bytes when ordered is set,
// so Build proves the throttle keeps its input's order.
func testRegistry(t *testing.T, data []byte, chunk int, ordered bool, c *collector) *pipeline.Registry {
	t.Helper()
	reg := pipeline.NewRegistry()
	sinkFlow := pipeline.Bytes
	if ordered {
		sinkFlow = pipeline.OrderedBytes
	}
	for _, err := range []error{
		pipeline.Register(reg, customstage.Def),
		pipeline.Register(reg, pipeline.Def[memConfig]{
			Type: "mem.source", Consumes: pipeline.None, Produces: pipeline.OrderedBytes,
			New: func(memConfig) (pipeline.Stage, error) {
				return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
					pool := env.Buffers.Pool(chunk)
					for off := 0; off < len(data); {
						ch := pool.Get(int64(off))
						ch.Data = ch.Data[:copy(ch.Data, data[off:])]
						off += len(ch.Data)
						if err := edges.Send(ctx, ch); err != nil {
							return err
						}
					}
					return nil
				}), nil
			},
		}),
		pipeline.Register(reg, pipeline.Def[memConfig]{
			Type: "collect.sink", Consumes: sinkFlow, Produces: pipeline.None,
			New: func(memConfig) (pipeline.Stage, error) {
				return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
					for ch := range edges.Chunks {
						c.mu.Lock()
						if need := int(ch.End()); need > len(c.data) {
							c.data = append(c.data, make([]byte, need-len(c.data))...)
						}
						copy(c.data[ch.Offset:], ch.Data)
						c.mu.Unlock()
						ch.Release()
					}
					return nil
				}), nil
			},
		}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

func buildThrottled(t *testing.T, reg *pipeline.Registry, rate pipeline.ByteSize, workers int) *pipeline.Graph {
	t.Helper()
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "mem.source"},
		{ID: "limit", Type: "throttle.tap", Inputs: []string{"src"}, Workers: workers, Config: &customstage.Config{Rate: rate}},
		{ID: "out", Type: "collect.sink", Inputs: []string{"limit"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestThrottleLimitsRateAndKeepsBytes(t *testing.T) {
	const size, chunk, rate = 300 << 10, 16 << 10, 1 << 20 // about 0.29s at the rate
	for _, tc := range []struct {
		name    string
		workers int
		ordered bool
	}{
		{"one worker keeps order", 1, true},
		{"three workers share the rate", 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(size)
			var got collector
			g := buildThrottled(t, testRegistry(t, data, chunk, tc.ordered, &got), rate, tc.workers)
			buffers := pipeline.NewBuffers()
			start := time.Now()
			if err := g.Run(t.Context(), pipeline.RunOptions{Buffers: buffers}); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)

			if sha256.Sum256(got.data) != sha256.Sum256(data) {
				t.Fatalf("sink got %d bytes with another sha256 than the %d sent", len(got.data), size)
			}
			// Every byte is paid for before it leaves: at least size/rate.
			// The upper bound is loose, for slow CI machines.
			if lower := time.Duration(float64(size) / rate * float64(time.Second)); elapsed < lower || elapsed > lower+5*time.Second {
				t.Fatalf("run took %v, want at least %v (and not much more)", elapsed, lower)
			}
			if n := buffers.InUse(); n != 0 {
				t.Fatalf("%d bytes of buffers not released", n)
			}
		})
	}
}

func TestThrottleCancelIsPrompt(t *testing.T) {
	data := testData(1 << 20)
	var got collector
	// 1 KiB/s with 256 KiB chunks: the first chunk alone would wait 256s.
	g := buildThrottled(t, testRegistry(t, data, 256<<10, true, &got), 1<<10, 1)
	buffers := pipeline.NewBuffers()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := g.Run(ctx, pipeline.RunOptions{Buffers: buffers})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run returned %v, want context.DeadlineExceeded", err)
	}
	// The first chunk would wait 256 s; 30 s leaves room for load.
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Fatalf("Run returned %v after the deadline, want promptly", elapsed)
	}
	if len(got.data) != 0 {
		t.Fatalf("sink got %d bytes, want none before the first chunk was paid for", len(got.data))
	}
	if n := buffers.InUse(); n != 0 {
		t.Fatalf("%d bytes of buffers not released after cancellation", n)
	}
}

func TestThrottleRejectsZeroRate(t *testing.T) {
	reg := pipeline.NewRegistry()
	pipeline.MustRegister(reg, customstage.Def)
	_, err := pipeline.Build(reg, []pipeline.Node{{ID: "limit", Type: "throttle.tap", Config: &customstage.Config{}}})
	if want := `stage "limit": rate must be more than 0, got 0B`; err == nil || err.Error() != want {
		t.Fatalf("Build error %v, want %q", err, want)
	}
}

// TestThrottleNoAllocPerChunk runs the same graph with 10 and 1010 chunks;
// the extra 1000 chunks must cost (almost) no allocations.
func TestThrottleNoAllocPerChunk(t *testing.T) {
	if raceEnabled() {
		t.Skip("under -race sync.Pool drops buffers on purpose, so pooled chunks allocate")
	}
	const chunk = 4 << 10
	allocs := func(chunks int) float64 {
		data := testData(chunks * chunk)
		var got collector
		got.data = make([]byte, len(data)) // the sink never grows it
		g := buildThrottled(t, testRegistry(t, data, chunk, true, &got), 1<<40, 1)
		return testing.AllocsPerRun(5, func() {
			if err := g.Run(context.Background(), pipeline.RunOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
	few, many := allocs(10), allocs(1010)
	if perChunk := (many - few) / 1000; perChunk > 0.05 {
		t.Fatalf("%.2f allocations per chunk (%v runs of 10 chunks, %v of 1010), want none", perChunk, few, many)
	}
}

func raceEnabled() bool {
	info, _ := debug.ReadBuildInfo()
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// throttled.yaml, loaded the way the CLI loads a config, downloads a file
// from a local server through the throttle into a temporary directory.
func TestThrottledYAML(t *testing.T) {
	data := testData(512 << 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "file.bin", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "file.bin")

	cfg, err := config.Load(config.Options{
		File:    "throttled.yaml",
		Environ: []string{},
		Sets:    []string{"url=" + srv.URL + "/file.bin", "output=" + out, "stages.limit.config.rate=4MiB"},
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.Graph(pipeline.DefaultRegistry)
	if err != nil {
		t.Fatal(err)
	}
	if d := g.Describe(); !strings.Contains(d, "limit  throttle.tap") || !strings.Contains(d, "(ordered bytes)  -> ordered bytes") {
		t.Fatalf("wiring:\n%s", d)
	}
	client, header, err := httpx.NewClient(cfg.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	res, err := httpx.Probe(t.Context(), client, header, cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g.Run(t.Context(), pipeline.RunOptions{Resource: res}); err != nil {
		t.Fatal(err)
	}
	if elapsed, lower := time.Since(start), 125*time.Millisecond; elapsed < lower {
		t.Fatalf("512KiB at 4MiB/s took %v, want at least %v", elapsed, lower)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("%s: %d bytes with another sha256 than the %d served", out, len(got), len(data))
	}
}

// A throttle between a source and a sink: 64 KiB at 256 KiB/s take at least
// a quarter of a second, and arrive intact and in order.
func Example() {
	reg := pipeline.NewRegistry()
	pipeline.MustRegister(reg, customstage.Def)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "zeros.source", Consumes: pipeline.None, Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(8 << 10)
				for off := int64(0); off < 64<<10; off += 8 << 10 {
					c := pool.Get(off)
					clear(c.Data)
					if err := edges.Send(ctx, c); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	var total int64
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "count.sink", Consumes: pipeline.OrderedBytes, Produces: pipeline.None,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for c := range edges.Chunks {
					total += int64(len(c.Data))
					c.Release()
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "zeros.source"},
		{ID: "limit", Type: "throttle.tap", Inputs: []string{"src"}, Config: &customstage.Config{Rate: 256 << 10}},
		{ID: "count", Type: "count.sink", Inputs: []string{"limit"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	start := time.Now()
	err = g.Run(context.Background(), pipeline.RunOptions{})
	fmt.Println(err, pipeline.ByteSize(total), time.Since(start) >= 250*time.Millisecond)
	// Output:
	// <nil> 64KiB true
}
