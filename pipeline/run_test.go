package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runGraph(t *testing.T, ctx context.Context, reg *pipeline.Registry, nodes []pipeline.Node) (*pipeline.Buffers, error) {
	t.Helper()
	g, err := pipeline.Build(reg, nodes)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	bufs := pipeline.NewBuffers()
	err = g.Run(ctx, pipeline.RunOptions{Resource: &pipeline.Resource{Size: -1}, Buffers: bufs, Log: zerolog.Nop()})
	if n := bufs.InUse(); n != 0 {
		t.Errorf("%d bytes of buffers not released after the run", n)
	}
	if peak, bound := bufs.Peak(), int64(g.MemoryBound()); peak > bound {
		t.Errorf("peak buffer memory %d exceeds the bound %d", peak, bound)
	}
	return bufs, err
}

func checkPattern(t *testing.T, got []byte, size int64) {
	t.Helper()
	if int64(len(got)) != size {
		t.Fatalf("got %d bytes, want %d", len(got), size)
	}
	for i, b := range got {
		if b != pattern(int64(i)) {
			t.Fatalf("byte %d is %#x, want %#x", i, b, pattern(int64(i)))
		}
	}
}

func TestRunMovesEveryByteThroughReplicas(t *testing.T) {
	for _, size := range []int64{0, 1, 64<<10 - 1, 1<<20 + 17} {
		reg, sink := newRegistry(t)
		_, err := runGraph(t, context.Background(), reg, []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: &genConfig{Size: size, Chunk: 64 << 10}},
			{ID: "mid", Type: "test.pass", Inputs: []string{"src"}, Workers: 3},
			{ID: "out", Type: "test.collect", Inputs: []string{"mid"}},
		})
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		checkPattern(t, (*sink).got, size)
		if !(*sink).committed || (*sink).finished != 1 || (*sink).finishErr != nil {
			t.Fatalf("size %d: committed=%v finished=%d finishErr=%v", size, (*sink).committed, (*sink).finished, (*sink).finishErr)
		}
	}
}

func TestRunFirstErrorCancelsEverything(t *testing.T) {
	reg, sink := newRegistry(t)
	_, err := runGraph(t, context.Background(), reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Forever: true, Chunk: 4 << 10}},
		{ID: "mid", Type: "test.pass", Inputs: []string{"src"}, Workers: 2},
		{ID: "out", Type: "test.collect", Inputs: []string{"mid"}, Config: &collectConfig{FailAt: 1 << 20}},
	})
	var se *pipeline.StageError
	if !errors.As(err, &se) || se.Stage != "out" || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v, want the sink's error naming stage out", err)
	}
	if (*sink).committed {
		t.Fatal("committed after a failure")
	}
	if (*sink).finishErr == nil {
		t.Fatal("Finish was not told about the failure")
	}
}

func TestRunSourceErrorIsNotCommitted(t *testing.T) {
	reg, sink := newRegistry(t)
	_, err := runGraph(t, context.Background(), reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Size: 1 << 20, Chunk: 4 << 10, FailAt: 256 << 10}},
		{ID: "out", Type: "test.collect", Inputs: []string{"src"}, Config: &collectConfig{Ordered: true}},
	})
	if err == nil || !strings.Contains(err.Error(), "src: source gave up") {
		t.Fatalf("err = %v", err)
	}
	if (*sink).committed {
		t.Fatal("the sink committed although its source failed")
	}
	if got := len((*sink).got); got != 256<<10 {
		t.Fatalf("sink got %d bytes before the failure, want all %d sent", got, 256<<10)
	}
}

func TestRunPanicBecomesErrorNamingStage(t *testing.T) {
	reg, _ := newRegistry(t)
	_, err := runGraph(t, context.Background(), reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Size: 1 << 20, Chunk: 4 << 10}},
		{ID: "bad", Type: "test.pass", Inputs: []string{"src"}, Config: &passConfig{PanicAt: 8 << 10}},
		{ID: "out", Type: "test.collect", Inputs: []string{"bad"}},
	})
	var pe *pipeline.PanicError
	var se *pipeline.StageError
	if !errors.As(err, &pe) || !errors.As(err, &se) || se.Stage != "bad" || pe.Value != "boom" {
		t.Fatalf("err = %v, want a panic error from stage bad", err)
	}
	if len(pe.Stack) == 0 {
		t.Fatal("panic error has no stack")
	}
}

func TestRunCancelledFromOutside(t *testing.T) {
	reg, sink := newRegistry(t)
	cause := errors.New("interrupted by test")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	_, err := runGraph(t, ctx, reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Forever: true, Chunk: 4 << 10}},
		{ID: "out", Type: "test.collect", Inputs: []string{"src"}, Config: &collectConfig{Ordered: true}},
	})
	if !errors.Is(err, cause) {
		t.Fatalf("err = %v, want the cancellation cause", err)
	}
	if (*sink).committed {
		t.Fatal("committed after cancellation")
	}
}

