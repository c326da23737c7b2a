package pipeline_test

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// benchChunks sends b.N pooled chunks without touching their bytes, so a
// benchmark measures the runner's cost per chunk, not memory bandwidth.
func benchChunks(n int64, chunk int) pipeline.Def[struct{}] {
	return pipeline.Def[struct{}]{
		Type: "bench.chunks", Produces: pipeline.OrderedBytes,
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

var benchDiscard = pipeline.Def[struct{}]{
	Type: "bench.discard", Consumes: pipeline.Bytes, Produces: pipeline.None,
	New: func(struct{}) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			for c := range edges.Chunks {
				c.Release()
			}
			return nil
		}), nil
	},
}

// BenchmarkRunnerMetrics is one op per 256 KiB chunk through two
// pass-through stages, with and without metrics. The graph runs once for
// all b.N chunks, so allocs/op is the chunk path's (0) plus the setup
// spread over b.N.
func BenchmarkRunnerMetrics(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := "off"
		if withMetrics {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			const chunk = 256 << 10
			reg := pipeline.NewRegistry()
			pipeline.MustRegister(reg, benchChunks(int64(b.N), chunk))
			pipeline.MustRegister(reg, passThrough)
			pipeline.MustRegister(reg, benchDiscard)
			g, err := pipeline.Build(reg, []pipeline.Node{
				{ID: "src", Type: "bench.chunks"},
				{ID: "a", Type: "test.pass", Inputs: []string{"src"}},
				{ID: "b", Type: "test.pass", Inputs: []string{"a"}},
				{ID: "out", Type: "bench.discard", Inputs: []string{"b"}},
			})
			if err != nil {
				b.Fatal(err)
			}
			opts := pipeline.RunOptions{Log: zerolog.Nop()}
			if withMetrics {
				opts.Metrics = pipeline.NewMetrics()
			}
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			err = g.Run(context.Background(), opts)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
