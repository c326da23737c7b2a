package stages

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"sync/atomic"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/pipeline"
)

// HashConfig configures a hash.tap.
type HashConfig struct {
	Checksum string            `koanf:"checksum" help:"expected digest as algorithm:hex (sha256, sha512, sha1, md5); filled from the top-level checksum (or --checksum) when unset. Without one, a sha-256 or sha-512 Repr-Digest from the server is verified, and otherwise nothing is hashed"`
	Window   pipeline.ByteSize `koanf:"window" help:"0: the input must be ordered bytes (after http.source or reorder.heap). More: bytes in any order, and the tap holds up to this much ahead of the first byte not hashed yet; it becomes the graph's reorder window, so it cannot be combined with reorder.heap"`
}

// readBackSize is the buffer for hashing bytes an earlier run wrote, which
// are read back from the output.
const readBackSize = 256 << 10

// HashTap is the hash.tap stage: it verifies the download against a
// checksum while it passes by, without reading the output again.
//
// It hashes the stream in file order. On ordered input (window 0) each
// chunk is hashed and passed on. On unordered input (window > 0, the ranged
// topology with a positional sink) a chunk at the contiguous frontier is
// hashed and passed on at once; a chunk ahead is passed on too, but the tap
// keeps a second reference to its buffer (Chunk.Share) and hashes it when
// the frontier reaches it. The tap then owns the graph's reorder window and
// moves its frontier, so the range splitter's credits bound what it holds.
//
// Bytes present from an earlier run (env.Have) are the only ones read back
// from the output, when the frontier reaches them. When the input ends, the
// digest is compared with the checksum; a mismatch is a *ChecksumError,
// which makes the file sink throw the download away.
//
// The checksum comes from the config (checksum, or the top-level checksum)
// or else from the server's digest (pipeline.Resource.Digests). The tap
// also verifies the resource's piece hashes (pipeline.Resource.Pieces),
// see hashpieces.go. With neither, the tap passes chunks through without
// hashing, since a digest nobody checks is not worth its cost on the hot
// path.
//
// Run it with one worker: a hash is one sequential computation.
type HashTap struct {
	window int64
	config *checksum // from the config; nil when unset

	// Of the current run, set by Start.
	check    *checksum             // what Run verifies; nil passes through
	pieces   *pipeline.PieceHashes // the piece hashes Run verifies, or nil
	hashed   atomic.Int64
	piecesOK atomic.Int64 // pieces verified
	readBack atomic.Int64
	verified atomic.Bool
}

// checksum is an expected digest and where it comes from.
type checksum struct {
	alg    httpx.Algorithm
	want   string // lowercase hex
	source string // "checksum" or the header it came from
}

// HashStats is what a hash.tap did in the current or last run.
type HashStats struct {
	// Algorithm is the algorithm of the checksum being verified, "" when the
	// tap passes through.
	Algorithm string
	// Hashed is the number of bytes hashed, ReadBack those of them read back
	// from the output because an earlier run wrote them.
	Hashed, ReadBack int64
	// Verified is set when the digest matched.
	Verified bool
	// Digest is the verified digest, hex encoded; "" unless Verified.
	Digest string
	// Pieces is the number of the resource's piece hashes verified.
	Pieces int
}

// ChecksumError is the error of a download whose digest is not the one
// expected. It wraps pipeline.ErrCorrupt.
type ChecksumError struct {
	Algorithm string // sha256, sha512, sha1 or md5
	Want, Got string // hex
	// Source is where Want came from: "checksum" (the config or
	// --checksum) or "the server's digest" (Repr-Digest or Digest).
	Source string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s mismatch: expected %s (from %s), got %s", e.Algorithm, e.Want, e.Source, e.Got)
}

func (e *ChecksumError) Unwrap() error { return pipeline.ErrCorrupt }

