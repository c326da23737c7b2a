package stages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// Benchmarks of the runner with real stages, and of the stages that had no
// benchmark of their own. Each in-memory benchmark runs its graph once for
// all b.N chunks (or ranges), so allocs/op is the per-chunk cost plus the
// run's setup spread over b.N: 0 for the chunk path.

// benchZeros sends n pooled chunks of chunk bytes in order without writing
// them: fresh pool buffers are zero and nobody writes them, so the stream is
// n*chunk zero bytes, and the benchmark measures the stages, not a fill.
func benchZeros(n int64, chunk int) pipeline.Def[struct{}] {
	return pipeline.Def[struct{}]{
		Type:     "bench.zeros",
		Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(chunk)
				for i := range n {
					if err := edges.Send(ctx, pool.Get(i*int64(chunk))); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
		Memory: func(struct{}) pipeline.Memory {
			return pipeline.Memory{ChunkSize: int64(chunk), PerReplica: int64(chunk)}
		},
	}
}

// benchRegistry has this package's stages, mem.discard and extra.
func benchRegistry(b *testing.B, extra ...builtinType) *pipeline.Registry {
	b.Helper()
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		b.Fatal(err)
	}
	pipeline.MustRegister(reg, memDiscardDef)
	for _, s := range extra {
		if err := s.add(reg); err != nil {
			b.Fatal(err)
		}
	}
	return reg
}

// benchRunOnce runs g once with the timer on and checks every buffer came
// back.
func benchRunOnce(b *testing.B, g *pipeline.Graph, res *pipeline.Resource) {
	b.Helper()
	bufs := pipeline.NewBuffers()
	b.ReportAllocs()
	b.ResetTimer()
	err := g.Run(b.Context(), pipeline.RunOptions{Resource: res, Buffers: bufs, Log: zerolog.Nop()})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if n := bufs.InUse(); n != 0 {
		b.Fatalf("%d bytes still borrowed", n)
	}
}

// benchChain runs n chunks of chunk bytes from bench.zeros through stages,
// in that order, into mem.discard, once, as one benchmark of chunk bytes an
// op. Each stage's Inputs is set here.
func benchChain(b *testing.B, n int64, chunk int, stages ...pipeline.Node) {
	b.Helper()
	nodes := []pipeline.Node{{ID: "src", Type: "bench.zeros"}}
	for _, st := range append(stages, pipeline.Node{ID: "sink", Type: "mem.discard"}) {
		st.Inputs = []string{nodes[len(nodes)-1].ID}
		nodes = append(nodes, st)
	}
	g, err := pipeline.Build(benchRegistry(b, typeOf(benchZeros(n, chunk))), nodes)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(chunk))
	benchRunOnce(b, g, &pipeline.Resource{Size: n * int64(chunk)})
}

// BenchmarkRunner is the pipeline's own overhead on a realistic chain: an
// in-memory source of 256 KiB chunks -> coalesce.buffer (4 MiB) ->
// reorder.heap -> discard. One op is one 256 KiB chunk; the goal is well
// above 5 GB/s with 0 allocs/op. The coalescer copies every byte, so this
// is bounded by memory bandwidth too.
func BenchmarkRunner(b *testing.B) {
	benchChain(b, int64(b.N), 256<<10,
		pipeline.Node{ID: "batch", Type: "coalesce.buffer", Config: &CoalesceConfig{Size: 4 << 20}},
		pipeline.Node{ID: "order", Type: "reorder.heap", Config: &ReorderConfig{Window: 16 << 20}},
	)
}

// BenchmarkHashTap passes 256 KiB chunks through hash.tap, without a
// checksum (pass-through) and verifying a sha256.
func BenchmarkHashTap(b *testing.B) {
	const chunk = 256 << 10
	for _, verify := range []bool{false, true} {
		name := "passthrough"
		if verify {
			name = "sha256"
		}
		b.Run(name, func(b *testing.B) {
			n := int64(b.N)
			cfg := &HashConfig{}
			if verify {
				h := sha256.New()
				zeros := make([]byte, chunk)
				for range n {
					h.Write(zeros)
				}
				cfg.Checksum = "sha256:" + hex.EncodeToString(h.Sum(nil))
			}
			benchChain(b, n, chunk, pipeline.Node{ID: "verify", Type: "hash.tap", Config: cfg})
		})
	}
}

// benchRangeDiscard takes ranges and drops them.
var benchRangeDiscard = pipeline.Def[struct{}]{
	Type: "bench.rangediscard", Consumes: pipeline.Ranges, Produces: pipeline.None,
	New: func(struct{}) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			for range edges.Ranges {
			}
			return nil
		}), nil
	},
}

// BenchmarkSplitter hands out 4 MiB pieces of a resource of b.N pieces; one
// op is one range.
func BenchmarkSplitter(b *testing.B) {
	const piece = 4 << 20
	reg := benchRegistry(b, typeOf(benchRangeDiscard))
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: piece}},
		{ID: "take", Type: "bench.rangediscard", Inputs: []string{"split"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	benchRunOnce(b, g, &pipeline.Resource{Size: int64(b.N) * piece, AcceptRanges: true})
}

// BenchmarkHTTPSource streams a 64 MiB resource over loopback with one
// GET; one op is one download.
func BenchmarkHTTPSource(b *testing.B) {
	const size = 64 << 20
	srv := htOrigin(b, size, nil)
	res := htProbe(b, srv.URL())
	g, err := pipeline.Build(htRegistry(b), []pipeline.Node{
		{ID: "src", Type: "http.source"},
		{ID: "sink", Type: "ht.discard", Inputs: []string{"src"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	bufs := pipeline.NewBuffers()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Run(context.Background(), pipeline.RunOptions{Resource: res, Buffers: bufs, Log: zerolog.Nop()}); err != nil {
			b.Fatal(err)
		}
	}
	if bufs.InUse() != 0 {
		b.Fatal("buffers in use")
	}
}
