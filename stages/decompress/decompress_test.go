package decompress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/pipeline"
)

// bytesSourceConfig drives bytes.source, which sends Data as ordered
// chunks of Chunk bytes, then waits for Hold (when set) before it returns.
type bytesSourceConfig struct {
	Data  []byte
	Chunk int
	Hold  chan struct{}
}

var bytesSourceDef = pipeline.Def[bytesSourceConfig]{
	Type: "bytes.source", Produces: pipeline.OrderedBytes, Defaults: bytesSourceConfig{Chunk: 1000},
	New: func(c bytesSourceConfig) (pipeline.Stage, error) {
		return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			pool := env.Buffers.Pool(c.Chunk)
			for off := 0; off < len(c.Data); off += c.Chunk {
				ch := pool.Get(int64(off))
				ch.Data = ch.Data[:copy(ch.Data, c.Data[off:])]
				if err := edges.Send(ctx, ch); err != nil {
					return err
				}
			}
			if c.Hold != nil {
				select {
				case <-c.Hold:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}), nil
	},
}

// runDecompress decompresses data, sent in chunks of chunk bytes, with
// cfg, and returns the bytes that came out, the largest output chunk, and
// the bytes still borrowed from the pools once the run returned.
func runDecompress(t *testing.T, ctx context.Context, data []byte, chunk int, cfg Config) (out []byte, maxChunk int, inUse int64, err error) {
	t.Helper()
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	pipeline.MustRegister(reg, bytesSourceDef)
	pipeline.MustRegister(reg, memSinkDef)
	sink := &memOutput{}
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "bytes.source", Config: &bytesSourceConfig{Data: data, Chunk: chunk}},
		{ID: "decode", Type: "decompress", Inputs: []string{"src"}, Config: &cfg},
		{ID: "sink", Type: "mem.sink", Inputs: []string{"decode"}, Config: &memSinkConfig{Out: sink}},
	})
	if err != nil {
		t.Fatal(err)
	}
	bufs := pipeline.NewBuffers()
	err = g.Run(ctx, pipeline.RunOptions{Resource: &pipeline.Resource{Size: int64(len(data))}, Log: zerolog.Nop(), Buffers: bufs})
	for _, c := range sink.Chunks() {
		maxChunk = max(maxChunk, int(c.Len()))
	}
	return sink.Bytes(), maxChunk, bufs.InUse(), err
}

func decompressContent() []byte {
	b := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(b[:1<<20])
	for i := 1 << 20; i < len(b); i++ {
		b[i] = "dlflow extracts while it downloads\n"[i%35]
	}
	return b
}

func gzipOf(t testing.TB, p []byte, members int) []byte {
	var buf bytes.Buffer
	part := len(p) / members
	for i := range members {
		end := (i + 1) * part
		if i == members-1 {
			end = len(p)
		}
		zw := gzip.NewWriter(&buf)
		zw.Write(p[i*part : end])
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func zstdOf(t testing.TB, p []byte, opts ...zstd.EOption) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, opts...)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(p)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Every format, read in chunks of odd sizes, comes out byte for byte, in chunks no larger than the
// buffer, with every buffer given back.
func TestDecompressFormats(t *testing.T) {
	content := decompressContent()
	cases := []struct {
		name, format string
		data         []byte
	}{
		{"gzip auto", FormatAuto, gzipOf(t, content, 1)},
		{"gzip members", FormatGzip, gzipOf(t, content, 3)},
		{"zstd auto", FormatAuto, zstdOf(t, content)},
		{"zstd", FormatZstd, zstdOf(t, content, zstd.WithEncoderLevel(zstd.SpeedBestCompression))},
		{"plain auto", FormatAuto, content},
		{"plain none", FormatNone, gzipOf(t, content, 1)}, // none passes even gzip through
	}
	for _, tc := range cases {
		for _, chunk := range []int{4093, 64 << 10} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tc.name, chunk), func(t *testing.T) {
				want := content
				if tc.format == FormatNone {
					want = tc.data
				}
				cfg := decompressDef.Defaults
				cfg.Format, cfg.Buffer = tc.format, 100<<10
				out, maxChunk, inUse, err := runDecompress(t, t.Context(), tc.data, chunk, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, want) {
					t.Fatalf("got %d bytes, want the %d bytes of the content", len(out), len(want))
				}
				if maxChunk > 100<<10 {
					t.Fatalf("output chunk of %d bytes, past the 100 KiB buffer", maxChunk)
				}
				if inUse != 0 {
					t.Fatalf("%d bytes still borrowed after the run", inUse)
				}
			})
		}
	}
}

// The magic arriving one byte per chunk is still recognized.
func TestDecompressMagicSplit(t *testing.T) {
	content := []byte(strings.Repeat("tiny ", 100))
	for _, data := range [][]byte{gzipOf(t, content, 1), zstdOf(t, content)} {
		out, _, _, err := runDecompress(t, t.Context(), data, 1, decompressDef.Defaults)
		if err != nil || !bytes.Equal(out, content) {
			t.Fatalf("got %q, %v; want the content", out, err)
		}
	}
}

