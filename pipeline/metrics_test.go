package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// gateWait bounds each wait of a gatedSink, so that a broken run fails its
// assertions instead of hanging.
const gateWait = 10 * time.Second

// gatedSink returns a sink that holds its input queue full, whatever the
// scheduler does: it takes nothing until the stage src has sent its whole
// output (*want chunks in all runs, read from m; perRun in this one), and
// then, before each chunk, waits
// until the queue is full again (or fewer chunks than it holds are still to
// come) and works 2ms with it full. src's output must fit in the queues
// between them, so that src is done early and the stage in front of the
// sink always has a chunk to send into the full queue: it blocks on (nearly)
// every send, where a sink that only slept blocked no one on a loaded
// machine whose producers were slower than the sleep (#10.12). With recv,
// the sink takes its chunks with IO.Recv, which then never waits: its busy
// time is all of its run.
func gatedSink(typ string, m *pipeline.Metrics, src string, want *int64, perRun int64, recv bool) pipeline.Def[struct{}] {
	return pipeline.Def[struct{}]{
		Type: typ, Consumes: pipeline.Bytes, Produces: pipeline.None,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				deadline := time.Now().Add(gateWait)
				for time.Now().Before(deadline) {
					if s, _ := m.Snapshot().Stage(src); s.ChunksSent >= *want {
						break
					}
					time.Sleep(100 * time.Microsecond)
				}
				for left := perRun; ; left-- {
					deadline := time.Now().Add(gateWait)
					for left >= int64(cap(edges.Chunks)) && len(edges.Chunks) < cap(edges.Chunks) && time.Now().Before(deadline) {
						time.Sleep(100 * time.Microsecond)
					}
					time.Sleep(2 * time.Millisecond)
					var c pipeline.Chunk
					var ok bool
					var err error
					if recv {
						c, ok, err = edges.Recv(ctx)
					} else {
						c, ok = <-edges.Chunks
					}
					if !ok {
						return err
					}
					c.Release()
				}
			}), nil
		},
	}
}

// TestMetricsCountBytesBlockingAndQueueFill: a sink that holds its queue
// full shows a full queue, blocks the stage in front of it, and is the
// bottleneck.
func TestMetricsCountBytesBlockingAndQueueFill(t *testing.T) {
	reg, _ := newRegistry(t)
	m := pipeline.NewMetrics()
	m.Interval = time.Millisecond
	const size, chunk = 1 << 20, 64 << 10
	want := int64(size / chunk) // 16 chunks fit in pass's queue of 32
	pipeline.MustRegister(reg, gatedSink("test.slow", m, "src", &want, size/chunk, false))
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Size: size, Chunk: chunk}},
		{ID: "pass", Type: "test.pass", Inputs: []string{"src"}, Queue: 32},
		{ID: "slow", Type: "test.slow", Inputs: []string{"pass"}, Queue: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
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
	want += size / chunk
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
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for i := range int64(10) {
					if err := edges.SendRange(ctx, pipeline.Range{Start: i, End: i + 1}); err != nil {
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
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				// Hold the queue full for a while before the first
				// receive, so that the source's next send blocks even
				// when it ran late.
				deadline := time.Now().Add(gateWait)
				for len(edges.Ranges) < cap(edges.Ranges) && time.Now().Before(deadline) {
					time.Sleep(100 * time.Microsecond)
				}
				time.Sleep(20 * time.Millisecond)
				for range edges.Ranges {
					time.Sleep(time.Millisecond)
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "split", Type: "test.ranges"},
		{ID: "take", Type: "test.rangesink", Inputs: []string{"split"}, Queue: 2}, // fewer than the 10 ranges sent
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

// recvPass takes its input with IO.Recv, so the metrics know how long it
// waited for it, and hands each chunk on at once.
var (
	recvPass = pipeline.Def[struct{}]{
		Type: "test.recvpass", Consumes: pipeline.Bytes, Produces: pipeline.Bytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for {
					c, ok, err := edges.Recv(ctx)
					if !ok {
						return err
					}
					if err := edges.Send(ctx, c); err != nil {
						return err
					}
				}
			}), nil
		},
	}
)

// TestMetricsBusyTime: a sink that works on every chunk (here: holds its
// queue full, so that its Recv never waits) is busy nearly all the run, and
// the stage feeding it mostly waits to send. A stage that receives from its
// channel itself has no known busy time.
func TestMetricsBusyTime(t *testing.T) {
	reg, _ := newRegistry(t)
	m := pipeline.NewMetrics()
	const size, chunk = 1 << 20, 64 << 10
	want := int64(size / chunk) // 16 chunks fit in the queues of 32
	pipeline.MustRegister(reg, recvPass)
	pipeline.MustRegister(reg, gatedSink("test.recvslow", m, "src", &want, size/chunk, true))
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Size: size, Chunk: chunk}},
		{ID: "plain", Type: "test.pass", Inputs: []string{"src"}, Queue: 32},
		{ID: "pass", Type: "test.recvpass", Inputs: []string{"plain"}, Queue: 32},
		{ID: "slow", Type: "test.recvslow", Inputs: []string{"pass"}, Queue: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
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
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			pool := env.Buffers.Pool(64 << 10)
			for i := range int64(32) {
				time.Sleep(2 * time.Millisecond)
				if err := edges.Send(ctx, pool.Get(i*64<<10)); err != nil {
					return err
				}
			}
			return nil
		}), nil
	},
}

// TestMetricsInputWait: the stage after a slow source mostly waits for
// input, and Recv counts that wait, so the stage is not busy. The queue
// after it holds all 32 chunks, so it never waits to send: on a loaded
// machine a collecting sink that fell behind made it wait to send more
// than for input (#10.12), which is not what this measures.
func TestMetricsInputWait(t *testing.T) {
	reg, _ := newRegistry(t)
	pipeline.MustRegister(reg, slowGen)
	pipeline.MustRegister(reg, recvPass)
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.slowgen"},
		{ID: "pass", Type: "test.recvpass", Inputs: []string{"src"}},
		{ID: "out", Type: "test.collect", Inputs: []string{"pass"}, Queue: 64},
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
	if pass.BlockedSends != 0 || pass.SendBlocked != 0 {
		t.Errorf("pass waited %v to send %d times into a queue that holds every chunk", pass.SendBlocked, pass.BlockedSends)
	}
	if !pass.BusyKnown || pass.BusyShare > 0.3 || pass.InputWait < pass.Ran/2 {
		t.Errorf("the stage after a slow source: busy %.2f, input wait %v of %v; want mostly waiting for input", pass.BusyShare, pass.InputWait, pass.Ran)
	}
}
