package stages

// In-memory test stages shared by the tests of the splitter, coalescer,
// reorder heap and progress tap. Their type names start with "mem." and
// their Go names with "mem" so they do not clash with other test helpers of
// the package.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/pipeline"
)

// memPatternPeriod is prime so that the pattern never lines up with a
// power-of-two chunk or piece size: a chunk emitted at the wrong offset
// always shows.
const memPatternPeriod = 65521

var memPatternTable = func() []byte {
	t := make([]byte, memPatternPeriod)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range t {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		t[i] = byte(x >> 56)
	}
	return t
}()

// memFill fills dst with the pattern bytes of the resource at off.
func memFill(dst []byte, off int64) {
	i := int(off % memPatternPeriod)
	for len(dst) > 0 {
		k := copy(dst, memPatternTable[i:])
		dst, i = dst[k:], 0
	}
}

// memExpected is the whole pattern resource of n bytes.
func memExpected(n int64) []byte {
	b := make([]byte, n)
	memFill(b, 0)
	return b
}

// memSourceConfig drives mem.source, which emits pattern bytes.
type memSourceConfig struct {
	// Size is the length of the resource when Spans is nil.
	Size int64
	// Chunk is the buffer size; spans longer than it are cut.
	Chunk int
	// Spans are emitted in this order as (unordered) bytes; nil means
	// [0,Size) as ordered bytes.
	Spans []pipeline.Range
	// Then runs after everything is sent; its error is the stage's.
	Then func(ctx context.Context) error
}

var memSourceDef = pipeline.Def[memSourceConfig]{
	Type:     "mem.source",
	Summary:  "test source of pattern bytes",
	Consumes: pipeline.None,
	Produces: pipeline.Bytes,
	Defaults: memSourceConfig{Chunk: 64 << 10},
	Ports: func(c memSourceConfig) (pipeline.Flow, pipeline.Flow) {
		if c.Spans == nil {
			return pipeline.None, pipeline.OrderedBytes
		}
		return pipeline.None, pipeline.Bytes
	},
	New: func(c memSourceConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			pool := env.Buffers.Pool(c.Chunk)
			spans := c.Spans
			if spans == nil {
				spans = []pipeline.Range{{Start: 0, End: c.Size}}
			}
			for _, s := range spans {
				for off := s.Start; off < s.End; {
					ch := pool.Get(off)
					n := min(int64(c.Chunk), s.End-off)
					ch.Data = ch.Data[:n]
					memFill(ch.Data, off)
					if err := edges.Send(ctx, ch); err != nil {
						return err
					}
					off += n
				}
			}
			if c.Then != nil {
				return c.Then(ctx)
			}
			return nil
		}), nil
	},
	Memory: func(c memSourceConfig) pipeline.Memory {
		return pipeline.Memory{ChunkSize: int64(c.Chunk), PerReplica: int64(c.Chunk)}
	},
}

// memReaderConfig drives mem.reader, a stand-in for http.reader that turns
// each range into chunks of pattern bytes.
type memReaderConfig struct {
	Chunk int
	// Before runs before a range is read; an error is the stage's.
	Before func(ctx context.Context, r pipeline.Range) error
	// After runs once a range is fully sent.
	After func(r pipeline.Range)
}

var memReaderDef = pipeline.Def[memReaderConfig]{
	Type:     "mem.reader",
	Summary:  "test reader of pattern bytes for ranges",
	Consumes: pipeline.Ranges,
	Produces: pipeline.Bytes,
	Defaults: memReaderConfig{Chunk: 64 << 10},
	New: func(c memReaderConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			pool := env.Buffers.Pool(c.Chunk)
			for {
				var r pipeline.Range
				var ok bool
				select {
				case r, ok = <-edges.Ranges:
				case <-ctx.Done():
					return ctx.Err()
				}
				if !ok {
					return nil
				}
				if c.Before != nil {
					if err := c.Before(ctx, r); err != nil {
						return err
					}
				}
				end := r.End
				if end < 0 {
					end = env.Resource.Size
				}
				for off := r.Start; off < end; {
					ch := pool.Get(off)
					n := min(int64(c.Chunk), end-off)
					ch.Data = ch.Data[:n]
					memFill(ch.Data, off)
					if err := edges.Send(ctx, ch); err != nil {
						return err
					}
					off += n
				}
				if c.After != nil {
					c.After(r)
				}
			}
		}), nil
	},
	Memory: func(c memReaderConfig) pipeline.Memory {
		return pipeline.Memory{ChunkSize: int64(c.Chunk), PerReplica: int64(c.Chunk)}
	},
}

