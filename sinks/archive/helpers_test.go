package archive_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks/archive"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// srcConfig configures the in-memory test source: Run is the whole stage.
type srcConfig struct {
	Run pipeline.StageFunc
	// Chunk is the buffer size of the chunks Run sends, for the memory
	// bound; 0 leaves the bound unchecked.
	Chunk int64
}

var srcDef = pipeline.Def[srcConfig]{
	Type:     "test.source",
	Summary:  "sends what its Run function sends",
	Produces: pipeline.OrderedBytes,
	New: func(c srcConfig) (pipeline.Stage, error) {
		if c.Run == nil {
			return nil, errors.New("run is required")
		}
		return c.Run, nil
	},
	// The source holds the chunk it is sending.
	Memory: func(c srcConfig) pipeline.Memory { return pipeline.Memory{ChunkSize: c.Chunk, PerReplica: c.Chunk} },
}

// rig is an isolated registry with the tar.extract sink and the test
// source.
type rig struct {
	reg *pipeline.Registry
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	r := &rig{reg: pipeline.NewRegistry()}
	if err := archive.Register(r.reg); err != nil {
		tb.Fatal(err)
	}
	if err := pipeline.Register(r.reg, srcDef); err != nil {
		tb.Fatal(err)
	}
	return r
}

// build wires src into a sink of type sinkType run by workers replicas.
func (r *rig) build(tb testing.TB, src pipeline.StageFunc, sinkType string, cfg any, workers int) *pipeline.Graph {
	tb.Helper()
	return r.buildChunked(tb, src, 0, sinkType, cfg, workers)
}

// buildChunked is build with a source that declares the buffer size of its
// chunks, so that run checks the memory bound.
func (r *rig) buildChunked(tb testing.TB, src pipeline.StageFunc, chunk int, sinkType string, cfg any, workers int) *pipeline.Graph {
	tb.Helper()
	g, err := pipeline.Build(r.reg, []pipeline.Node{
		{ID: "src", Type: "test.source", Config: &srcConfig{Run: src, Chunk: int64(chunk)}},
		{ID: "out", Type: sinkType, Inputs: []string{"src"}, Workers: workers, Config: cfg},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// run runs g with a resource of the given size and checks that every buffer
// came back and that no more were borrowed at once than the graph's memory
// bound (when its source declares its chunk size).
func run(tb testing.TB, ctx context.Context, g *pipeline.Graph, size int64) error {
	tb.Helper()
	bufs := pipeline.NewBuffers()
	err := g.Run(ctx, pipeline.RunOptions{
		Resource: &pipeline.Resource{Size: size},
		Buffers:  bufs,
		Log:      zerolog.Nop(),
	})
	if n := bufs.InUse(); n != 0 {
		tb.Errorf("%d bytes of buffers still in use after the run", n)
	}
	if bound := g.MemoryBound(); bound > 0 && bufs.Peak() > int64(bound) {
		tb.Errorf("peak buffers %d bytes, above the memory bound %d", bufs.Peak(), int64(bound))
	}
	return err
}

// pieces is the list of piece indexes of data cut into chunk-sized pieces,
// in order, or shuffled when seed is not 0.
func pieces(n, chunk int, seed uint64) []int {
	count := (n + chunk - 1) / chunk
	if seed == 0 {
		order := make([]int, count)
		for i := range order {
			order[i] = i
		}
		return order
	}
	return rand.New(rand.NewPCG(seed, seed)).Perm(count)
}

// sendPieces sends the listed chunk-sized pieces of data, each in a pooled
// buffer.
func sendPieces(data []byte, chunk int, order []int) func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	return func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(chunk)
		for _, i := range order {
			off := i * chunk
			c := pool.Get(int64(off))
			c.Data = c.Data[:copy(c.Data, data[off:min(off+chunk, len(data))])]
			if err := edges.Send(ctx, c); err != nil {
				return err
			}
		}
		return nil
	}
}

func assertMissing(tb testing.TB, path string) {
	tb.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("%s: want no file, got err %v", path, err)
	}
}
