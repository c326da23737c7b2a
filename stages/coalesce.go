package stages

import (
	"context"
	"fmt"

	"github.com/dlflow/dlflow/pipeline"
)

// CoalesceConfig configures a coalesce.buffer.
type CoalesceConfig struct {
	Size pipeline.ByteSize `koanf:"size" help:"size of the buffer that batches incoming chunks into one write"`
}

// Coalescer is the coalesce.buffer stage: it batches small network chunks
// into large ones so that the disk sees few, big writes.
//
// Each replica copies incoming chunks into one pooled buffer of Size bytes
// and releases them at once. It emits the buffer when it is full, when a
// chunk arrives that does not continue the buffered bytes, and at the end of
// its input. A chunk larger than the free space is split across buffers. The
// output keeps the order of the input; on unordered input it still works,
// with smaller batches.
type Coalescer struct {
	size int
}

var coalesceDef = pipeline.Def[CoalesceConfig]{
	Type:     "coalesce.buffer",
	Summary:  "batches chunks into large contiguous buffers for fewer, bigger writes",
	Consumes: pipeline.Bytes,
	Produces: pipeline.Same,
	Defaults: CoalesceConfig{Size: 16 << 20},
	New: func(c CoalesceConfig) (pipeline.Stage, error) {
		if c.Size <= 0 {
			return nil, fmt.Errorf("size must be more than 0, got %v", c.Size)
		}
		if int64(c.Size) > maxBuffer {
			return nil, fmt.Errorf("size must be at most %v, got %v", pipeline.ByteSize(maxBuffer), c.Size)
		}
		return &Coalescer{size: int(c.Size)}, nil
	},
	Memory: func(c CoalesceConfig) pipeline.Memory {
		return pipeline.Memory{ChunkSize: int64(c.Size), PerReplica: int64(c.Size)}
	},
}

// maxBuffer caps a single pooled buffer; beyond it a typo ("16GiB" for
// "16MiB") would take the machine's memory at the first chunk.
const maxBuffer = 1 << 30

func init() { builtin(coalesceDef) }

// Run coalesces until its input is closed, then emits the remainder and
// returns nil. Every received chunk is released after its bytes are copied;
// on cancellation the partly filled buffer is released too.
func (s *Coalescer) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	pool := env.Buffers.Pool(s.size)
	var (
		cur  pipeline.Chunk // the buffer being filled; valid while held
		held bool
		n    int // bytes filled in cur
	)
	defer func() {
		if held {
			cur.Release()
		}
	}()
	flush := func() error {
		held = false
		out := cur
		out.Data = out.Data[:n]
		return edges.Send(ctx, out)
	}

	for {
		c, ok, err := edges.Recv(ctx)
		if err != nil {
			return err
		}
		if !ok {
			if held {
				return flush()
			}
			return nil
		}
		if held && c.Offset != cur.Offset+int64(n) {
			if err := flush(); err != nil {
				c.Release()
				return err
			}
		}
		data, off := c.Data, c.Offset
		for len(data) > 0 {
			if !held {
				cur, held, n = pool.Get(off), true, 0
			}
			k := copy(cur.Data[n:], data)
			n += k
			data, off = data[k:], off+int64(k)
			if n == s.size {
				if err := flush(); err != nil {
					c.Release()
					return err
				}
			}
		}
		c.Release()
	}
}
