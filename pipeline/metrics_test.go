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
