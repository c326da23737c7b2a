package dlflow_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/testtar"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/stages"
)

// meta4 is a Metalink document the tests write: the file's size, its
// whole-file hashes ("type" -> hex) and the sha-256 of each piece of the
// bytes that fill gives (none when piece is 0).
type meta4 struct {
	name   string
	size   int64
	fill   func(p []byte, off int64) // the true bytes, for the piece hashes
	piece  int64
	hashes map[string]string
	urls   []string
}

// originFill is the fill of the origin's content of seed.
func originFill(seed uint64) func([]byte, int64) {
	return func(p []byte, off int64) { origin.Fill(p, off, seed) }
}

// write writes m into a temporary .meta4 and returns its path.
func (m meta4) write(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n")
	fmt.Fprintf(&b, "<file name=%q>\n", cmpOr(m.name, "piece.bin"))
	if m.size >= 0 {
		fmt.Fprintf(&b, "<size>%d</size>\n", m.size)
	}
	for typ, h := range m.hashes {
		fmt.Fprintf(&b, "<hash type=%q>%s</hash>\n", typ, h)
	}
	if m.piece > 0 {
		fmt.Fprintf(&b, "<pieces length=\"%d\" type=\"sha-256\">\n", m.piece)
		buf := make([]byte, m.piece)
		for off := int64(0); off < m.size; off += m.piece {
			n := min(m.piece, m.size-off)
			m.fill(buf[:n], off)
			sum := sha256.Sum256(buf[:n])
			fmt.Fprintf(&b, "<hash>%s</hash>\n", hex.EncodeToString(sum[:]))
		}
		b.WriteString("</pieces>\n")
	}
	for i, u := range m.urls {
		fmt.Fprintf(&b, "<url priority=\"%d\">%s</url>\n", i+1, u)
	}
	b.WriteString("</file>\n</metalink>\n")
	path := filepath.Join(t.TempDir(), "f.meta4")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// assertPieceError checks that err is a *stages.PieceError naming a piece
// of length piece at its offset, which wraps pipeline.ErrCorrupt.
func assertPieceError(t *testing.T, err error, piece int64) {
	t.Helper()
	var pe *stages.PieceError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a *stages.PieceError", err)
	}
	if pe.Offset != int64(pe.Index)*piece || !errors.Is(err, pipeline.ErrCorrupt) ||
		!strings.Contains(err.Error(), fmt.Sprintf("piece %d ", pe.Index)) {
		t.Fatalf("piece error %+v (%v): want piece i at i*%d, naming it, wrapping ErrCorrupt", pe, err, piece)
	}
}

// assertVerifiedPieces checks that the result says every piece of size
// bytes in pieces of length piece was verified, and no whole-file hash.
func assertVerifiedPieces(t *testing.T, res *dlflow.Result, size, piece int64) {
	t.Helper()
	if want := (size + piece - 1) / piece; res.Verified != dlflow.VerifiedPieces || res.Pieces != want || res.Checksum != "" {
		t.Fatalf("result verified %v, %d pieces, checksum %q; want pieces, %d of them, no checksum", res.Verified, res.Pieces, res.Checksum, want)
	}
}

// TestMetalinkPiecesEveryTopology: a Metalink with piece hashes (and no
// hash of the whole file) is verified in the topologies the ranged
// reader is not part of: a file under 16 MiB (the stream topology), one
// of 20 MiB from a server that ignores Range, and one from a server that
// sends no Content-Length. A server that sends other bytes of the same
// size fails at its first piece, with no file at the output; the honest
// one gives the exact bytes, every piece verified.
func TestMetalinkPiecesEveryTopology(t *testing.T) {
	const piece = 256 << 10
	for _, tt := range []struct {
		name     string
		size     int64
		faults   origin.Faults
		topology string // "" for the automatic choice
	}{
		{"stream picked", 3<<20 + 77, origin.Faults{}, ""},
		{"server ignores range", 20<<20 + 77, origin.Faults{IgnoreRange: true}, ""},
		{"no content-length", 3<<20 + 77, origin.Faults{NoLength: true}, ""},
		{"buffered", 3<<20 + 77, origin.Faults{}, "buffered"},
		{"ranged, server ignores range", 20<<20 + 77, origin.Faults{IgnoreRange: true}, "ranged"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			for _, lying := range []bool{true, false} {
				seed := uint64(mirSeed)
				if lying {
					seed++
				}
				srv := startOrigin(t, origin.Options{Size: tt.size, Seed: seed})
				srv.SetFaults(tt.faults)
				meta := meta4{size: tt.size, fill: originFill(mirSeed), piece: piece, urls: []string{srv.URL()}}.write(t)
				out := fltOut(t)
				res, err := do(t, &dlflow.Request{Metalink: meta, Path: out, Topology: dlflow.Topology{Name: tt.topology}})
				if lying {
					fltFailed(t, res, err, out, "fails its sha256 digest")
					assertPieceError(t, err, piece)
					if res.Verified != dlflow.VerifiedNone {
						t.Fatalf("a failed download says %v verified", res.Verified)
					}
					continue
				}
				fltOK(t, res, err, out, tt.size, mirSeed)
				assertVerifiedPieces(t, res, tt.size, piece)
			}
		})
	}
}

