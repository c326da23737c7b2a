package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// slowSink releases each chunk after a pause, so the queue in front of it
// fills up and its producer blocks.
var slowSink = pipeline.Def[struct{}]{
	Type: "test.slow", Consumes: pipeline.Bytes, Produces: pipeline.None,
	New: func(struct{}) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
			for c := range io.Chunks {
				time.Sleep(2 * time.Millisecond)
				c.Release()
			}
			return nil
		}), nil
	},
}

func TestMetricsCountBytesBlockingAndQueueFill(t *testing.T) {
	reg, _ := newRegistry(t)
	pipeline.MustRegister(reg, slowSink)
	const size, chunk = 4 << 20, 64 << 10
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Size: size, Chunk: chunk}},
		{ID: "pass", Type: "test.pass", Inputs: []string{"src"}},
		{ID: "slow", Type: "test.slow", Inputs: []string{"pass"}, Queue: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := pipeline.NewMetrics()
	m.Interval = time.Millisecond
	if err := g.Run(context.Background(), pipeline.RunOptions{Log: zerolog.Nop(), Metrics: m}); err != nil {
		t.Fatal(err)
	}
	snap := m.Snapshot()
	if len(snap.Stages) != 3 || snap.Elapsed <= 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	src, _ := snap.Stage("src")
	pass, _ := snap.Stage("pass")
	slow, _ := snap.Stage("slow")
	if src.BytesSent != size || pass.BytesSent != size || slow.BytesSent != 0 {
		t.Errorf("bytes sent: src %d pass %d slow %d, want %d %d 0", src.BytesSent, pass.BytesSent, slow.BytesSent, size, size)
	}
	if src.ChunksSent != size/chunk || src.QueueCap != 0 || src.QueueSamples != 0 || src.Output != "pass" {
		t.Errorf("src %+v", src)
	}
	if slow.QueueCap != 4 || slow.QueueSamples == 0 || slow.QueueFill < 0.5 {
		t.Errorf("the slow sink's queue: %+v, want mostly full", slow)
	}
	if pass.SendBlocked <= 0 || pass.BlockedSends == 0 {
		t.Errorf("pass never blocked in front of the slow sink: %+v", pass)
	}
	if got := snap.Bottleneck(); got != "slow" {
		t.Errorf("bottleneck %q, want slow", got)
	}

	// A second run adds up.
	if err := g.Run(context.Background(), pipeline.RunOptions{Log: zerolog.Nop(), Metrics: m}); err != nil {
		t.Fatal(err)
	}
	if src2, _ := m.Snapshot().Stage("src"); src2.BytesSent != 2*size {
		t.Errorf("after two runs src sent %d, want %d", src2.BytesSent, 2*size)
	}
}

func TestMetricsBottleneckIsTheByteProducerWhenQueuesStayEmpty(t *testing.T) {
	snap := pipeline.MetricsSnapshot{Stages: []pipeline.StageMetrics{
		{Stage: "split", Output: "fetch", Consumes: "nothing", Produces: "ranges"},
		{Stage: "fetch", Inputs: []string{"split"}, Output: "write", Consumes: "ranges", Produces: "bytes", QueueCap: 1, QueueFill: 0.2},
		{Stage: "write", Inputs: []string{"fetch"}, Consumes: "bytes", Produces: "nothing", QueueCap: 8, QueueFill: 0.1, QueueSamples: 10},
	}}
	if got := snap.Bottleneck(); got != "fetch" {
		t.Fatalf("bottleneck %q, want the reader that makes the bytes", got)
	}
}

func TestMetricsCountRanges(t *testing.T) {
	reg := pipeline.NewRegistry()
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "test.ranges", Produces: pipeline.Ranges,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
				for i := range int64(10) {
					if err := io.SendRange(ctx, pipeline.Range{Start: i, End: i + 1}); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "test.rangesink", Consumes: pipeline.Ranges,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
				for range io.Ranges {
					time.Sleep(time.Millisecond)
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "split", Type: "test.ranges"},
		{ID: "take", Type: "test.rangesink", Inputs: []string{"split"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := pipeline.NewMetrics()
	if err := g.Run(context.Background(), pipeline.RunOptions{Log: zerolog.Nop(), Metrics: m}); err != nil {
		t.Fatal(err)
	}
	if split, _ := m.Snapshot().Stage("split"); split.RangesSent != 10 || split.BlockedSends == 0 {
		t.Fatalf("split %+v", split)
	}
}

// recvPass and recvSlow take their input with IO.Recv, so the metrics know
// how long they waited for it: recvSlow pauses on every chunk, recvPass
// hands each one on at once.
var (
	recvPass = pipeline.Def[struct{}]{
		Type: "test.recvpass", Consumes: pipeline.Bytes, Produces: pipeline.Bytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
				for {
					c, ok, err := io.Recv(ctx)
					if !ok {
						return err
					}
					if err := io.Send(ctx, c); err != nil {
						return err
					}
				}
			}), nil
		},
	}
	recvSlow = pipeline.Def[struct{}]{
		Type: "test.recvslow", Consumes: pipeline.Bytes, Produces: pipeline.None,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
				for {
					c, ok, err := io.Recv(ctx)
					if !ok {
						return err
					}
					time.Sleep(2 * time.Millisecond)
					c.Release()
				}
			}), nil
		},
	}
)

