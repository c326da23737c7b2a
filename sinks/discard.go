package sinks

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/dlflow/dlflow/pipeline"
)

// DiscardSink is the discard.sink stage: it counts and releases every chunk
// and writes nothing, so a benchmark measures the stages before it. Any
// number of workers may run. A successful run must have delivered exactly
// Resource.Size bytes when the size is known.
type DiscardSink struct {
	bytes atomic.Int64
}

// DiscardConfig configures a discard.sink; it has no settings.
type DiscardConfig struct{}

var discardDef = pipeline.Def[DiscardConfig]{
	Type:     "discard.sink",
	Summary:  "counts and drops the bytes, for benchmarks",
	Consumes: pipeline.Bytes,
	Produces: pipeline.None,
	New:      func(DiscardConfig) (pipeline.Stage, error) { return &DiscardSink{}, nil },
	Memory:   func(DiscardConfig) pipeline.Memory { return pipeline.Memory{} },
}

func init() { builtin(discardDef) }

// Bytes is the number of bytes received in the current (or last) run.
func (s *DiscardSink) Bytes() int64 { return s.bytes.Load() }

var (
	_ pipeline.Starter  = (*DiscardSink)(nil)
	_ pipeline.Finisher = (*DiscardSink)(nil)
)

// Start resets the count, so that a graph can be run again.
func (s *DiscardSink) Start(ctx context.Context, env *pipeline.Env) error {
	s.bytes.Store(0)
	return nil
}

// Run counts and releases chunks until its input is closed or ctx is done.
func (s *DiscardSink) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	for {
		c, ok, err := edges.Recv(ctx)
		if !ok {
			return err
		}
		s.bytes.Add(int64(len(c.Data)))
		c.Release()
	}
}

// Finish checks, after a successful run, that the byte count matches the
// resource's size when it is known.
func (s *DiscardSink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	if runErr != nil || !env.Resource.SizeKnown() {
		return nil
	}
	if n := s.bytes.Load(); n != env.Resource.Size {
		return fmt.Errorf("incomplete: received %d of %d bytes", n, env.Resource.Size)
	}
	return nil
}