// A sink that stops early without error must not leave producers blocked.
func TestRunConsumerReturningEarlyDrainsProducers(t *testing.T) {
	reg := pipeline.NewRegistry()
	pipeline.MustRegister(reg, genSource)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "test.quitter", Consumes: pipeline.Bytes, Produces: pipeline.None,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				(<-edges.Chunks).Release()
				return nil
			}), nil
		},
	})
	done := make(chan error, 1)
	go func() {
		_, err := runGraph(t, context.Background(), reg, []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: &genConfig{Size: 4 << 20, Chunk: 4 << 10}},
			{ID: "out", Type: "test.quitter", Inputs: []string{"src"}},
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not end: producers left blocked")
	}
}

func TestChunkReleasedTwicePanics(t *testing.T) {
	bufs := pipeline.NewBuffers()
	c := bufs.Pool(1024).Get(0)
	c.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("second release did not panic")
		}
		if bufs.InUse() != 0 {
			t.Fatalf("in use %d", bufs.InUse())
		}
	}()
	c.Release()
}

// Pooled buffers start on a 4 KiB boundary, which O_DIRECT writes of them
// need.
func TestPoolBuffersAreAligned(t *testing.T) {
	bufs := pipeline.NewBuffers()
	for _, size := range []int{4096, 64<<10 + 1, 256 << 10, 16<<20 + 3} {
		var held []pipeline.Chunk
		for range 4 {
			c := bufs.Pool(size).Get(0)
			if addr := uintptr(unsafe.Pointer(&c.Data[0])); addr%4096 != 0 {
				t.Errorf("%d-byte buffer at %#x, not 4 KiB aligned", size, addr)
			}
			if len(c.Data) != size || c.BufferSize() != size {
				t.Errorf("%d-byte pool gave len %d, BufferSize %d", size, len(c.Data), c.BufferSize())
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Release()
		}
	}
}

func TestPoolReuseDoesNotAllocate(t *testing.T) {
	pool := pipeline.NewBuffers().Pool(64 << 10)
	pool.Get(0).Release()
	allocs := testing.AllocsPerRun(1000, func() { pool.Get(0).Release() })
	if allocs > 0.01 {
		t.Fatalf("%.2f allocations per Get/Release", allocs)
	}
}

func TestWindowLetsTheFrontierRangeThroughAndBlocksTheRest(t *testing.T) {
	w := pipeline.NewWindow(4)
	ctx := context.Background()
	// A range starting at the frontier goes even when larger than the window.
	if err := w.Acquire(ctx, pipeline.Range{Start: 0, End: 10}); err != nil {
		t.Fatal(err)
	}
	blocked, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := w.Acquire(blocked, pipeline.Range{Start: 10, End: 14}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("range beyond the window acquired: %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- w.Acquire(ctx, pipeline.Range{Start: 10, End: 14}) }()
	w.Advance(10)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Advance did not wake the waiter")
	}
}

func BenchmarkRunChunkPath(b *testing.B) {
	reg := pipeline.NewRegistry()
	pipeline.MustRegister(reg, genSource)
	pipeline.MustRegister(reg, passThrough)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "test.discard", Consumes: pipeline.Bytes, Produces: pipeline.None,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for c := range edges.Chunks {
					c.Release()
				}
				return nil
			}), nil
		},
	})
	const size = 64 << 20
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.gen", Config: &genConfig{Size: size, Chunk: 256 << 10}},
		{ID: "a", Type: "test.pass", Inputs: []string{"src"}},
		{ID: "b", Type: "test.pass", Inputs: []string{"a"}},
		{ID: "out", Type: "test.discard", Inputs: []string{"b"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Run(context.Background(), pipeline.RunOptions{Log: zerolog.Nop()}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSharedChunkReturnsToPoolAfterLastRelease(t *testing.T) {
	bufs := pipeline.NewBuffers()
	c := bufs.Pool(1024).Get(0)
	shared := c.Share()
	c.Release()
	if bufs.InUse() != 1024 {
		t.Fatalf("buffer returned while still shared: in use %d", bufs.InUse())
	}
	shared.Release()
	if bufs.InUse() != 0 {
		t.Fatalf("in use %d after the last release", bufs.InUse())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a third release did not panic")
		}
	}()
	shared.Release()
}

func TestRangeSetMergesAndReportsMissing(t *testing.T) {
	var s pipeline.RangeSet
	for _, r := range []pipeline.Range{{10, 20}, {30, 40}, {20, 25}, {0, 5}, {38, 50}, {60, 60}} {
		s.Add(r)
	}
	want := []pipeline.Range{{0, 5}, {10, 25}, {30, 50}}
	if got := s.Ranges(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ranges %v, want %v", got, want)
	}
	if got := s.Missing(55); fmt.Sprint(got) != fmt.Sprint([]pipeline.Range{{5, 10}, {25, 30}, {50, 55}}) {
		t.Fatalf("missing %v", got)
	}
	if s.Len() != 40 || s.PrefixEnd() != 5 || s.NextMissing(12) != 25 || s.NextMissing(26) != 26 {
		t.Fatalf("len %d prefix %d next %d/%d", s.Len(), s.PrefixEnd(), s.NextMissing(12), s.NextMissing(26))
	}
	if !s.Contains(pipeline.Range{12, 20}) || s.Contains(pipeline.Range{20, 31}) {
		t.Fatal("contains")
	}
	s.Add(pipeline.Range{4, 31})
	if got := s.Ranges(); fmt.Sprint(got) != fmt.Sprint([]pipeline.Range{{0, 50}}) {
		t.Fatalf("after bridging add: %v", got)
	}
}
