package pipeline_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
)

// pattern is the test content: byte i of the resource is byte(i*7 + i>>8).
func pattern(off int64) byte { return byte(off*7 + off>>8) }

type genConfig struct {
	Size  int64 `koanf:"size"`
	Chunk int   `koanf:"chunk"`
	// FailAt makes the source fail once it has sent this many bytes (0: never).
	FailAt int64 `koanf:"fail_at"`
	// Forever makes the source ignore Size and send until cancelled.
	Forever bool `koanf:"forever"`
}

// genSource emits the pattern in pooled chunks, in order.
var genSource = pipeline.Def[genConfig]{
	Type: "test.gen", Summary: "pattern bytes", Consumes: pipeline.None, Produces: pipeline.OrderedBytes,
	Defaults: genConfig{Size: 1 << 20, Chunk: 64 << 10},
	Memory: func(c genConfig) pipeline.Memory {
		return pipeline.Memory{ChunkSize: int64(c.Chunk), PerReplica: int64(c.Chunk)}
	},
	New: func(c genConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			pool := env.Buffers.Pool(c.Chunk)
			for off := int64(0); c.Forever || off < c.Size; {
				if c.FailAt > 0 && off >= c.FailAt {
					return fmt.Errorf("source gave up at %d", off)
				}
				ch := pool.Get(off)
				n := int64(len(ch.Data))
				if !c.Forever {
					n = min(n, c.Size-off)
				}
				ch.Data = ch.Data[:n]
				for i := range ch.Data {
					ch.Data[i] = pattern(off + int64(i))
				}
				if err := edges.Send(ctx, ch); err != nil {
					return err
				}
				off += n
			}
			return nil
		}), nil
	},
}

type passConfig struct {
	PanicAt int64 `koanf:"panic_at"`
}

// passThrough forwards chunks unchanged.
var passThrough = pipeline.Def[passConfig]{
	Type: "test.pass", Consumes: pipeline.Bytes, Produces: pipeline.Same,
	New: func(c passConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			for ch := range edges.Chunks {
				if c.PanicAt > 0 && ch.Offset >= c.PanicAt {
					ch.Release()
					panic("boom")
				}
				if err := edges.Send(ctx, ch); err != nil {
					return err
				}
			}
			return nil
		}), nil
	},
}

type collectConfig struct {
	Ordered bool  `koanf:"ordered"`
	FailAt  int64 `koanf:"fail_at"`
	Into    *[]byte
	// Gather is declared as the sink's Memory.Gather, for the bound only.
	Gather int64
}

// collectSink copies what it receives into *Into at each chunk's offset,
// checking order when asked, and commits by setting *Into's committed flag.
type collectSink struct {
	cfg       collectConfig
	got       []byte
	next      int64
	committed bool
	finishErr error
	finished  int
}

func (s *collectSink) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	for ch := range edges.Chunks {
		if s.cfg.Ordered && ch.Offset != s.next {
			ch.Release()
			return fmt.Errorf("chunk at %d, want %d", ch.Offset, s.next)
		}
		if s.cfg.FailAt > 0 && ch.End() > s.cfg.FailAt {
			ch.Release()
			return fmt.Errorf("disk on fire at %d", ch.Offset)
		}
		if need := ch.End(); int64(len(s.got)) < need {
			s.got = append(s.got, make([]byte, need-int64(len(s.got)))...)
		}
		copy(s.got[ch.Offset:], ch.Data)
		s.next = ch.End()
		ch.Release()
	}
	return nil
}

func (s *collectSink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	s.finished++
	s.finishErr = runErr
	return nil
}

func (s *collectSink) Commit(ctx context.Context, env *pipeline.Env) error {
	s.committed = true
	return nil
}

// newRegistry returns an isolated registry with the test stages, and a
// pointer that receives the last collect sink built.
func newRegistry(t testing.TB) (*pipeline.Registry, **collectSink) {
	t.Helper()
	reg := pipeline.NewRegistry()
	last := new(*collectSink)
	pipeline.MustRegister(reg, genSource)
	pipeline.MustRegister(reg, passThrough)
	pipeline.MustRegister(reg, pipeline.Def[collectConfig]{
		Type: "test.collect", Consumes: pipeline.Bytes, Produces: pipeline.None,
		Ports: func(c collectConfig) (pipeline.Flow, pipeline.Flow) {
			if c.Ordered {
				return pipeline.OrderedBytes, pipeline.None
			}
			return pipeline.Bytes, pipeline.None
		},
		Memory: func(c collectConfig) pipeline.Memory { return pipeline.Memory{Gather: c.Gather} },
		New: func(c collectConfig) (pipeline.Stage, error) {
			s := &collectSink{cfg: c}
			*last = s
			return s, nil
		},
	})
	return reg, last
}
