package decompress

import (
	"context"
	"fmt"
	"sync"

	"github.com/dlflow/dlflow/pipeline"
)

// memOutput is what mem.sink received.
type memOutput struct {
	mu     sync.Mutex
	data   []byte           // the bytes, in order
	chunks []pipeline.Range // the chunks in arrival order
}

func (o *memOutput) Bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.data
}

func (o *memOutput) Chunks() []pipeline.Range {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.chunks
}

// memSinkConfig drives mem.sink, which records the ordered bytes it
// receives and fails on a chunk that does not start where the previous one
// ended.
type memSinkConfig struct {
	Out *memOutput
}

var memSinkDef = pipeline.Def[memSinkConfig]{
	Type:     "mem.sink",
	Summary:  "test sink that records ordered chunks",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	New: func(c memSinkConfig) (pipeline.Stage, error) {
		if c.Out == nil {
			return nil, fmt.Errorf("mem.sink needs an Out")
		}
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
			var next int64
			for {
				var ch pipeline.Chunk
				var ok bool
				select {
				case ch, ok = <-io.Chunks:
				case <-ctx.Done():
					return ctx.Err()
				}
				if !ok {
					return nil
				}
				if ch.Offset != next {
					ch.Release()
					return fmt.Errorf("out of order: chunk at offset %d, want %d", ch.Offset, next)
				}
				next = ch.End()
				o := c.Out
				o.mu.Lock()
				o.data = append(o.data, ch.Data...)
				o.chunks = append(o.chunks, pipeline.Range{Start: ch.Offset, End: ch.End()})
				o.mu.Unlock()
				ch.Release()
			}
		}), nil
	},
}
