package sinks_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// BenchmarkDiscardSink sends b.N pooled 256 KiB chunks into discard.sink in
// one run; one op is one chunk, so allocs/op is the chunk path's.
func BenchmarkDiscardSink(b *testing.B) {
	const chunk = 256 << 10
	n := int64(b.N)
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(chunk)
		for i := range n {
			if err := edges.Send(ctx, pool.Get(i*chunk)); err != nil {
				return err
			}
		}
		return nil
	}
	g := newRig(b).build(b, src, "discard.sink", &sinks.DiscardConfig{}, 1)
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	err := run(b, b.Context(), g, n*chunk)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFileSinkPositional writes 64 MiB in shuffled 256 KiB pieces with
// 4 writers at their offsets (pwrite), without fsync; one op is one file.
func BenchmarkFileSinkPositional(b *testing.B) {
	const total, piece = 64 << 20, 256 << 10
	src := sendPieces(payload(total), piece, pieces(total, piece, 7))
	out := filepath.Join(b.TempDir(), "out.bin")
	cfg := &sinks.FileConfig{Path: out, Mode: sinks.ModePositional, Preallocate: true}
	g := newRig(b).build(b, src, "file.sink", cfg, 4)
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		if err := run(b, b.Context(), g, total); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.Remove(out); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkFileSinkDurable writes 256 MiB in order, in 256 KiB chunks
// from memory, with fsync, each way the sink can write: the disk's side of
// stream.yaml without the network. One op is one file.
func BenchmarkFileSinkDurable(b *testing.B) {
	const total, chunk = 256 << 20, 256 << 10
	data := payload(chunk)
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(chunk)
		for off := int64(0); off < total; off += chunk {
			c := pool.Get(off)
			copy(c.Data, data)
			if err := edges.Send(ctx, c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, direct := range []string{sinks.DirectNever, sinks.DirectAlways, sinks.DirectAuto} {
		b.Run(direct, func(b *testing.B) {
			out := filepath.Join(b.TempDir(), "out.bin")
			cfg := fileCfg(out, sinks.ModeSequential)
			cfg.Direct, cfg.Gather, cfg.Writes = direct, 1<<20, 4
			r := newRig(b)
			g := r.build(b, src, "file.sink", cfg, 1)
			b.SetBytes(total)
			for b.Loop() {
				if err := run(b, b.Context(), g, total); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(r.file.Switches()), "switches/op")
				if err := os.Remove(out); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
