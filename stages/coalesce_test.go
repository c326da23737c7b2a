package stages

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

func coalesceNodes(src *memSourceConfig, size pipeline.ByteSize, sink *memSinkConfig) []pipeline.Node {
	return []pipeline.Node{
		{ID: "src", Type: "mem.source", Config: src},
		{ID: "batch", Type: "coalesce.buffer", Inputs: []string{"src"}, Config: &CoalesceConfig{Size: size}},
		{ID: "sink", Type: "mem.sink", Inputs: []string{"batch"}, Config: sink},
	}
}

// Ordered input comes out in full buffers and a remainder, byte for byte,
// whether chunks are smaller than the buffer (3000 into 64KiB, not a
// divisor) or larger (100KiB, split across buffers).
func TestCoalesceOrdered(t *testing.T) {
	const size = 1<<20 + 123
	for _, chunk := range []int{3000, 100 << 10} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			memNoLeaks(t)
			out := &memOutput{}
			g, bufs, err := memRun(t, t.Context(), memRegistry(t), size, coalesceNodes(
				&memSourceConfig{Size: size, Chunk: chunk}, 64<<10, &memSinkConfig{Out: out, Ordered: true})...)
			if err != nil {
				t.Fatal(err)
			}
			memCheckBytes(t, out.Bytes(), size)
			got := out.Chunks()
			if len(got) != size/(64<<10)+1 {
				t.Fatalf("%d chunks, want %d", len(got), size/(64<<10)+1)
			}
			for i, c := range got {
				want := pipeline.Range{Start: int64(i) * 64 << 10, End: min(int64(i+1)*64<<10, size)}
				if c != want {
					t.Errorf("chunk %d is %v, want %v", i, c, want)
				}
			}
			if peak, bound := bufs.Peak(), int64(g.MemoryBound()); peak > bound {
				t.Errorf("peak buffer memory %v exceeds the bound %v", pipeline.ByteSize(peak), pipeline.ByteSize(bound))
			}
		})
	}
}

// Out-of-order input flushes at every discontinuity; the bytes still land
// at the right offsets.
func TestCoalesceUnordered(t *testing.T) {
	memNoLeaks(t)
	out := &memOutput{}
	in := memSpans(0, 10, 20, 30, 30, 40, 10, 20, 40, 50)
	_, _, err := memRun(t, t.Context(), memRegistry(t), 50, coalesceNodes(
		&memSourceConfig{Spans: in, Chunk: 10}, 64, &memSinkConfig{Out: out})...)
	if err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), 50)
	if got, want := out.Chunks(), memSpans(0, 10, 20, 40, 10, 20, 40, 50); !reflect.DeepEqual(got, want) {
		t.Errorf("chunks %v, want %v", got, want)
	}
}

func TestCoalesceEmptyInput(t *testing.T) {
	memNoLeaks(t)
	out := &memOutput{}
	_, _, err := memRun(t, t.Context(), memRegistry(t), 0, coalesceNodes(
		&memSourceConfig{Size: 0, Chunk: 10}, 64, &memSinkConfig{Out: out})...)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.Chunks()); n != 0 {
		t.Errorf("%d chunks from empty input", n)
	}
}

// Cancelled with a partly filled buffer, the coalescer releases it.
func TestCoalesceCancel(t *testing.T) {
	memNoLeaks(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	then := func(ctx context.Context) error {
		// Give the coalescer time to take the chunks, then stop the run.
		if err := memSleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
		cancel()
		return ctx.Err()
	}
	out := &memOutput{}
	_, _, err := memRun(t, ctx, memRegistry(t), 100, coalesceNodes(
		&memSourceConfig{Size: 100, Chunk: 10, Then: then}, 1<<20, &memSinkConfig{Out: out})...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want canceled", err)
	}
	if n := len(out.Chunks()); n != 0 {
		t.Errorf("sink got %d chunks of a buffer that never filled", n)
	}
}

// A failing sink stops the coalescer mid-chunk; every buffer comes back.
func TestCoalesceSinkFails(t *testing.T) {
	memNoLeaks(t)
	boom := errors.New("disk full")
	_, _, err := memRun(t, t.Context(), memRegistry(t), 1<<20, coalesceNodes(
		&memSourceConfig{Size: 1 << 20, Chunk: 100 << 10}, 16<<10,
		&memSinkConfig{Out: &memOutput{}, FailAfter: 3, Fail: boom})...)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
}

func TestCoalesceConfig(t *testing.T) {
	for _, s := range []pipeline.ByteSize{0, -1, 2 << 30} {
		if _, err := coalesceDef.New(CoalesceConfig{Size: s}); err == nil || !strings.Contains(err.Error(), "size") {
			t.Errorf("size %d: error %v, want one naming size", s, err)
		}
	}
	m := coalesceDef.Memory(coalesceDef.Defaults)
	if m.ChunkSize != 16<<20 || m.PerReplica != 16<<20 {
		t.Errorf("default memory %+v, want 16MiB chunks and 16MiB per replica", m)
	}
}

// BenchmarkCoalesce batches 32KiB chunks into 1MiB buffers; the graph runs
// once for all b.N chunks.
func BenchmarkCoalesce(b *testing.B) {
	benchChain(b, int64(b.N), 32<<10, pipeline.Node{ID: "batch", Type: "coalesce.buffer", Config: &CoalesceConfig{Size: 1 << 20}})
}

func ExampleCoalescer() {
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		panic(err)
	}
	// Ten 3-byte network reads...
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "reads",
		Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(3)
				for i := range int64(10) {
					c := pool.Get(i * 3)
					copy(c.Data, "abc")
					if err := edges.Send(ctx, c); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	// ...become three writes of up to 12 bytes.
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "print",
		Consumes: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for c := range edges.Chunks {
					fmt.Printf("write %2d bytes at %2d: %s\n", len(c.Data), c.Offset, c.Data)
					c.Release()
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "reads"},
		{ID: "batch", Type: "coalesce.buffer", Inputs: []string{"src"}, Config: &CoalesceConfig{Size: 12}},
		{ID: "print", Type: "print", Inputs: []string{"batch"}},
	})
	if err != nil {
		panic(err)
	}
	err = g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 30}, Log: zerolog.Nop()})
	fmt.Println("error:", err)
	// Output:
	// write 12 bytes at  0: abcabcabcabc
	// write 12 bytes at 12: abcabcabcabc
	// write  6 bytes at 24: abcabc
	// error: <nil>
}
