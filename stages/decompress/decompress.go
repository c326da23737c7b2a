package decompress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/dlflow/dlflow/pipeline"
)

// Formats of the decompress stage.
const (
	FormatAuto = "auto"
	FormatGzip = "gzip"
	FormatZstd = "zstd"
	FormatNone = "none"
)

// Config configures a decompress stage.
type Config struct {
	Format     string            `koanf:"format" help:"auto (by the stream's magic bytes, never by the URL's name), gzip, zstd or none"`
	Buffer     pipeline.ByteSize `koanf:"buffer" help:"size of the chunks of decompressed bytes it sends on"`
	MaxWindow  pipeline.ByteSize `koanf:"max_window" help:"largest zstd window accepted; a stream asking for more fails (the window is memory the stream makes the decoder hold)"`
	MaxRatio   int64             `koanf:"max_ratio" help:"most decompressed bytes per compressed byte, once past ratio_after; 0: no limit (a guard against decompression bombs)"`
	RatioAfter pipeline.ByteSize `koanf:"ratio_after" help:"decompressed bytes before max_ratio applies"`
}

// The default guard against decompression bombs: past 1 GiB of output,
// at most 1000 bytes out per byte in. Real archives stay far below
// (text compresses 3-10 times, zstd --ultra on logs rarely 100 times,
// gzip cannot pass 1032); a bomb (66 KB of zstd making 2 GiB of zeros,
// 30,000 times) trips it after 1 GiB.
const (
	DefaultMaxRatio   = 1000
	DefaultRatioAfter = 1 << 30
)

// ErrRatio is what a stream that expands past max_ratio fails with
// (a *RatioError).
var ErrRatio = errors.New("decompressed stream expands past max_ratio")

// RatioError is a stream that expanded past max_ratio: Out decompressed
// bytes from In compressed ones. Stage is the decompress stage's id, which
// names the setting that lifts the limit.
type RatioError struct {
	Stage    string
	In, Out  int64
	MaxRatio int64
}

func (e *RatioError) Error() string {
	return fmt.Sprintf("decompressed stream expands %d compressed bytes into more than %v, over %d times as many: "+
		"a decompression bomb? for an archive you trust, raise stages.%s.config.max_ratio or set it to 0 for no limit "+
		"(--set stages.%s.config.max_ratio=0, or Request.Sets)",
		e.In, pipeline.ByteSize(e.Out), e.MaxRatio, e.Stage, e.Stage)
}

func (e *RatioError) Is(target error) bool { return target == ErrRatio }

// checkRatio is the bomb guard: an error once out decompressed bytes
// from in compressed ones are past after and more than ratio times in.
func checkRatio(stage string, in, out, ratio, after int64) error {
	if ratio <= 0 || out <= after || out/ratio <= in {
		return nil
	}
	return &RatioError{Stage: stage, In: in, Out: out, MaxRatio: ratio}
}

// DefaultMaxWindow is the zstd window a decompress stage accepts unless
// configured otherwise: 128 MiB, the largest the zstd command line
// decodes without --memory (window log 27, what zstd --ultra -22 and
// --long use).
const DefaultMaxWindow = 128 << 20

// Stage is the decompress stage: it turns a gzip or zstd stream
// (ordered bytes from offset 0) into the decompressed stream (ordered
// bytes from offset 0, in chunks of Buffer bytes). Its output is not the
// resource's bytes (Def.Reshapes): stages after it neither check sizes
// against the resource nor resume.
//
// The format is decided by the stream's first bytes, not by a name: with
// format auto, gzip (1f 8b) and zstd (28 b5 2f fd) are decompressed,
// xz and bzip2 are refused by name, and anything else passes through as
// is (a plain tar, a zip). With gzip or zstd the stream must start
// with that magic. Concatenated gzip members and zstd frames are read as
// one stream.
//
// A stream that ends early (a truncated download) is an error, never a
// short output. Memory is bounded: the decoder reads from the one input
// chunk it holds (pipeline.Reader) and fills one output chunk at a time;
// gzip holds its 32 KiB window, and zstd a window of at most MaxWindow.
// The cap matters because a zstd frame names its own window size, up to
// 3.75 TB: without it, a hostile or corrupt stream of a few bytes makes
// the decoder allocate whatever it asks for. The output is bounded too:
// past RatioAfter bytes (1 GiB), a stream that expanded more than
// MaxRatio times (1000) fails with a *RatioError naming the setting that
// lifts the limit (see DefaultMaxRatio).
type Stage struct {
	format     string
	buffer     int
	maxWindow  uint64
	maxRatio   int64
	ratioAfter int64
}

