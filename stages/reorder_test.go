package stages

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// reorderRangedNodes is the ranged topology with test readers: a splitter of
// source type splitType, 4 readers of 256KiB chunks, a reorder heap and an
// ordered sink.
func reorderRangedNodes(splitType string, split any, reader *memReaderConfig, window pipeline.ByteSize, out *memOutput) []pipeline.Node {
	return []pipeline.Node{
		{ID: "split", Type: splitType, Config: split},
		{ID: "read", Type: "mem.reader", Inputs: []string{"split"}, Workers: 4, Config: reader},
		{ID: "order", Type: "reorder.heap", Inputs: []string{"read"}, Config: &ReorderConfig{Window: window}},
		{ID: "sink", Type: "mem.sink", Inputs: []string{"order"}, Config: &memSinkConfig{Out: out, Ordered: true}},
	}
}

// The issue's test: the reader of the first range is the slowest by far, yet
// the heap never holds more than its window and the run stays within the
// memory bound that validate prints, because the splitter hands out a range
// only once it fits the window.
func TestReorderSlowFirstRangeStaysInWindow(t *testing.T) {
	memNoLeaks(t)
	const (
		size   = 16 << 20
		window = 4 << 20
	)
	var heapStage *ReorderHeap
	reg := memRegistry(t, memCapture(reorderDef, &heapStage))
	reader := &memReaderConfig{
		Chunk: 256 << 10,
		Before: func(ctx context.Context, r pipeline.Range) error {
			if r.Start != 0 {
				return nil
			}
			// Hold the first range until the heap holds the three after
			// it (bounded: then the assertion below fails). A fixed sleep
			// was too short for a loaded machine to read them (#10.12).
			for deadline := time.Now().Add(10 * time.Second); heapStage.Stats().Held < 3<<20 && time.Now().Before(deadline); {
				if err := memSleep(ctx, time.Millisecond); err != nil {
					return err
				}
			}
			return nil
		},
	}
	out := &memOutput{}
	nodes := reorderRangedNodes("range.splitter", &SplitterConfig{Piece: 1 << 20}, reader, window, out)
	g, bufs, err := memRun(t, t.Context(), reg, size, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), size)

	stats := heapStage.Stats()
	if stats.PeakHeld > window {
		t.Errorf("heap held up to %v, more than its window %v", pipeline.ByteSize(stats.PeakHeld), pipeline.ByteSize(window))
	}
	// The three ranges after the slow first one fit the window and are read
	// while it is held: the heap did have to hold them.
	if stats.PeakHeld < 3<<20 {
		t.Errorf("heap held at most %v; the slow first range should have made it hold 3MiB", pipeline.ByteSize(stats.PeakHeld))
	}
	if stats.Held != 0 {
		t.Errorf("heap still holds %d bytes after the run", stats.Held)
	}
	if peak, bound := bufs.Peak(), int64(g.MemoryBound()); peak > bound {
		t.Errorf("peak buffer memory %v exceeds the bound %v", pipeline.ByteSize(peak), pipeline.ByteSize(bound))
	}
	t.Logf("heap peak %v, buffers peak %v, bound %v", pipeline.ByteSize(stats.PeakHeld), pipeline.ByteSize(bufs.Peak()), g.MemoryBound())
}

// The same run with a splitter that does not acquire window credits: the
// heap takes everything that arrives while the first range is stuck, far
// past its window and past the memory bound. This is the flaw of an
// unbounded reorder buffer that the credits fix.
func TestReorderWithoutCreditsExceedsWindow(t *testing.T) {
	memNoLeaks(t)
	const (
		size   = 32 << 20
		piece  = 1 << 20
		window = 4 << 20
	)
	var heapStage *ReorderHeap
	reg := memRegistry(t, memCapture(reorderDef, &heapStage))
	var doneRanges atomic.Int32
	reader := &memReaderConfig{
		Chunk: 256 << 10,
		Before: func(ctx context.Context, r pipeline.Range) error {
			if r.Start != 0 {
				return nil
			}
			// Hold the first range until every other one was read, so the
			// outcome does not depend on timing.
			for deadline := time.Now().Add(10 * time.Second); doneRanges.Load() < size/piece-1; {
				if time.Now().After(deadline) {
					return errors.New("other ranges not read within 10s")
				}
				if err := memSleep(ctx, time.Millisecond); err != nil {
					return err
				}
			}
			return nil
		},
		After: func(pipeline.Range) { doneRanges.Add(1) },
	}
	out := &memOutput{}
	logs := &memSyncWriter{}
	nodes := reorderRangedNodes("mem.ranges", &memRangesConfig{Piece: piece}, reader, window, out)
	g, bufs, err := memRunResource(t, t.Context(), reg, &pipeline.Resource{Size: size, AcceptRanges: true}, zerolog.New(logs), nodes...)
	if err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), size)
	if got := heapStage.Stats().PeakHeld; got <= window {
		t.Errorf("heap held at most %v; without credits it should exceed the window", pipeline.ByteSize(got))
	}
	if bufs.Peak() <= int64(g.MemoryBound()) {
		t.Errorf("buffers peaked at %v, within the bound %v; without credits they should not", pipeline.ByteSize(bufs.Peak()), g.MemoryBound())
	}
	if n := strings.Count(logs.String(), "more than its window"); n != 1 {
		t.Errorf("warned %d times about the window, want once", n)
	}
}

