package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// progressLine is one JSON log line of a progress.tap.
type progressLine struct {
	Level   string   `json:"level"`
	Stage   string   `json:"stage"`
	Message string   `json:"message"`
	Bytes   int64    `json:"bytes"`
	Total   *int64   `json:"total"`
	Percent *float64 `json:"percent"`
	Rate    *float64 `json:"rate"`
	ETA     *float64 `json:"eta_s"`
	Elapsed *float64 `json:"elapsed_s"`
}

func parseProgress(t *testing.T, logs string) (ticks []progressLine, final progressLine) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var p progressLine
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if p.Stage != "progress" {
			continue
		}
		if p.Message == "progress" {
			ticks = append(ticks, p)
		} else {
			final = p
		}
	}
	return ticks, final
}

func progressNodes(size int64, workers int, interval time.Duration, sink *memSinkConfig) []pipeline.Node {
	return []pipeline.Node{
		{ID: "src", Type: "mem.source", Config: &memSourceConfig{Size: size, Chunk: 4096}},
		{ID: "progress", Type: "progress.tap", Inputs: []string{"src"}, Workers: workers, Config: &ProgressConfig{Interval: interval}},
		{ID: "sink", Type: "mem.sink", Inputs: []string{"progress"}, Config: sink},
	}
}

func TestProgressPassesThroughAndLogs(t *testing.T) {
	memNoLeaks(t)
	const size = 40 * 4096
	var tap *ProgressTap
	reg := memRegistry(t, memCapture(progressDef, &tap))
	logs := &memSyncWriter{}
	out := &memOutput{}
	// 40 chunks at 2ms each take about 80ms: several 10ms intervals. Short
	// queues keep the chunks from all being queued ahead at once.
	nodes := progressNodes(size, 1, 10*time.Millisecond, &memSinkConfig{Out: out, Ordered: true, Delay: 2 * time.Millisecond})
	nodes[1].Queue, nodes[2].Queue = 1, 1
	start := time.Now()
	_, _, err := memRunResource(t, t.Context(), reg, &pipeline.Resource{Size: size, AcceptRanges: true}, zerolog.New(logs), nodes...)
	elapsed := time.Since(start).Seconds()
	if err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), size)

	ticks, final := parseProgress(t, logs.String())
	if len(ticks) == 0 {
		t.Fatalf("no progress lines in %v:\n%s", elapsed, logs)
	}
	var last int64
	for _, p := range ticks {
		if p.Level != "info" || p.Bytes < last || p.Total == nil || *p.Total != size ||
			p.Percent == nil || *p.Percent < 0 || *p.Percent > 100 || p.Rate == nil || *p.Rate < 0 {
			t.Errorf("bad progress line %+v", p)
		}
		last = p.Bytes
	}

	if final.Message != "transfer complete" {
		t.Fatalf("final line %+v, want transfer complete", final)
	}
	if final.Bytes != size || final.Total == nil || *final.Total != size || final.Percent == nil || *final.Percent != 100 {
		t.Errorf("final line %+v, want %d of %d bytes, 100%%", final, size, size)
	}
	if final.Elapsed == nil || *final.Elapsed <= 0 || *final.Elapsed > elapsed {
		t.Errorf("final elapsed %v, want in (0, %v]", final.Elapsed, elapsed)
	}
	if final.Rate == nil || math.Abs(*final.Rate - size / *final.Elapsed) > 1 {
		t.Errorf("final rate %v, want bytes/elapsed = %v", final.Rate, size / *final.Elapsed)
	}
	if p := tap.Progress(); p.Done != size || p.Total != size {
		t.Errorf("Progress() = %+v; want done and total %d", p, size)
	}
}

// Replicas share one count.
func TestProgressReplicasShareCount(t *testing.T) {
	memNoLeaks(t)
	const size = 1 << 20
	var tap *ProgressTap
	reg := memRegistry(t, memCapture(progressDef, &tap))
	out := &memOutput{}
	if _, _, err := memRun(t, t.Context(), reg, size, progressNodes(size, 3, time.Second, &memSinkConfig{Out: out})...); err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), size)
	if done := tap.Progress().Done; done != size {
		t.Errorf("counted %d bytes, want %d", done, size)
	}
}