// memOutput is what mem.sink received.
type memOutput struct {
	mu     sync.Mutex
	data   []byte           // the bytes, each at its offset
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

// memSinkConfig drives mem.sink, which records what it receives.
type memSinkConfig struct {
	Out *memOutput
	// Ordered makes the sink consume ordered bytes and fail on a chunk that
	// does not start where the previous one ended.
	Ordered bool
	// FailAfter, when positive, makes the sink return Fail after receiving
	// that many chunks.
	FailAfter int
	Fail      error
	// Delay is slept before each chunk is taken.
	Delay time.Duration
}

var memSinkDef = pipeline.Def[memSinkConfig]{
	Type:     "mem.sink",
	Summary:  "test sink that records chunks",
	Consumes: pipeline.Bytes,
	Produces: pipeline.None,
	Ports: func(c memSinkConfig) (pipeline.Flow, pipeline.Flow) {
		if c.Ordered {
			return pipeline.OrderedBytes, pipeline.None
		}
		return pipeline.Bytes, pipeline.None
	},
	New: func(c memSinkConfig) (pipeline.Stage, error) {
		if c.Out == nil {
			return nil, fmt.Errorf("mem.sink needs an Out")
		}
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			var next int64
			n := 0
			for {
				if c.Delay > 0 {
					select {
					case <-time.After(c.Delay):
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				var ch pipeline.Chunk
				var ok bool
				select {
				case ch, ok = <-edges.Chunks:
				case <-ctx.Done():
					return ctx.Err()
				}
				if !ok {
					return nil
				}
				if c.Ordered && ch.Offset != next {
					ch.Release()
					return fmt.Errorf("out of order: chunk at offset %d, want %d", ch.Offset, next)
				}
				next = ch.End()
				o := c.Out
				o.mu.Lock()
				if end := ch.End(); int64(len(o.data)) < end {
					o.data = append(o.data, make([]byte, end-int64(len(o.data)))...)
				}
				copy(o.data[ch.Offset:], ch.Data)
				o.chunks = append(o.chunks, pipeline.Range{Start: ch.Offset, End: ch.End()})
				o.mu.Unlock()
				ch.Release()
				if n++; c.FailAfter > 0 && n >= c.FailAfter {
					return c.Fail
				}
			}
		}), nil
	},
}

// memDiscardDef counts and releases chunks; it allocates nothing, for
// benchmarks.
var memDiscardDef = pipeline.Def[struct{}]{
	Type:     "mem.discard",
	Summary:  "test sink that drops ordered bytes",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	New: func(struct{}) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			var next int64
			for ch := range edges.Chunks {
				if ch.Offset != next {
					ch.Release()
					return fmt.Errorf("out of order: chunk at offset %d, want %d", ch.Offset, next)
				}
				next = ch.End()
				ch.Release()
			}
			return nil
		}), nil
	},
}

// memRangeOutput is what mem.rangesink received.
type memRangeOutput struct {
	mu     sync.Mutex
	ranges []pipeline.Range
}

func (o *memRangeOutput) Ranges() []pipeline.Range {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ranges
}

type memRangeSinkConfig struct {
	Out *memRangeOutput
	// Hold makes the sink stop reading until ctx is done.
	Hold bool
}

var memRangeSinkDef = pipeline.Def[memRangeSinkConfig]{
	Type:     "mem.rangesink",
	Summary:  "test sink that records ranges",
	Consumes: pipeline.Ranges,
	Produces: pipeline.None,
	New: func(c memRangeSinkConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			if c.Hold {
				<-ctx.Done()
				return ctx.Err()
			}
			for r := range edges.Ranges {
				c.Out.mu.Lock()
				c.Out.ranges = append(c.Out.ranges, r)
				c.Out.mu.Unlock()
			}
			return nil
		}), nil
	},
}

