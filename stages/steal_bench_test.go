package stages

import (
	"os"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// BenchmarkRangedSlowConnection downloads 256 MiB (DLFLOW_BENCH_SIZE) over 8 connections
// (range.splitter, 4 MiB pieces, http.reader, discard) from the loopback
// origin, with every connection fast and with one request trickling at
// 1 MiB/s (an early piece, or one of the last). Work stealing should keep the second within about 1.15x of the
// first; without it (steal_min=0) the trickling 4 MiB piece alone takes 4s.
//
//	go test -run '^$' -bench RangedSlowConnection -benchtime 5x ./stages
func BenchmarkRangedSlowConnection(b *testing.B) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 64 << 20
	}
	if v := os.Getenv("DLFLOW_BENCH_SIZE"); v != "" {
		n, err := pipeline.ParseByteSize(v)
		if err != nil {
			b.Fatal(err)
		}
		size = int64(n)
	}
	for _, bc := range []struct {
		name   string
		faults origin.Faults
		steal  pipeline.ByteSize
	}{
		{"fast", origin.Faults{}, 1 << 20},
		{"one-slow", origin.Faults{Trickle: 1 << 20, TrickleRequest: 5}, 1 << 20},
		{"one-slow-late", origin.Faults{Trickle: 1 << 20, TrickleRequest: int(size/(4<<20)) - 4}, 1 << 20},
		{"one-slow/no-steal", origin.Faults{Trickle: 1 << 20, TrickleRequest: 5}, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := htOrigin(b, size, nil)
			res := htProbe(b, srv.URL())
			cfg := htReaderConfig(func(c *HTTPReaderConfig) { c.StealMin = bc.steal })
			nodes := []pipeline.Node{
				{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: 4 << 20}},
				{ID: "fetch", Type: "http.reader", Inputs: []string{"split"}, Workers: 8, Config: &cfg},
				{ID: "sink", Type: "ht.discard", Inputs: []string{"fetch"}},
			}
			b.SetBytes(size)
			for b.Loop() {
				srv.SetFaults(bc.faults)
				ctx := htCtx(b, 2*time.Minute)
				if _, err := stealRun(b, ctx, res, nodes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