var hashDef = pipeline.Def[HashConfig]{
	Type:     "hash.tap",
	Summary:  "verifies a checksum (or the server's Repr-Digest) of the bytes passing by",
	Consumes: pipeline.Bytes,
	Produces: pipeline.Same,
	New: func(c HashConfig) (pipeline.Stage, error) {
		if c.Window < 0 {
			return nil, fmt.Errorf("window must be 0 (ordered input) or more, got %v", c.Window)
		}
		t := &HashTap{window: int64(c.Window)}
		if c.Checksum != "" {
			name, digest, err := httpx.ParseChecksum(c.Checksum)
			if err != nil {
				return nil, err
			}
			alg, _ := httpx.LookupAlgorithm(name)
			t.config = &checksum{alg: alg, want: digest, source: "checksum"}
		}
		return t, nil
	},
	// The window decides the input, not the flow that arrives: a tap
	// without one cannot hold bytes back, so Build refuses unordered input
	// for it instead of letting it hold a whole file.
	Ports: func(c HashConfig) (pipeline.Flow, pipeline.Flow) {
		if c.Window > 0 {
			return pipeline.Bytes, pipeline.Same
		}
		return pipeline.OrderedBytes, pipeline.Same
	},
	Memory: func(c HashConfig) pipeline.Memory {
		return pipeline.Memory{Window: int64(c.Window), PerReplica: readBackSize}
	},
	AnyOrder:   "give it a config window (such as window: 64MiB)",
	MaxWorkers: func(HashConfig) (int, string) { return 1, "a hash is one sequential computation" },
}

// TakeSettings fills an unset checksum from the run's (--checksum).
func (c *HashConfig) TakeSettings(s pipeline.Settings) {
	if c.Checksum == "" {
		c.Checksum = s.Checksum
	}
}

var (
	_ pipeline.SettingsTaker = (*HashConfig)(nil)
	_ pipeline.PieceVerifier = (*HashTap)(nil)
	_ pipeline.Starter       = (*HashTap)(nil)
)

func init() { builtin(hashDef) }

// Verification reports what the tap verified in the current or last run.
func (t *HashTap) Verification() pipeline.Verification {
	s := t.Stats()
	v := pipeline.Verification{Algorithm: s.Algorithm, Digest: s.Digest, Verified: s.Verified, Pieces: s.Pieces}
	if c := t.check; c != nil {
		v.Source = c.source
	}
	return v
}

// Stats reports what the tap did; safe to call at any time.
func (t *HashTap) Stats() HashStats {
	s := HashStats{Hashed: t.hashed.Load(), ReadBack: t.readBack.Load(), Verified: t.verified.Load(), Pieces: int(t.piecesOK.Load())}
	if c := t.check; c != nil {
		s.Algorithm = c.alg.Name
		if s.Verified {
			s.Digest = c.want
		}
	}
	return s
}

// VerifiesPieces reports that the tap checks the resource's piece hashes
// (pipeline.PieceVerifier) where no stage before it reshapes the bytes:
// each piece, or, with a window and a checksum, every byte (pickPieces).
func (t *HashTap) VerifiesPieces() bool { return true }

// Start picks what the run verifies: the configured checksum, else a
// digest the server declared, else nothing; and the resource's piece
// hashes, if any, unless the bytes it sees are reshaped.
func (t *HashTap) Start(_ context.Context, env *pipeline.Env) error {
	t.hashed.Store(0)
	t.readBack.Store(0)
	t.verified.Store(false)
	t.piecesOK.Store(0)
	t.check, t.pieces = t.config, nil
	var digests map[string]string
	if env.Resource != nil {
		digests = env.Resource.Digests
	}
	if t.check != nil && len(digests) > 0 {
		env.Log.Debug().Msg("the configured checksum takes precedence over the server's digest")
	}
	for _, name := range httpx.ServerDigestAlgorithms {
		if want, ok := digests[name]; ok && t.check == nil {
			alg, _ := httpx.LookupAlgorithm(name)
			t.check = &checksum{alg: alg, want: want, source: "the server's digest"}
			env.Log.Info().Str("algorithm", alg.Name).Msg("the server declared a digest; verifying it")
		}
	}
	if err := t.pickPieces(env); err != nil {
		return err
	}
	if t.check == nil && t.pieces == nil && t.window > 0 && env.Window != nil {
		// Nothing to check, so nothing held: lift the window before any
		// stage runs, so that no reader sizes its requests by it.
		env.Window.Advance(math.MaxInt64)
	}
	return nil
}