// reorderNodes feeds chunks of spans to a reorder heap and an ordered sink.
func reorderNodes(spans []pipeline.Range, chunk int, then func(context.Context) error, out *memOutput) []pipeline.Node {
	return []pipeline.Node{
		{ID: "src", Type: "mem.source", Config: &memSourceConfig{Spans: spans, Chunk: chunk, Then: then}},
		{ID: "order", Type: "reorder.heap", Inputs: []string{"src"}, Config: &ReorderConfig{Window: 1 << 20}},
		{ID: "sink", Type: "mem.sink", Inputs: []string{"order"}, Config: &memSinkConfig{Out: out, Ordered: true}},
	}
}

func TestReorderOrders(t *testing.T) {
	memNoLeaks(t)
	out := &memOutput{}
	in := memSpans(300, 400, 100, 200, 0, 100, 500, 600, 200, 300, 400, 500)
	if _, _, err := memRun(t, t.Context(), memRegistry(t), 600, reorderNodes(in, 100, nil, out)...); err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), 600)
	for i, c := range out.Chunks() {
		if c.Start != int64(i)*100 {
			t.Errorf("chunk %d at %d, want %d", i, c.Start, i*100)
		}
	}
}

func TestReorderGapAtEnd(t *testing.T) {
	memNoLeaks(t)
	const KiB = 1 << 10
	out := &memOutput{}
	// [1MiB, 1MiB+256KiB) never arrives; three chunks after it are held.
	in := memSpans(0, 1024*KiB, 1280*KiB, 1536*KiB, 1536*KiB, 1792*KiB, 1792*KiB, 2048*KiB)
	_, _, err := memRun(t, t.Context(), memRegistry(t), 2048*KiB, reorderNodes(in, 256*KiB, nil, out)...)
	var gap *GapError
	if !errors.As(err, &gap) {
		t.Fatalf("error %v, want a gap", err)
	}
	if want := "input ended with a gap at offset 1048576 (3 chunks, 768KiB held)"; gap.Error() != want {
		t.Errorf("error %q, want %q", gap.Error(), want)
	}
	// The failure cancels the sink, which may not have taken all of the
	// 1MiB before the gap; it must not have seen anything after it.
	if got := len(out.Bytes()); got > 1024*KiB {
		t.Errorf("sink got %d bytes, more than the 1MiB before the gap", got)
	}
}

func TestReorderDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []pipeline.Range
		want OverlapError
	}{
		{"below the frontier", memSpans(0, 100, 100, 200, 50, 150), OverlapError{Offset: 50, Len: 100, Frontier: 200}},
		{"same chunk twice, held", memSpans(200, 300, 200, 300, 0, 200), OverlapError{Offset: 200, Len: 100, Frontier: 300}},
		{"overlapping held chunks", memSpans(150, 250, 100, 200, 0, 100), OverlapError{Offset: 150, Len: 100, Frontier: 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memNoLeaks(t)
			out := &memOutput{}
			_, _, err := memRun(t, t.Context(), memRegistry(t), 300, reorderNodes(tc.in, 100, nil, out)...)
			var ov *OverlapError
			if !errors.As(err, &ov) {
				t.Fatalf("error %v, want duplicate bytes", err)
			}
			if *ov != tc.want {
				t.Errorf("error %+v, want %+v", *ov, tc.want)
			}
			if !strings.Contains(err.Error(), "duplicate bytes") {
				t.Errorf("error %q does not say duplicate bytes", err)
			}
			// Only bytes before the frontier were emitted, never twice.
			for i, c := range out.Chunks() {
				if i > 0 && c.Start < out.Chunks()[i-1].End {
					t.Errorf("sink got overlapping chunks %v", out.Chunks())
				}
			}
		})
	}
}

