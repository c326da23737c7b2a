package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// writesCfg is the file sink's config with direct set, 1 MiB gathers and
// writes in flight.
func writesCfg(path, mode, direct string, writes int) *sinks.FileConfig {
	c := fileCfg(path, mode)
	c.Direct, c.Gather, c.Writes = direct, 1<<20, writes
	return c
}

// TestFileSinkWritesInFlight writes files every way the sink writes, with
// one and with four writes in flight, in aligned and odd chunks and in
// chunks larger than a write's gather, in order and shuffled: the bytes
// are exact, and run checks that the buffers the sink held never exceeded
// the memory bound, which counts writes x gather.
func TestFileSinkWritesInFlight(t *testing.T) {
	for _, direct := range []string{sinks.DirectAlways, sinks.DirectAuto, sinks.DirectNever} {
		for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
			// 3 MiB chunks are larger than a write's gather: the budget
			// of writes x gather then holds one chunk at a time.
			for _, chunk := range []int{256 << 10, 100_000, 3 << 20} {
				for _, writes := range []int{1, 4} {
					name := fmt.Sprintf("%s/%s/chunk %d/writes %d", direct, mode, chunk, writes)
					t.Run(name, func(t *testing.T) {
						out := filepath.Join(t.TempDir(), "out.bin")
						data := payload(max(5<<20, 8*chunk) + 4097)
						order, workers := pieces(len(data), chunk, 0), 1
						if mode == sinks.ModePositional {
							order, workers = pieces(len(data), chunk, uint64(chunk)), 2
						}
						r := newRig(t)
						g := r.buildChunked(t, sendPieces(data, chunk, order), chunk, "file.sink", writesCfg(out, mode, direct, writes), workers)
						if err := run(t, t.Context(), g, int64(len(data))); err != nil {
							t.Fatal(err)
						}
						if got := readFile(t, out); !bytes.Equal(got, data) {
							t.Fatalf("output has %d bytes, sha256 %s; want %d bytes, sha256 %s", len(got), sum(got), len(data), sum(data))
						}
						if n := r.file.DirectBytes() + r.file.CachedBytes(); n != int64(len(data)) {
							t.Errorf("wrote %d bytes direct and %d through the page cache, %d in all; want %d", r.file.DirectBytes(), r.file.CachedBytes(), n, len(data))
						}
						if direct == sinks.DirectNever && r.file.DirectBytes() != 0 {
							t.Errorf("direct: never wrote %d bytes direct", r.file.DirectBytes())
						}
					})
				}
			}
		}
	}
}

// TestFileSinkWritesInFlightBound: the bound counts writes x gather bytes
// of chunks for the sink, whatever way it writes, but for direct: never,
// which holds one chunk while it copies it. The chunks it holds are its
// cushion against a slow disk too: its automatic queue is what 2 MiB
// leaves of them, at least 2 chunks.
func TestFileSinkWritesInFlightBound(t *testing.T) {
	const c = 64 << 10
	out := filepath.Join(t.TempDir(), "out.bin")
	for _, tc := range []struct {
		direct      string
		writes      int
		queue, held int64
	}{
		{sinks.DirectAlways, 4, 2, 4 << 20},
		{sinks.DirectAuto, 4, 2, 4 << 20},
		{sinks.DirectAlways, 1, 16, 1 << 20},
		{sinks.DirectAuto, 0, 16, 1 << 20}, // 0 is one write
		{sinks.DirectNever, 1, 32, c},
	} {
		cfg := writesCfg(out, sinks.ModeSequential, tc.direct, tc.writes)
		g := newRig(t).buildChunked(t, sendPieces(nil, c, nil), c, "file.sink", cfg, 1)
		for _, s := range g.Stages() {
			if s.Type == "file.sink" && (int64(s.Queue) != tc.queue || s.HoldsPerReplica != tc.held) {
				t.Errorf("direct: %s, writes: %d: the sink's queue is %d chunks and it holds %d bytes, want %d and %d",
					tc.direct, tc.writes, s.Queue, s.HoldsPerReplica, tc.queue, tc.held)
			}
		}
	}
}

// TestFileSinkInFlightCut: the source fails right after sending, with
// writes still in flight. The run returns the source's error only once
// every write is done and every buffer released (run checks), no
// goroutine is left, and what stays is consistent however far the writes
// got: PATH.tmp is an exact prefix of the data and the state claims
// exactly that prefix.
func TestFileSinkInFlightCut(t *testing.T) {
	for _, direct := range []string{sinks.DirectAlways, sinks.DirectAuto, sinks.DirectNever} {
		t.Run(direct, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			out := filepath.Join(t.TempDir(), "out.bin")
			data := payload(8 << 20)
			const c = 256 << 10
			send := sendPieces(data, c, pieces(6<<20, c, 0))
			src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				if err := send(ctx, env, edges); err != nil {
					return err
				}
				return errCut
			}
			g := newRig(t).buildChunked(t, src, c, "file.sink", writesCfg(out, sinks.ModeSequential, direct, 4), 1)
			if err := runWith(t, g, resource(int64(len(data)), `"v1"`), new(bytes.Buffer)); !errors.Is(err, errCut) {
				t.Fatalf("Run: %v, want the source's error", err)
			}
			assertMissing(t, out)
			got := readFile(t, out+".tmp")
			if len(got) > 6<<20 || !bytes.Equal(got, data[:len(got)]) {
				t.Fatalf(".tmp has %d bytes, want a prefix of the %d sent", len(got), 6<<20)
			}
			if len(got) == 0 {
				return // nothing written: no state either (see TestFileSinkLifecycle)
			}
			if st := readStateFile(t, out); len(st.Ranges) != 1 || st.Ranges[0] != [2]int64{0, int64(len(got))} {
				t.Fatalf("state claims %v, want [[0 %d]]", st.Ranges, len(got))
			}
			t.Logf(".tmp kept %d bytes", len(got))
		})
	}
}