// Run hashes and passes on its input until it is closed; see HashTap.
func (t *HashTap) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	if t.check == nil && t.pieces == nil {
		return t.passThrough(ctx, env, edges)
	}
	r := &hashRun{t: t, env: env, held: &chunkHeap{}}
	if t.check != nil {
		r.h = t.check.alg.New()
	}
	if t.pieces != nil {
		var err error
		if r.pc, err = newPieceCheck(env.Resource); err != nil {
			return err
		}
		r.hold = t.window == 0 && t.pieces.Length <= maxVerifiedPiece
	}
	defer r.releaseHeld()
	for {
		c, ok, err := edges.Recv(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return r.finish(ctx, edges)
		}
		if err := r.advance(); err != nil {
			c.Release()
			return err
		}
		switch {
		case len(c.Data) == 0:
			// carries no bytes; nothing to hash
		case c.Offset <= r.frontier:
			if err := r.hash(c); err != nil {
				c.Release()
				return err
			}
		case t.window == 0:
			err := fmt.Errorf("input is not in order: chunk at offset %d, expected %d (put the tap after a reorder.heap, or give it a window)", c.Offset, r.frontier)
			c.Release()
			return err
		default:
			r.held.push(c.Share()) // hashed once the frontier reaches it
		}
		if r.hold {
			// Its bytes are hashed: sent on once their pieces match.
			r.pending = append(r.pending, c)
			if err := r.sendVerified(ctx, edges); err != nil {
				return err
			}
		} else if err := edges.Send(ctx, c); err != nil {
			return err
		}
		if err := r.advance(); err != nil {
			return err
		}
	}
}

// passThrough is Run without a checksum. A tap with a window lifted it in
// Start: holding nothing, it has no reason to hold the readers back.
func (t *HashTap) passThrough(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	for {
		c, ok, err := edges.Recv(ctx)
		if !ok {
			return err
		}
		if err := edges.Send(ctx, c); err != nil {
			return err
		}
	}
}

// hashRun is the state of one Run that hashes.
type hashRun struct {
	t        *HashTap
	env      *pipeline.Env
	h        hash.Hash   // of the checksum; nil without one
	pc       *pieceCheck // of the piece hashes; nil without them
	frontier int64       // every byte before it is hashed
	held     *chunkHeap
	buf      pipeline.Chunk // read-back buffer, borrowed on first use
	// hold: chunks wait in pending, hashed, until their pieces match.
	hold    bool
	pending []pipeline.Chunk
}

// write adds p, the bytes at the frontier, to the digests.
func (r *hashRun) write(p []byte) error {
	if r.h != nil {
		r.h.Write(p)
	}
	r.t.hashed.Add(int64(len(p)))
	if r.pc != nil {
		err := r.pc.write(p)
		r.t.piecesOK.Store(int64(r.pc.count()))
		return err
	}
	return nil
}

// hash adds the bytes of c past the frontier to the digest. Bytes of c
// before the frontier were hashed already; that is only allowed where they
// are present from an earlier run (a stream resent over them), never for
// bytes received twice in this run.
func (r *hashRun) hash(c pipeline.Chunk) error {
	if c.Offset < r.frontier {
		if end := min(c.End(), r.frontier); skipPresent(r.env, c.Offset) < end {
			return &OverlapError{Offset: c.Offset, Len: len(c.Data), Frontier: r.frontier}
		}
	}
	if c.End() <= r.frontier {
		return nil
	}
	p := c.Data[r.frontier-c.Offset:]
	r.frontier = c.End()
	return r.write(p)
}