// Cancelled while holding chunks, the heap releases them all.
func TestReorderCancelReleasesHeld(t *testing.T) {
	memNoLeaks(t)
	var heapStage *ReorderHeap
	reg := memRegistry(t, memCapture(reorderDef, &heapStage))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	held := make(chan struct{})
	then := func(ctx context.Context) error {
		close(held)
		<-ctx.Done()
		return ctx.Err()
	}
	go func() {
		select {
		case <-held:
		case <-time.After(10 * time.Second):
		}
		// Wait (bounded in time, not in sleeps, which a loaded machine
		// stretches) for the heap to take the chunks, then cancel.
		for deadline := time.Now().Add(10 * time.Second); heapStage.Stats().Held < 300 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	out := &memOutput{}
	_, _, err := memRun(t, ctx, reg, 400, reorderNodes(memSpans(100, 400), 100, then, out)...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want canceled", err)
	}
	if got := heapStage.Stats(); got.PeakHeld != 300 || got.Held != 0 {
		t.Errorf("stats %+v, want 300 bytes held at peak and none at the end", got)
	}
}

// A failing sink stops the heap, which releases what it holds.
func TestReorderSinkFails(t *testing.T) {
	memNoLeaks(t)
	boom := errors.New("disk full")
	nodes := reorderNodes(memSpans(100, 1000, 0, 100), 100, nil, nil)
	nodes[2].Config = &memSinkConfig{Out: &memOutput{}, Ordered: true, FailAfter: 2, Fail: boom}
	_, _, err := memRun(t, t.Context(), memRegistry(t), 1000, nodes...)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
}

func TestReorderConfig(t *testing.T) {
	for _, w := range []pipeline.ByteSize{0, -1} {
		if _, err := reorderDef.New(ReorderConfig{Window: w}); err == nil || !strings.Contains(err.Error(), "window") {
			t.Errorf("window %d: error %v, want one naming window", w, err)
		}
	}
	if got := reorderDef.Memory(reorderDef.Defaults).Window; got != 64<<20 {
		t.Errorf("default window %d, want 64MiB", got)
	}
}

// BenchmarkReorder pushes 256KiB chunks, shuffled within each 4MiB block,
// through the heap into a discarding sink. The graph is built and run once
// for all b.N chunks, so allocs/op is the per-chunk cost plus the run's setup
// spread over b.N.
func BenchmarkReorder(b *testing.B) {
	const (
		chunk = 256 << 10
		block = 16 // chunks per 4MiB window
	)
	perm := [block]int64{5, 0, 3, 1, 9, 2, 15, 4, 7, 6, 12, 8, 11, 10, 14, 13}
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		b.Fatal(err)
	}
	pipeline.MustRegister(reg, memDiscardDef)
	n := int64(b.N)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "bench.shuffled",
		Produces: pipeline.Bytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(chunk)
				full := n / block * block
				for i := int64(0); i < n; i++ {
					idx := i
					if i < full {
						idx = i/block*block + perm[i%block]
					}
					if err := edges.Send(ctx, pool.Get(idx*chunk)); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
		Memory: func(struct{}) pipeline.Memory { return pipeline.Memory{ChunkSize: chunk, PerReplica: chunk} },
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "bench.shuffled"},
		{ID: "order", Type: "reorder.heap", Inputs: []string{"src"}, Config: &ReorderConfig{Window: block * chunk}},
		{ID: "sink", Type: "mem.discard", Inputs: []string{"order"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(chunk)
	benchRunOnce(b, g, &pipeline.Resource{Size: n * chunk})
}

func ExampleReorderHeap() {
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		panic(err)
	}
	// A source that delivers three words out of order.
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "words",
		Produces: pipeline.Bytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(16)
				for _, w := range []struct {
					off  int64
					text string
				}{{6, "world "}, {12, "in order"}, {0, "hello "}} {
					c := pool.Get(w.off)
					c.Data = c.Data[:copy(c.Data, w.text)]
					if err := edges.Send(ctx, c); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "print",
		Consumes: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for c := range edges.Chunks {
					fmt.Printf("%2d %q\n", c.Offset, c.Data)
					c.Release()
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "words"},
		{ID: "order", Type: "reorder.heap", Inputs: []string{"src"}, Config: &ReorderConfig{Window: 1 << 20}},
		{ID: "print", Type: "print", Inputs: []string{"order"}},
	})
	if err != nil {
		panic(err)
	}
	err = g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 20}, Log: zerolog.Nop()})
	fmt.Println("error:", err)
	// Output:
	//  0 "hello "
	//  6 "world "
	// 12 "in order"
	// error: <nil>
}