// memRangesConfig drives mem.ranges, a splitter that does not acquire
// window credits: the flawed design the window exists to fix.
type memRangesConfig struct {
	Piece int64
}

var memRangesDef = pipeline.Def[memRangesConfig]{
	Type:     "mem.ranges",
	Summary:  "test splitter without window credits",
	Consumes: pipeline.None,
	Produces: pipeline.Ranges,
	New: func(c memRangesConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			for off := int64(0); off < env.Resource.Size; off += c.Piece {
				if err := edges.SendRange(ctx, pipeline.Range{Start: off, End: min(off+c.Piece, env.Resource.Size)}); err != nil {
					return err
				}
			}
			return nil
		}), nil
	},
	Memory: func(c memRangesConfig) pipeline.Memory { return pipeline.Memory{MaxRange: c.Piece} },
}

// memRegistry is an isolated registry with this package's stage types and
// the mem.* test types. A spec in overrides replaces the built-in of the same
// type, so a test can capture the stage value its New builds.
func memRegistry(t testing.TB, overrides ...builtinType) *pipeline.Registry {
	t.Helper()
	r := pipeline.NewRegistry()
	for _, s := range builtins {
		for _, o := range overrides {
			if o.name == s.name {
				s = o
			}
		}
		if err := s.add(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []builtinType{
		typeOf(memSourceDef), typeOf(memReaderDef), typeOf(memSinkDef),
		typeOf(memDiscardDef), typeOf(memRangeSinkDef), typeOf(memRangesDef),
	} {
		if err := s.add(r); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// memCapture returns d with a New that also stores the built stage in *got.
func memCapture[C any, S pipeline.Stage](d pipeline.Def[C], got *S) builtinType {
	build := d.New
	d.New = func(c C) (pipeline.Stage, error) {
		s, err := build(c)
		if err == nil {
			*got = s.(S)
		}
		return s, err
	}
	return typeOf(d)
}

// memRun builds nodes and runs them once against a resource of size bytes
// that accepts ranges. It fails the test if the graph does not build or if
// any buffer is still borrowed after the run, and returns the run's error.
func memRun(t testing.TB, ctx context.Context, reg *pipeline.Registry, size int64, nodes ...pipeline.Node) (*pipeline.Graph, *pipeline.Buffers, error) {
	t.Helper()
	return memRunResource(t, ctx, reg, &pipeline.Resource{Size: size, AcceptRanges: true}, zerolog.Nop(), nodes...)
}

func memRunResource(t testing.TB, ctx context.Context, reg *pipeline.Registry, res *pipeline.Resource, log zerolog.Logger, nodes ...pipeline.Node) (*pipeline.Graph, *pipeline.Buffers, error) {
	t.Helper()
	g, err := pipeline.Build(reg, nodes)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	bufs := pipeline.NewBuffers()
	err = g.Run(ctx, pipeline.RunOptions{Resource: res, Buffers: bufs, Log: log})
	if n := bufs.InUse(); n != 0 {
		t.Errorf("%d bytes of buffers still borrowed after the run", n)
	}
	return g, bufs, err
}

// memNoLeaks checks, when the test ends, that no goroutine started during
// the test is still running. Call it first in a test.
func memNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// memCheckBytes fails the test unless got is exactly the pattern resource
// of n bytes, comparing sha256 sums to keep the failure message short.
func memCheckBytes(t testing.TB, got []byte, n int64) {
	t.Helper()
	if int64(len(got)) != n {
		t.Fatalf("got %d bytes, want %d", len(got), n)
	}
	if g, w := sha256.Sum256(got), sha256.Sum256(memExpected(n)); g != w {
		t.Fatalf("sha256 of output %x, want %x", g, w)
	}
}

// memSleep sleeps for d or until ctx is done.
func memSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// memSyncWriter is an io.Writer safe for the concurrent writes of loggers.
type memSyncWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *memSyncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *memSyncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// memSpans pairs its arguments into ranges: memSpans(0, 10, 20, 30) is
// [0,10), [20,30).
func memSpans(bounds ...int64) []pipeline.Range {
	var s []pipeline.Range
	for i := 0; i+1 < len(bounds); i += 2 {
		s = append(s, pipeline.Range{Start: bounds[i], End: bounds[i+1]})
	}
	return s
}
