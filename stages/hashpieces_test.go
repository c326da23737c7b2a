package stages

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// pieceSums are the sha-256 of the pattern resource's pieces, the one of
// piece bad (if any) made wrong.
func pieceSums(size, length int64, bad int) *pipeline.PieceHashes {
	data := memExpected(size)
	p := &pipeline.PieceHashes{Length: length, Algorithm: "sha256"}
	for off := int64(0); off < size; off += length {
		sum := sha256.Sum256(data[off:min(off+length, size)])
		if len(p.Sums) == bad {
			sum[0] ^= 1
		}
		p.Sums = append(p.Sums, sum[:])
	}
	return p
}

// TestHashTapPieces: the tap verifies piece hashes on ordered input (the
// stream topologies) and on unordered input with a window (the ranged
// one), without a checksum. On ordered input no byte of a bad piece
// reaches the sink: it receives exactly the pieces before it.
func TestHashTapPieces(t *testing.T) {
	const size, length = 1<<20 + 4097, 100_000
	for _, window := range []pipeline.ByteSize{0, 1 << 20} {
		for _, bad := range []int{-1, 0, 4, 10} {
			t.Run(fmt.Sprint(window, " bad ", bad), func(t *testing.T) {
				memNoLeaks(t)
				var tap *HashTap
				out := &memOutput{}
				src := &memSourceConfig{Size: size, Chunk: 16 << 10}
				if window > 0 {
					src.Spans = hashShuffled(size, 50_000, 3)
				}
				res := &pipeline.Resource{Size: size, AcceptRanges: true, Pieces: pieceSums(size, length, bad)}
				_, _, err := memRunResource(t, t.Context(), hashRegistry(t, &tap), res, zerolog.Nop(),
					pipeline.Node{ID: "src", Type: "mem.source", Config: src},
					pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Window: window}},
					pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: out, Ordered: window == 0}},
				)
				if bad < 0 {
					if err != nil {
						t.Fatal(err)
					}
					memCheckBytes(t, out.Bytes(), size)
					if st := tap.Stats(); st.Pieces != 11 || st.Verified || st.Algorithm != "" {
						t.Fatalf("stats %+v, want 11 pieces verified and no checksum", st)
					}
					return
				}
				var pe *PieceError
				if !errors.As(err, &pe) || !errors.Is(err, pipeline.ErrCorrupt) || pe.Index != bad || pe.Offset != int64(bad)*length {
					t.Fatalf("Run: %v, want a *PieceError of piece %d at %d", err, bad, int64(bad)*length)
				}
				if n := tap.Stats().Pieces; n != bad {
					t.Fatalf("%d pieces verified, want the %d before the bad one", n, bad)
				}
				if window == 0 {
					// The pieces before the bad one, but for the chunk
					// that runs into it: held with it, and dropped.
					got, most := int64(len(out.Bytes())), int64(bad)*length
					if got > most || got <= most-16<<10 && bad > 0 {
						t.Fatalf("the sink got %d bytes, want the %d of the pieces before the bad one, less one chunk", got, most)
					}
					memCheckBytes(t, out.Bytes(), got)
				}
			})
		}
	}
}

// TestHashTapPiecesWrongSize: input longer or shorter than the pieces
// cover fails; piece hashes that do not cover the size are refused at
// Start.
func TestHashTapPiecesWrongSize(t *testing.T) {
	const size, length = 300_000, 64 << 10
	for _, tt := range []struct {
		name   string
		src    int64 // bytes the source sends
		pieces *pipeline.PieceHashes
		want   string
	}{
		{"longer", size + 10, pieceSums(size, length, -1), "past the 300000 bytes"},
		{"shorter", size - 10, pieceSums(size, length, -1), "input ended at byte 299990 of 300000"},
		{"uncovered", size, pieceSums(size-length, length, -1), "4 piece hashes for 300000 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			memNoLeaks(t)
			var tap *HashTap
			res := &pipeline.Resource{Size: size, Pieces: tt.pieces}
			_, _, err := memRunResource(t, t.Context(), hashRegistry(t, &tap), res, zerolog.Nop(),
				pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Size: tt.src, Chunk: 16 << 10}},
				pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{}},
				pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: &memOutput{}}},
			)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v, want %q", err, tt.want)
			}
		})
	}
}

// BenchmarkHashTapPieces passes 256 KiB chunks of zeros through an
// ordered hash.tap that verifies 1 MiB pieces (and holds each until it
// matches), to compare with BenchmarkHashTap's sha256 of the whole.
func BenchmarkHashTapPieces(b *testing.B) {
	const chunk, length = 256 << 10, 1 << 20
	n := int64(b.N)
	size := n * chunk
	sum := sha256.Sum256(make([]byte, length))
	p := &pipeline.PieceHashes{Length: length, Algorithm: "sha256"}
	for off := int64(0); off < size; off += length {
		s := sum
		if size-off < length {
			s = sha256.Sum256(make([]byte, size-off))
		}
		p.Sums = append(p.Sums, s[:])
	}
	g, err := pipeline.Build(benchRegistry(b, typeOf(benchZeros(n, chunk))), []pipeline.Node{
		{ID: "src", Type: "bench.zeros"},
		{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{}},
		{ID: "sink", Type: "mem.discard", Inputs: []string{"verify"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(chunk)
	benchRunOnce(b, g, &pipeline.Resource{Size: size, Pieces: p})
}