var decompressDef = pipeline.Def[Config]{
	Type:     "decompress",
	Summary:  "decompresses a gzip or zstd stream (format by magic bytes)",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.OrderedBytes,
	Reshapes: true,
	Defaults: Config{Format: FormatAuto, Buffer: 256 << 10, MaxWindow: DefaultMaxWindow, MaxRatio: DefaultMaxRatio, RatioAfter: DefaultRatioAfter},
	New: func(c Config) (pipeline.Stage, error) {
		switch c.Format {
		case FormatAuto, FormatGzip, FormatZstd, FormatNone:
		default:
			return nil, fmt.Errorf("format must be auto, gzip, zstd or none, got %q", c.Format)
		}
		if c.Buffer < 4<<10 {
			return nil, fmt.Errorf("buffer must be at least 4KiB, got %v", c.Buffer)
		}
		if c.MaxWindow < zstd.MinWindowSize {
			return nil, fmt.Errorf("max_window must be at least 1KiB, got %v", c.MaxWindow)
		}
		if c.MaxRatio < 0 || c.RatioAfter < 0 {
			return nil, fmt.Errorf("max_ratio and ratio_after must not be negative, got %d and %v", c.MaxRatio, c.RatioAfter)
		}
		return &Stage{format: c.Format, buffer: int(c.Buffer), maxWindow: uint64(c.MaxWindow),
			maxRatio: c.MaxRatio, ratioAfter: int64(c.RatioAfter)}, nil
	},
	Memory: func(c Config) pipeline.Memory {
		return pipeline.Memory{ChunkSize: int64(c.Buffer), PerReplica: decoderMemory(c)}
	},
	MaxWorkers: func(Config) (int, string) {
		return 1, "a compressed stream is decoded in order, by one decoder"
	},
}

// init registers decompress in pipeline.DefaultRegistry: importing the
// package is what makes the stage type known, as importing a database/sql
// driver makes it known. A second registration of the name panics.
func init() { pipeline.MustRegister(pipeline.DefaultRegistry, decompressDef) }

// Register adds the decompress stage type to r, for a program that builds
// its graphs from a registry of its own instead of
// pipeline.DefaultRegistry. It fails when r has the name already.
func Register(r *pipeline.Registry) error { return pipeline.Register(r, decompressDef) }

// peekSize is the read-ahead that holds the magic bytes; the decoders read
// through it (bufio passes large reads straight through).
const peekSize = 4 << 10

// decoderMemory is what a decoder of the format holds besides the chunks:
// the read-ahead, and the gzip window or the zstd window and its block
// buffers (two blocks of at most 128 KiB in low-memory mode).
func decoderMemory(c Config) int64 {
	switch c.Format {
	case FormatNone:
		return peekSize
	case FormatGzip:
		return peekSize + 64<<10
	}
	return peekSize + int64(c.MaxWindow) + 2*zstdMaxBlock
}

const zstdMaxBlock = 128 << 10

// Magic numbers of the formats auto tells apart.
var (
	gzipMagic  = []byte{0x1f, 0x8b}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	bzip2Magic = []byte("BZh")
)

// Detect names the format of a stream from its first bytes: "gzip",
// "zstd", or "none" for anything else (a tar, a zip), along with an error
// for compressions it recognizes but does not decode (xz, bzip2).
func Detect(head []byte) (string, error) {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return FormatGzip, nil
	case bytes.HasPrefix(head, zstdMagic):
		return FormatZstd, nil
	case bytes.HasPrefix(head, xzMagic):
		return "", errors.New("the stream is xz-compressed, which is not supported (gzip and zstd are)")
	case bytes.HasPrefix(head, bzip2Magic) && len(head) >= 4 && head[3] >= '1' && head[3] <= '9':
		return "", errors.New("the stream is bzip2-compressed, which is not supported (gzip and zstd are)")
	}
	return FormatNone, nil
}

// Run decompresses its input into chunks sent on; see Stage.
func (d *Stage) Run(ctx context.Context, env *pipeline.Env, io_ pipeline.IO) error {
	in := pipeline.NewReader(ctx, io_)
	defer in.Close()
	br := bufio.NewReaderSize(in, peekSize)
	head, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	format := d.format
	if format == FormatAuto {
		if format, err = Detect(head); err != nil {
			return err
		}
	}
	var dec io.Reader
	switch format {
	case FormatGzip:
		if !bytes.HasPrefix(head, gzipMagic) {
			return fmt.Errorf("not a gzip stream: it starts with %x", head)
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			return decodeError(format, in.Offset(), err)
		}
		defer zr.Close()
		dec = zr
	case FormatZstd:
		if !bytes.HasPrefix(head, zstdMagic) {
			return fmt.Errorf("not a zstd stream: it starts with %x", head)
		}
		// Concurrency 1 decodes in this goroutine, with no goroutines of
		// the decoder's own; low memory keeps its buffers to the block in
		// hand. Both caps bound the window a frame may ask for.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(d.maxWindow), zstd.WithDecoderMaxMemory(d.maxWindow))
		if err != nil {
			return err
		}
		defer zr.Close()
		dec = zr
	default:
		dec = br
	}
	env.Log.Debug().Str("format", format).Msg("decompressing")
	pool := env.Buffers.Pool(d.buffer)
	var off int64
	for {
		c := pool.Get(off)
		n, err := fill(dec, c.Data)
		c.Data = c.Data[:n]
		if n > 0 {
			off += int64(n)
			if format != FormatNone {
				if rerr := checkRatio(env.Stage, in.Offset(), off, d.maxRatio, d.ratioAfter); rerr != nil {
					c.Release()
					return rerr
				}
			}
			if serr := io_.Send(ctx, c); serr != nil {
				return serr
			}
		} else {
			c.Release()
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return decodeError(format, in.Offset(), err)
		}
	}
}

// fill reads into p until it is full or r fails; io.EOF means the stream
// ended where it should.
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// decodeError says what went wrong with a compressed stream at (about)
// the given offset of the compressed bytes.
func decodeError(format string, at int64, err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s stream truncated: it ends after %d compressed bytes, within a block: %w", format, at, err)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("zstd stream asks for a window larger than max_window (raise it only for a source you trust): %w", err)
	}
	return fmt.Errorf("%s stream is corrupt near compressed byte %d: %w", format, at, err)
}
