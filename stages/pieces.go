package stages

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// This file holds how http.reader verifies the resource's pieces
// (Resource.Pieces, from a Metalink file) as they arrive, when they are no
// longer than maxVerifiedPiece (a hash.tap verifies every piece of every
// topology; see hashpieces.go). A reader of a
// scheduler's span asks for whole pieces (fetch widens its request to the
// pieces its span touches), holds each piece's chunks until the piece is
// read and its digest checked, and only then claims and sends it, so that
// no byte of a bad piece goes downstream. The scheduler splits spans on
// piece boundaries (scheduler.align), so every piece is read whole by some
// reader; bytes of a widened request outside the span are read for the
// digest and dropped. A piece that fails is a *SourceMismatchError: its
// source is dropped and the piece is fetched from another.
//
// A replica holds at most one piece besides what it sent: the reader's
// memory grows by the piece length per replica (maxVerifiedPiece bounds
// it).

// maxVerifiedPiece is the longest piece a reader or a hash.tap holds to
// verify before it sends the piece's bytes on; longer pieces the tap
// verifies as they pass.
const maxVerifiedPiece = 16 << 20

// newPieceHash returns the hash of a pieces' algorithm.
func newPieceHash(alg string) (hash.Hash, error) {
	switch alg {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "md5":
		return md5.New(), nil
	}
	return nil, fmt.Errorf("piece hashes of unknown algorithm %q", alg)
}

// checkPieces checks what the reader needs of res.Pieces.
func checkPieces(res *pipeline.Resource) error {
	p := res.Pieces
	if p == nil {
		return nil
	}
	switch {
	case !res.SizeKnown():
		return fmt.Errorf("piece hashes for a resource of unknown size")
	case p.Length < 1 || p.Length > maxVerifiedPiece:
		return fmt.Errorf("piece length %d: want 1 to %d", p.Length, maxVerifiedPiece)
	case int64(len(p.Sums)) != (res.Size+p.Length-1)/p.Length:
		return fmt.Errorf("%d piece hashes for %d bytes in pieces of %d", len(p.Sums), res.Size, p.Length)
	}
	_, err := newPieceHash(p.Algorithm)
	return err
}

// widen returns [start, end) grown to the pieces it touches.
func widen(pieces *pipeline.PieceHashes, size, start, end int64) (int64, int64) {
	l := pieces.Length
	return start / l * l, min((end+l-1)/l*l, size)
}

// streamPieces is streamSpan for a resource with piece hashes; the
// request's body starts at j.pos, on a piece boundary, and ends at want.
func (f *httpFetcher) streamPieces(ctx context.Context, j *fetchJob, body io.Reader, want int64, idle *time.Timer) error {
	pieces, size, sched := f.pieces, f.res.Size, j.sr.s
	h, err := newPieceHash(pieces.Algorithm)
	if err != nil {
		return err
	}
	var held []pipeline.Chunk
	defer func() { releaseAll(held) }()
	for {
		pieceStart := j.pos / pieces.Length * pieces.Length
		if limit := sched.limit(j.sr); limit <= pieceStart || j.pos >= want {
			sched.claim(j.sr, j.pos, 0)
			return nil // what is left of the span, if anything, is another's
		}
		pieceEnd := min(pieceStart+pieces.Length, size)
		if pieceStart != j.pos || pieceEnd > want {
			// The answer does not hold the whole piece (the probe's
			// answer ends within it): the caller asks for the rest.
			return nil
		}
		var ok bool
		if held, ok, err = f.readPiece(j, body, h, held[:0], pieceEnd, want, idle); !ok || err != nil {
			return err
		}
		if i := pieceStart / pieces.Length; !bytes.Equal(h.Sum(nil), pieces.Sums[i]) {
			return &SourceMismatchError{URL: f.url, Reason: fmt.Sprintf("piece %d (bytes %d-%d) fails its %s digest", i, pieceStart, pieceEnd-1, pieces.Algorithm)}
		}
		from, to, done := sched.claim(j.sr, pieceStart, int(pieceEnd-pieceStart))
		for i, c := range held {
			cs, ce := c.Offset, c.Offset+int64(len(c.Data))
			if ce <= from || cs >= to {
				continue
			}
			lo, hi := max(from, cs), min(to, ce)
			c.Data, c.Offset = c.Data[lo-cs:hi-cs], lo
			held[i] = pipeline.Chunk{} // sent: no longer ours to release
			if err := f.sendSpan(ctx, j, c, idle); err != nil {
				return err
			}
		}
		releaseAll(held)
		held = held[:0]
		if done || j.pos >= want {
			sched.finished(j.sr, j.prefetched, time.Now())
			return nil
		}
	}
}

// readPiece reads the piece that starts at j.pos and ends at pieceEnd into
// held chunks, hashed by h. ok is false when the span needs nothing more
// from this reader (completed by another, or replaced).
func (f *httpFetcher) readPiece(j *fetchJob, body io.Reader, h hash.Hash, held []pipeline.Chunk, pieceEnd, want int64, idle *time.Timer) ([]pipeline.Chunk, bool, error) {
	h.Reset()
	for j.pos < pieceEnd {
		c := f.pool.Get(j.pos)
		buf := c.Data[:min(int64(len(c.Data)), pieceEnd-j.pos)]
		n, rerr := f.fill(j, body, buf, idle)
		if n > 0 {
			h.Write(buf[:n])
			c.Data = buf[:n]
			held = append(held, c)
		} else {
			c.Release()
		}
		j.pos += int64(n)
		switch {
		case rerr == io.EOF && j.pos < pieceEnd:
			return held, false, fmt.Errorf("%s: body ended at byte %d of %d: %w", f.url, j.pos, want, io.ErrUnexpectedEOF)
		case rerr != nil && rerr != io.EOF:
			return held, false, fmt.Errorf("%s: reading body at byte %d: %w", f.url, j.pos, rerr)
		}
		if _, _, ok := j.sr.s.remaining(j.sr); !ok {
			return held, false, nil // completed by another reader, or replaced
		}
	}
	return held, true, nil
}

// releaseAll releases the chunks not sent (a sent one is zero).
func releaseAll(held []pipeline.Chunk) {
	for _, c := range held {
		c.Release()
	}
}