func TestProgressUnknownSizeAndFailure(t *testing.T) {
	memNoLeaks(t)
	logs := &memSyncWriter{}
	boom := errors.New("disk full")
	nodes := progressNodes(10*4096, 1, time.Second, &memSinkConfig{Out: &memOutput{}, FailAfter: 3, Fail: boom})
	_, _, err := memRunResource(t, t.Context(), memRegistry(t), &pipeline.Resource{Size: -1}, zerolog.New(logs), nodes...)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	_, final := parseProgress(t, logs.String())
	if final.Message != "transfer stopped" || final.Total != nil || final.Percent != nil || final.Bytes < 3*4096 {
		t.Errorf("final line %+v, want a stop after at least 3 chunks, without total or percent", final)
	}
}

// The rate is an EWMA over intervals and the eta follows from it.
func TestProgressRate(t *testing.T) {
	logs := &memSyncWriter{}
	env := &pipeline.Env{Stage: "progress", Resource: &pipeline.Resource{Size: 10000}, Log: zerolog.New(logs).With().Str("stage", "progress").Logger()}
	p := newProgressTap(time.Second)
	if err := p.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t0 := p.lastTime
	p.done.Add(1000)
	p.report(env, t0.Add(time.Second)) // 1000 B/s, seeds the average
	p.done.Add(2000)
	p.report(env, t0.Add(2*time.Second)) // 2000 B/s: 0.3*2000 + 0.7*1000
	ticks, _ := parseProgress(t, logs.String())
	if len(ticks) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(ticks), logs)
	}
	for i, want := range []struct{ bytes, rate, eta, percent float64 }{
		{1000, 1000, 9, 10},
		{3000, 1300, 7000.0 / 1300, 30},
	} {
		got := ticks[i]
		if float64(got.Bytes) != want.bytes || !progressNear(got.Rate, want.rate) || !progressNear(got.ETA, want.eta) || !progressNear(got.Percent, want.percent) {
			t.Errorf("line %d: %+v (rate %v eta %v), want %+v", i, got, progressDeref(got.Rate), progressDeref(got.ETA), want)
		}
	}
}

func progressNear(got *float64, want float64) bool { return got != nil && math.Abs(*got-want) < 1e-6 }

func progressDeref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

func TestProgressConfig(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if _, err := progressDef.New(ProgressConfig{Interval: d}); err == nil || !strings.Contains(err.Error(), "interval") {
			t.Errorf("interval %v: error %v, want one naming interval", d, err)
		}
	}
}

// BenchmarkProgress passes 32KiB chunks through the tap; the graph runs once
// for all b.N chunks.
func BenchmarkProgress(b *testing.B) {
	benchChain(b, int64(b.N), 32<<10, pipeline.Node{ID: "progress", Type: "progress.tap"})
}

func ExampleProgressTap() {
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		panic(err)
	}
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "zeros",
		Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(1000)
				for i := range int64(5) {
					if err := edges.Send(ctx, pool.Get(i*1000)); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "drop",
		Consumes: pipeline.Bytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for c := range edges.Chunks {
					c.Release()
				}
				return nil
			}), nil
		},
	})
	// Keep the tap to read its counters, as a progress bar would.
	var tap *ProgressTap
	d := progressDef
	d.New = func(c ProgressConfig) (pipeline.Stage, error) {
		s, err := progressDef.New(c)
		tap, _ = s.(*ProgressTap)
		return s, err
	}
	d.Type = "progress.kept"
	pipeline.MustRegister(reg, d)

	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "zeros"},
		{ID: "progress", Type: "progress.kept", Inputs: []string{"src"}},
		{ID: "drop", Type: "drop", Inputs: []string{"progress"}},
	})
	if err != nil {
		panic(err)
	}
	err = g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 5000}, Log: zerolog.Nop()})
	p := tap.Progress()
	done, total := p.Done, p.Total
	fmt.Printf("%d of %d bytes, error: %v\n", done, total, err)
	// Output:
	// 5000 of 5000 bytes, error: <nil>
}
