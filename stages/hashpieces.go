package stages

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	"github.com/dlflow/dlflow/pipeline"
)

// This file holds how hash.tap verifies the resource's piece hashes
// (Resource.Pieces, from a Metalink file) on the bytes passing by, in
// every topology: the one stream of http.source, the bytes a reorder heap
// put back in order, or (with a window) the frontier of the bytes hashed.
// http.reader checks the pieces of the spans it fetches too, which lets it
// take a bad piece from another source; the tap is what checks every
// piece whatever path the bytes took (a server that ignores Range, one
// that sends no length, a stream).
//
// On ordered input the tap holds the chunks of the piece being hashed and
// sends them on only once the piece matched, so that no byte of a bad
// piece reaches the sink (a writer, an archive decoder, an upload): it
// holds at most one piece and the chunk that runs into the next, when the
// pieces are no longer than maxVerifiedPiece. Longer pieces, and the
// unordered input of a tap with a window (whose chunks are on their way to
// a positional sink already), are checked as the frontier passes them: a
// bad piece then fails the run before the output is kept.

// PieceError is the error of a download whose bytes fail one of the
// resource's piece hashes. It wraps pipeline.ErrCorrupt: the bytes are
// not kept for a resume.
type PieceError struct {
	Index     int   // of the piece, from 0
	Offset    int64 // of its first byte
	Length    int64
	Algorithm string // sha256, sha512, sha1 or md5
	Want, Got string // hex
}

func (e *PieceError) Error() string {
	return fmt.Sprintf("piece %d (bytes %d-%d) fails its %s digest: expected %s, got %s",
		e.Index, e.Offset, e.Offset+e.Length-1, e.Algorithm, e.Want, e.Got)
}

func (e *PieceError) Unwrap() error { return pipeline.ErrCorrupt }

// pieceCheck hashes a stream of the resource's bytes, from offset 0 on,
// piece by piece.
type pieceCheck struct {
	p        *pipeline.PieceHashes
	size     int64
	h        hash.Hash
	pos      int64 // every byte before it is hashed
	verified int64 // every byte before it lies in a piece that matched
	sum      []byte
}

// pickPieces sets the piece hashes the run verifies (t.check is set): the
// resource's, unless a stage before the tap reshapes the bytes, or the tap
// has a window and a checksum. Such a tap passes chunks on before it
// hashes them, so the checksum, which covers every byte, fails a bad
// piece before the output is kept as surely as the piece would (and an
// http.reader verified the pieces of the spans it fetched): a second
// digest of every byte would only cost time.
func (t *HashTap) pickPieces(env *pipeline.Env) error {
	res := env.Resource
	if res == nil || res.Pieces == nil || env.Reshaped {
		return nil
	}
	if err := checkPieceHashes(res); err != nil {
		return err
	}
	if t.window > 0 && t.check != nil {
		env.Log.Debug().Msg("the checksum covers every byte: the pieces are left to it")
		return nil
	}
	t.pieces = res.Pieces
	if t.window == 0 && t.pieces.Length > maxVerifiedPiece {
		env.Log.Info().Int64("piece", t.pieces.Length).
			Msg("the pieces are too long to hold back: each is verified as its bytes pass, and a bad one fails the download before the output is kept")
	}
	return nil
}

// checkPieceHashes checks that the resource's piece hashes cover its
// size and name a known algorithm.
func checkPieceHashes(res *pipeline.Resource) error {
	p := res.Pieces
	switch {
	case !res.SizeKnown():
		return errors.New("piece hashes for a resource of unknown size")
	case p.Length < 1:
		return fmt.Errorf("piece length %d: want at least 1", p.Length)
	case int64(len(p.Sums)) != (res.Size+p.Length-1)/p.Length:
		return fmt.Errorf("%d piece hashes for %d bytes in pieces of %d", len(p.Sums), res.Size, p.Length)
	}
	_, err := newPieceHash(p.Algorithm)
	return err
}

func newPieceCheck(res *pipeline.Resource) (*pieceCheck, error) {
	if err := checkPieceHashes(res); err != nil {
		return nil, err
	}
	h, _ := newPieceHash(res.Pieces.Algorithm)
	return &pieceCheck{p: res.Pieces, size: res.Size, h: h}, nil
}

// write hashes b, the bytes at pos, and checks each piece it completes:
// a *PieceError for the first that does not match.
func (pc *pieceCheck) write(b []byte) error {
	for len(b) > 0 {
		if pc.pos >= pc.size {
			return fmt.Errorf("input goes past the %d bytes the piece hashes cover", pc.size)
		}
		start := pc.pos / pc.p.Length * pc.p.Length
		end := min(start+pc.p.Length, pc.size)
		n := min(int64(len(b)), end-pc.pos)
		pc.h.Write(b[:n])
		pc.pos += n
		b = b[n:]
		if pc.pos < end {
			continue
		}
		i := int(start / pc.p.Length)
		pc.sum = pc.h.Sum(pc.sum[:0])
		pc.h.Reset()
		if want := pc.p.Sums[i]; !bytes.Equal(pc.sum, want) {
			return &PieceError{Index: i, Offset: start, Length: end - start, Algorithm: pc.p.Algorithm,
				Want: hex.EncodeToString(want), Got: hex.EncodeToString(pc.sum)}
		}
		pc.verified = end
	}
	return nil
}

// count is the number of pieces verified.
func (pc *pieceCheck) count() int {
	if pc.verified == pc.size {
		return len(pc.p.Sums)
	}
	return int(pc.verified / pc.p.Length)
}

// sendVerified sends on, in order, the held chunks whose bytes all lie in
// verified pieces.
func (r *hashRun) sendVerified(ctx context.Context, edges pipeline.IO) error {
	sent := 0
	var err error
	for _, c := range r.pending {
		if c.End() > r.pc.verified {
			break
		}
		r.pending[sent] = pipeline.Chunk{} // sent (or released by Send): no longer ours
		sent++
		if err = edges.Send(ctx, c); err != nil {
			break
		}
	}
	n := copy(r.pending, r.pending[sent:])
	clear(r.pending[n:])
	r.pending = r.pending[:n]
	return err
}