// A stream cut short fails and says it was truncated; it never passes for
// a shorter output.
func TestDecompressTruncated(t *testing.T) {
	content := decompressContent()
	for _, tc := range []struct {
		format string
		data   []byte
	}{{"gzip", gzipOf(t, content, 1)}, {"zstd", zstdOf(t, content)}} {
		t.Run(tc.format, func(t *testing.T) {
			cut := tc.data[:len(tc.data)*2/3]
			_, _, inUse, err := runDecompress(t, t.Context(), cut, 4096, decompressDef.Defaults)
			want := tc.format + " stream truncated"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want %q", err, want)
			}
			if inUse != 0 {
				t.Fatalf("%d bytes still borrowed after the failure", inUse)
			}
		})
	}
}

// A zstd frame that asks for a window past max_window fails before the
// decoder allocates it.
func TestDecompressWindowCap(t *testing.T) {
	content := decompressContent()
	data := zstdOf(t, content, zstd.WithWindowSize(8<<20))
	cfg := decompressDef.Defaults
	cfg.MaxWindow = 1 << 20
	_, _, _, err := runDecompress(t, t.Context(), data, 64<<10, cfg)
	if err == nil || !strings.Contains(err.Error(), "larger than max_window") {
		t.Fatalf("err = %v, want the window refused", err)
	}
	cfg.MaxWindow = 8 << 20
	if out, _, _, err := runDecompress(t, t.Context(), data, 64<<10, cfg); err != nil || !bytes.Equal(out, content) {
		t.Fatalf("with max_window 8MiB: %d bytes, %v", len(out), err)
	}
}

// The bytes decide the format, and formats it does not decode are named.
func TestDecompressRefuses(t *testing.T) {
	for _, tc := range []struct {
		format string
		data   []byte
		want   string
	}{
		{FormatAuto, append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, make([]byte, 100)...), "xz-compressed, which is not supported"},
		{FormatAuto, []byte("BZh91AY&SY......"), "bzip2-compressed"},
		{FormatGzip, zstdOf(t, []byte("x")), "not a gzip stream: it starts with 28b52ffd"},
		{FormatZstd, gzipOf(t, []byte("x"), 1), "not a zstd stream: it starts with 1f8b"},
		{FormatGzip, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff}, "gzip stream is corrupt"},
	} {
		cfg := decompressDef.Defaults
		cfg.Format = tc.format
		_, _, _, err := runDecompress(t, t.Context(), tc.data, 64<<10, cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s on %x: err = %v, want %q", tc.format, tc.data[:4], err, tc.want)
		}
	}
}

// Cancelled while its input is open, the stage returns, gives back every
// buffer and leaves no goroutine behind (the zstd decoder included).
func TestDecompressCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	content := decompressContent()
	for _, data := range [][]byte{gzipOf(t, content, 1), zstdOf(t, content)} {
		reg := pipeline.NewRegistry()
		if err := Register(reg); err != nil {
			t.Fatal(err)
		}
		pipeline.MustRegister(reg, bytesSourceDef)
		pipeline.MustRegister(reg, memSinkDef)
		sink := &memOutput{}
		hold := make(chan struct{}) // never closed: the source waits for the cancel
		g, err := pipeline.Build(reg, []pipeline.Node{
			{ID: "src", Type: "bytes.source", Config: &bytesSourceConfig{Data: data[:len(data)/2], Chunk: 4096, Hold: hold}},
			{ID: "decode", Type: "decompress", Inputs: []string{"src"}},
			{ID: "sink", Type: "mem.sink", Inputs: []string{"decode"}, Config: &memSinkConfig{Out: sink}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		bufs := pipeline.NewBuffers()
		err = g.Run(ctx, pipeline.RunOptions{Resource: &pipeline.Resource{Size: -1}, Log: zerolog.Nop(), Buffers: bufs})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the deadline", err)
		}
		if bufs.InUse() != 0 {
			t.Fatalf("%d bytes still borrowed after the cancel", bufs.InUse())
		}
		if len(sink.Chunks()) == 0 {
			t.Fatal("nothing was decoded before the cancel: the test did not reach the decoder")
		}
	}
}

// ExampleStage wires a decoder between a source of compressed bytes
// and a consumer of the content; the format is found by the magic bytes.
func ExampleStage() {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("hello from inside a gzip stream\n"))
	zw.Close()

	reg := pipeline.NewRegistry()
	_ = Register(reg)
	pipeline.MustRegister(reg, bytesSourceDef)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "print", Consumes: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for c := range edges.Chunks {
					fmt.Printf("%d bytes at %d (reshaped: %v): %s", len(c.Data), c.Offset, env.Reshaped, c.Data)
					c.Release()
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "bytes.source", Config: &bytesSourceConfig{Data: gz.Bytes(), Chunk: 16}},
		{ID: "decode", Type: "decompress", Inputs: []string{"src"}},
		{ID: "print", Type: "print", Inputs: []string{"decode"}},
	})
	if err != nil {
		panic(err)
	}
	err = g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: int64(gz.Len())}, Log: zerolog.Nop()})
	fmt.Println("run:", err)
	// Output:
	// 32 bytes at 0 (reshaped: true): hello from inside a gzip stream
	// run: <nil>
}