// TestMetricsBusyTime: a sink that works on every chunk is busy nearly all
// the run, and the stage feeding it mostly waits to send. A stage that
// receives from its channel itself has no known busy time.
func TestMetricsBusyTime(t *testing.T) {
	reg, _ := newRegistry(t)
	pipeline.MustRegister(reg, recvPass)
	pipeline.MustRegister(reg, recvSlow)
	const size, chunk = 4 << 20, 64 << 10
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Size: size, Chunk: chunk}},
		{ID: "plain", Type: "test.pass", Inputs: []string{"src"}},
		{ID: "pass", Type: "test.recvpass", Inputs: []string{"plain"}},
		{ID: "slow", Type: "test.recvslow", Inputs: []string{"pass"}, Queue: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := pipeline.NewMetrics()
	if err := g.Run(context.Background(), pipeline.RunOptions{Log: zerolog.Nop(), Metrics: m}); err != nil {
		t.Fatal(err)
	}
	snap := m.Snapshot()
	src, _ := snap.Stage("src")
	plain, _ := snap.Stage("plain")
	pass, _ := snap.Stage("pass")
	slow, _ := snap.Stage("slow")
	for _, s := range []pipeline.StageMetrics{src, plain, pass, slow} {
		t.Logf("%-5s busy %v (%.0f%%, known %v), input wait %v, send blocked %v", s.Stage, s.Busy, 100*s.BusyShare, s.BusyKnown, s.InputWait, s.SendBlocked)
	}
	if !slow.BusyKnown || slow.BusyShare < 0.7 {
		t.Errorf("the slow sink: busy %.2f (known %v), want most of the run", slow.BusyShare, slow.BusyKnown)
	}
	if !pass.BusyKnown || pass.BusyShare > 0.5 || pass.SendBlocked <= 0 {
		t.Errorf("the stage before the slow sink: busy %.2f (known %v), send blocked %v; want mostly blocked", pass.BusyShare, pass.BusyKnown, pass.SendBlocked)
	}
	if !src.BusyKnown {
		t.Error("a source's busy time is always known")
	}
	if plain.BusyKnown || plain.Busy != 0 {
		t.Errorf("a stage without Recv: busy %v, known %v; want unknown", plain.Busy, plain.BusyKnown)
	}
	if slow.Busy+slow.InputWait+slow.SendBlocked != slow.Ran || slow.Ran > snap.Elapsed {
		t.Errorf("busy %v + wait %v + blocked %v != ran %v, or ran longer than the run %v", slow.Busy, slow.InputWait, slow.SendBlocked, slow.Ran, snap.Elapsed)
	}
}

// slowGen sends 32 chunks of 64 KiB, pausing 2ms before each.
var slowGen = pipeline.Def[struct{}]{
	Type: "test.slowgen", Produces: pipeline.OrderedBytes,
	New: func(struct{}) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
			pool := env.Buffers.Pool(64 << 10)
			for i := range int64(32) {
				time.Sleep(2 * time.Millisecond)
				if err := io.Send(ctx, pool.Get(i*64<<10)); err != nil {
					return err
				}
			}
			return nil
		}), nil
	},
}

// TestMetricsInputWait: the stage after a slow source mostly waits for
// input, and Recv counts that wait, so the stage is not busy.
func TestMetricsInputWait(t *testing.T) {
	reg, _ := newRegistry(t)
	pipeline.MustRegister(reg, slowGen)
	pipeline.MustRegister(reg, recvPass)
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.slowgen"},
		{ID: "pass", Type: "test.recvpass", Inputs: []string{"src"}},
		{ID: "out", Type: "test.collect", Inputs: []string{"pass"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := pipeline.NewMetrics()
	if err := g.Run(context.Background(), pipeline.RunOptions{Log: zerolog.Nop(), Metrics: m}); err != nil {
		t.Fatal(err)
	}
	pass, _ := m.Snapshot().Stage("pass")
	t.Logf("pass: busy %v (%.0f%%), input wait %v, ran %v", pass.Busy, 100*pass.BusyShare, pass.InputWait, pass.Ran)
	if !pass.BusyKnown || pass.BusyShare > 0.3 || pass.InputWait < pass.Ran/2 {
		t.Errorf("the stage after a slow source: busy %.2f, input wait %v of %v; want mostly waiting for input", pass.BusyShare, pass.InputWait, pass.Ran)
	}
}