// advance moves the frontier as far as it can: over bytes present from an
// earlier run (read back and hashed) and over held chunks that became
// contiguous (hashed and released). Then it moves the window, when the tap
// owns it.
func (r *hashRun) advance() error {
	for {
		if end := skipPresent(r.env, r.frontier); end > r.frontier {
			if err := r.hashPresent(end); err != nil {
				return err
			}
			continue
		}
		if len(r.held.items) == 0 || r.held.items[0].Offset > r.frontier {
			break
		}
		c := r.held.pop()
		err := r.hash(c)
		c.Release()
		if err != nil {
			return err
		}
	}
	if r.t.window > 0 && r.env.Window != nil {
		r.env.Window.Advance(r.frontier)
	}
	return nil
}

// hashPresent reads [frontier, end) back from the output and hashes it.
func (r *hashRun) hashPresent(end int64) error {
	if r.buf.Data == nil {
		r.buf = r.env.Buffers.Pool(readBackSize).Get(0)
	}
	for r.frontier < end {
		p := r.buf.Data[:min(int64(len(r.buf.Data)), end-r.frontier)]
		n, err := r.env.Have.ReadAt(p, r.frontier)
		if n < len(p) {
			if err == nil {
				err = errors.New("short read")
			}
			return fmt.Errorf("read back the bytes of an earlier run at offset %d: %w", r.frontier+int64(n), err)
		}
		r.t.readBack.Add(int64(n))
		r.frontier += int64(n)
		if err := r.write(p); err != nil {
			return err
		}
	}
	return nil
}

func (r *hashRun) releaseHeld() {
	for _, c := range r.held.items {
		c.Release()
	}
	r.held.items = r.held.items[:0]
	for _, c := range r.pending {
		c.Release() // of a piece not verified: it never goes on
	}
	r.pending = nil
	if r.buf.Data != nil {
		r.buf.Release()
		r.buf = pipeline.Chunk{}
	}
}

// finish checks, once the input is closed, that every byte was hashed and
// compares the digest; it sends on the chunks it held.
func (r *hashRun) finish(ctx context.Context, edges pipeline.IO) error {
	if err := ctx.Err(); err != nil {
		return err // the input ended because the run is failing: no verdict
	}
	if err := r.advance(); err != nil {
		return err
	}
	if len(r.held.items) > 0 {
		return &GapError{Offset: r.frontier, Chunks: len(r.held.items)}
	}
	if res := r.env.Resource; res.SizeKnown() && r.frontier != res.Size {
		return fmt.Errorf("input ended at byte %d of %d; cannot verify the download", r.frontier, res.Size)
	}
	if pc := r.pc; pc != nil {
		if pc.verified != pc.size {
			return fmt.Errorf("input ended at byte %d; the piece hashes cover %d", r.frontier, pc.size)
		}
		if err := r.sendVerified(ctx, edges); err != nil {
			return err
		}
		r.env.Log.Info().Int("pieces", pc.count()).Str("algorithm", pc.p.Algorithm).Int64("bytes", r.frontier).
			Int64("read_back", r.t.readBack.Load()).Msg("piece hashes verified")
	}
	c := r.t.check
	if c == nil {
		return nil
	}
	got := hex.EncodeToString(r.h.Sum(nil))
	if got != c.want {
		return &ChecksumError{Algorithm: c.alg.Name, Want: c.want, Got: got, Source: c.source}
	}
	r.t.verified.Store(true)
	r.env.Log.Info().Str("algorithm", c.alg.Name).Str("source", c.source).Int64("bytes", r.frontier).
		Int64("read_back", r.t.readBack.Load()).Msg("checksum verified")
	return nil
}