// TestMetalinkPiecesWriter: to a Request.Writer, a bad piece never goes
// out: the lying server's download fails with nothing written (every
// piece is bad), the honest one writes the exact bytes.
func TestMetalinkPiecesWriter(t *testing.T) {
	noLeaks(t)
	const size, piece = 3<<20 + 77, 256 << 10
	for _, lying := range []bool{true, false} {
		seed := uint64(mirSeed)
		if lying {
			seed++
		}
		srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
		meta := meta4{size: size, fill: originFill(mirSeed), piece: piece, urls: []string{srv.URL()}}.write(t)
		var w bytes.Buffer
		res, err := do(t, &dlflow.Request{Metalink: meta, Writer: &w})
		if lying {
			if err == nil {
				t.Fatalf("the lying server's download succeeded: %+v", res)
			}
			assertPieceError(t, err, piece)
			if w.Len() != 0 {
				t.Fatalf("%d bytes of bad pieces went out to the writer", w.Len())
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(w.Bytes())); got != origin.SHA256Hex(size, mirSeed) {
			t.Fatalf("writer got %d bytes with sha256 %s", w.Len(), got)
		}
		assertVerifiedPieces(t, res, size, piece)
	}
}

// TestMetalinkPiecesExtract: an archive whose bytes differ from the
// Metalink's pieces (another valid archive of the same size) is not
// unpacked: DIR does not appear. The right archive is.
func TestMetalinkPiecesExtract(t *testing.T) {
	noLeaks(t)
	archive := func(b byte) []byte {
		return testtar.Tar(t, []testtar.Entry{{Name: "f.bin", Mode: 0o644, Body: bytes.Repeat([]byte{b}, 300<<10)}})
	}
	want, other := archive('a'), archive('b')
	if len(want) != len(other) {
		t.Fatalf("archives of %d and %d bytes", len(want), len(other))
	}
	const piece = 64 << 10
	fill := func(p []byte, off int64) { copy(p, want[off:]) }
	for i, served := range [][]byte{other, want} {
		url, _ := archiveServer(t, "a.tar", served, nil)
		meta := meta4{size: int64(len(want)), fill: fill, piece: piece, urls: []string{url}}.write(t)
		dir := extractDir(t)
		res, err := do(t, &dlflow.Request{Metalink: meta, Extract: dir})
		if i == 0 { // the other archive
			if err == nil {
				t.Fatalf("the wrong archive was unpacked: %+v", res)
			}
			assertPieceError(t, err, piece)
			assertMissing(t, dir)
			assertNothingBeside(t, dir)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, rerr := os.ReadFile(filepath.Join(dir, "f.bin"))
		if rerr != nil || !bytes.Equal(got, bytes.Repeat([]byte{'a'}, 300<<10)) {
			t.Fatalf("unpacked f.bin: %d bytes, %v", len(got), rerr)
		}
		assertVerifiedPieces(t, res, int64(len(want)), piece)
	}
}

// TestMetalinkPiecesRefusedTopology: a topology with no stage that can
// check piece hashes (no hash.tap) is refused before any request, naming
// the need and the topology.
func TestMetalinkPiecesRefusedTopology(t *testing.T) {
	noLeaks(t)
	const size = 1<<20 + 3
	srv := startOrigin(t, origin.Options{Size: size, Seed: mirSeed})
	meta := meta4{size: size, fill: originFill(mirSeed), piece: 64 << 10, urls: []string{srv.URL()}}.write(t)
	topology := filepath.Join(t.TempDir(), "bare.yaml")
	if err := os.WriteFile(topology, []byte("stages:\n  fetch: {type: http.source}\n  write: {type: file.sink, inputs: [fetch]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := fltOut(t)
	res, err := do(t, &dlflow.Request{Metalink: meta, Path: out, Topology: dlflow.Topology{File: topology}})
	fltFailed(t, res, err, out, "piece hashes", "bare.yaml", "hash.tap")
	if n := srv.Stats().Requests; n != 0 {
		t.Fatalf("%d requests before the refusal", n)
	}
}

// TestMetalinkLongPieces: pieces longer than a reader holds (32 MiB) are
// still verified, as they pass, and nothing claims that a checksum the
// Metalink does not have is verified instead.
func TestMetalinkLongPieces(t *testing.T) {
	noLeaks(t)
	const size, piece = 20<<20 + 77, 32 << 20
	for _, lying := range []bool{true, false} {
		seed := uint64(mirSeed)
		if lying {
			seed++
		}
		srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
		meta := meta4{size: size, fill: originFill(mirSeed), piece: piece, urls: []string{srv.URL()}}.write(t)
		out := fltOut(t)
		logOpt, log := withLog(zerolog.InfoLevel)
		res, err := do(t, &dlflow.Request{Metalink: meta, Path: out}, logOpt)
		if contains(log.String(), "checksum still is verified") {
			t.Fatalf("a verification that does not happen is claimed:\n%s", log)
		}
		if lying {
			fltFailed(t, res, err, out, "piece 0 ")
			assertPieceError(t, err, piece)
			continue
		}
		fltOK(t, res, err, out, size, mirSeed)
		assertVerifiedPieces(t, res, size, piece)
	}
}

// TestMetalinkSizeWithoutLength: a server that sends no Content-Length
// must send the Metalink's size, no more and no fewer bytes.
func TestMetalinkSizeWithoutLength(t *testing.T) {
	noLeaks(t)
	const size = 2<<20 + 5
	srv := startOrigin(t, origin.Options{Size: size, Seed: mirSeed})
	srv.SetFaults(origin.Faults{NoLength: true})
	for _, said := range []int64{size - 1, size + 1, size} {
		meta := meta4{size: said, urls: []string{srv.URL()}}.write(t)
		out := fltOut(t)
		res, err := do(t, &dlflow.Request{Metalink: meta, Path: out, Sets: []string{"stages.fetch.config.backoff=10ms", "stages.fetch.config.max_backoff=50ms"}})
		if said != size {
			fltFailed(t, res, err, out, fmt.Sprint(said))
			continue
		}
		fltOK(t, res, err, out, size, mirSeed)
	}
}

// TestUnverifiedWarns: bytes from a Metalink whose only hash is of a type
// dlflow does not know, or from several sources without a checksum,
// reach the output with one warning that nothing verified them, and a
// result that says so.
func TestUnverifiedWarns(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	b := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	for _, tt := range []struct {
		name string
		req  func(out string) *dlflow.Request
		want string
	}{
		{"metalink with an unknown hash", func(out string) *dlflow.Request {
			meta := meta4{size: mirSize, hashes: map[string]string{"whirlpool": strings.Repeat("ab", 64)}, urls: []string{a.URL()}}.write(t)
			return &dlflow.Request{Metalink: meta, Path: out}
		}, "no checksum: the bytes from 1 source are not verified; the metalink has no hash dlflow can check"},
		{"mirrors", func(out string) *dlflow.Request { return mirRequest(a.URL(), out, b.URL()) },
			"no checksum: the bytes from 2 sources are not verified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := fltOut(t)
			logOpt, log := withLog(zerolog.InfoLevel)
			res, err := do(t, tt.req(out), logOpt)
			fltOK(t, res, err, out, mirSize, mirSeed)
			if n := strings.Count(log.String(), `"level":"warn","message":"no checksum`); n != 1 || !contains(log.String(), tt.want) {
				t.Fatalf("%d warnings; want one saying %q:\n%s", n, tt.want, log)
			}
			if res.Verified != dlflow.VerifiedNone || res.Checksum != "" {
				t.Fatalf("result verified %v, checksum %q; want none", res.Verified, res.Checksum)
			}
		})
	}
}

// TestMetalinkLyingPrimaryStream: in the stream topology (a file under 16
// MiB) only the primary serves; its bad piece fails the download at once,
// with no second download from it alone.
func TestMetalinkLyingPrimaryStream(t *testing.T) {
	noLeaks(t)
	const size, piece = 3<<20 + 77, 256 << 10
	liar := startOrigin(t, origin.Options{Size: size, Seed: mirSeed + 1})
	good := startOrigin(t, origin.Options{Size: size, Seed: mirSeed})
	meta := meta4{size: size, fill: originFill(mirSeed), piece: piece, urls: []string{liar.URL(), good.URL()}}.write(t)
	out := fltOut(t)
	res, err := do(t, &dlflow.Request{Metalink: meta, Path: out})
	fltFailed(t, res, err, out, "piece 0 ")
	assertPieceError(t, err, piece)
	if n := liar.Stats().GETs; n != 1 {
		t.Fatalf("the liar answered %d GETs, want 1: the file was downloaded again from it", n)
	}
	if contains(err.Error(), "a mirror's bytes") {
		t.Fatalf("the error blames a mirror: %v", err)
	}
}
