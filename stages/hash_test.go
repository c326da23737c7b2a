package stages

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dlflow/dlflow/httpx"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// hashHaveConfig drives mem.have, a stage that only plays a resumed sink:
// its Start records Ranges as present, readable through Reader.
type hashHaveConfig struct {
	Ranges []pipeline.Range
	Reader *hashCountingReader
}

var hashHaveDef = pipeline.Def[hashHaveConfig]{
	Type:     "mem.have",
	Summary:  "test stage that resumes the given ranges (env.Have)",
	Consumes: pipeline.None,
	Produces: pipeline.None,
	New:      func(c hashHaveConfig) (pipeline.Stage, error) { return &hashHave{cfg: c}, nil },
}

type hashHave struct{ cfg hashHaveConfig }

func (h *hashHave) Resume(context.Context, *pipeline.Env) ([]pipeline.Range, io.ReaderAt, error) {
	if h.cfg.Reader == nil {
		return h.cfg.Ranges, nil, nil // a nil *hashCountingReader is not a nil io.ReaderAt
	}
	return h.cfg.Ranges, h.cfg.Reader, nil
}

func (h *hashHave) Run(context.Context, *pipeline.Env, pipeline.IO) error { return nil }

// hashCountingReader reads the pattern resource and counts the bytes read,
// to prove what the tap reads back (and that it reads nothing without a
// resume).
type hashCountingReader struct {
	data  []byte
	calls atomic.Int64
	bytes atomic.Int64
}

func (r *hashCountingReader) ReadAt(p []byte, off int64) (int, error) {
	r.calls.Add(1)
	n, err := bytes.NewReader(r.data).ReadAt(p, off)
	r.bytes.Add(int64(n))
	return n, err
}

func hashRegistry(t testing.TB, tap **HashTap) *pipeline.Registry {
	t.Helper()
	r := memRegistry(t, memCapture(hashDef, tap))
	if err := pipeline.Register(r, hashHaveDef); err != nil {
		t.Fatal(err)
	}
	return r
}

func sumHex(h hash.Hash, data []byte) string {
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

func hashSHA256(data []byte) string { return sumHex(sha256.New(), data) }

// hashShuffled is [0,size) cut into pieces of piece bytes, in random order.
func hashShuffled(size, piece int64, seed uint64) []pipeline.Range {
	var spans []pipeline.Range
	for off := int64(0); off < size; off += piece {
		spans = append(spans, pipeline.Range{Start: off, End: min(off+piece, size)})
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	rng.Shuffle(len(spans), func(i, j int) { spans[i], spans[j] = spans[j], spans[i] })
	return spans
}

func TestHashTapOrderedAlgorithms(t *testing.T) {
	const size = 1<<20 + 123
	data := memExpected(size)
	for _, tc := range []struct {
		alg string
		h   hash.Hash
	}{
		{"sha256", sha256.New()}, {"sha512", sha512.New()}, {"sha1", sha1.New()}, {"md5", md5.New()},
		{"SHA-256", sha256.New()},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			memNoLeaks(t)
			var tap *HashTap
			out := &memOutput{}
			_, _, err := memRun(t, t.Context(), hashRegistry(t, &tap), size,
				pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Size: size, Chunk: 64 << 10}},
				pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Checksum: tc.alg + ":" + sumHex(tc.h, data)}},
				pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: out, Ordered: true}},
			)
			if err != nil {
				t.Fatal(err)
			}
			memCheckBytes(t, out.Bytes(), size)
			if st := tap.Stats(); !st.Verified || st.Hashed != size || st.ReadBack != 0 {
				t.Errorf("stats %+v, want verified, %d hashed, none read back", st, size)
			}
		})
	}
}

// TestHashTapUnorderedNeverReadsBack is the positional topology: chunks in
// any order, hashed as they become contiguous from kept references to the
// chunks the sink already wrote, never by reading the output.
func TestHashTapUnorderedNeverReadsBack(t *testing.T) {
	memNoLeaks(t)
	const size = 3<<20 + 4097
	var tap *HashTap
	out := &memOutput{}
	reader := &hashCountingReader{data: memExpected(size)}
	_, _, err := memRun(t, t.Context(), hashRegistry(t, &tap), size,
		pipeline.Node{ID: "have", Type: "mem.have", Config: &hashHaveConfig{Reader: reader}},
		pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Spans: hashShuffled(size, 100_000, 1), Chunk: 32 << 10}},
		pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Checksum: "sha256:" + hashSHA256(memExpected(size)), Window: 4 << 20}},
		pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: out}},
	)
	if err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), size)
	if n := reader.calls.Load(); n != 0 {
		t.Errorf("the tap called Have.ReadAt %d times without a resume", n)
	}
	if st := tap.Stats(); !st.Verified || st.Hashed != size || st.ReadBack != 0 {
		t.Errorf("stats %+v, want verified, %d hashed, none read back", st, size)
	}
}

// TestHashTapWindowBoundsHeldBytes runs the ranged topology with readers
// that finish their ranges in the wrong order: the tap holds chunks ahead of
// the hash, and the splitter's credits keep the run within its memory bound.
func TestHashTapWindowBoundsHeldBytes(t *testing.T) {
	memNoLeaks(t)
	const size = 8 << 20
	var tap *HashTap
	out := &memOutput{}
	var first atomic.Bool
	slowFirst := func(ctx context.Context, r pipeline.Range) error {
		if r.Start == 0 && first.CompareAndSwap(false, true) {
			return memSleep(ctx, 50e6) // 50ms: the others run ahead
		}
		return nil
	}
	g, bufs, err := memRun(t, t.Context(), hashRegistry(t, &tap), size,
		pipeline.Node{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: 128 << 10}},
		pipeline.Node{ID: "fetch", Type: "mem.reader", Inputs: []string{"split"}, Workers: 4, Config: &memReaderConfig{Chunk: 32 << 10, Before: slowFirst}},
		pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"fetch"}, Config: &HashConfig{Checksum: "sha256:" + hashSHA256(memExpected(size)), Window: 1 << 20}},
		pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: out}},
	)
	if err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), size)
	if !tap.Stats().Verified {
		t.Error("not verified")
	}
	if peak, bound := bufs.Peak(), int64(g.MemoryBound()); peak > bound {
		t.Errorf("peak buffer memory %d exceeds the bound %d", peak, bound)
	}
}

func TestHashTapMismatch(t *testing.T) {
	for _, window := range []pipeline.ByteSize{0, 1 << 20} {
		t.Run(window.String(), func(t *testing.T) {
			memNoLeaks(t)
			const size = 500_000
			var tap *HashTap
			want := strings.Repeat("ab", 32)
			src := &memSourceConfig{Size: size, Chunk: 16 << 10}
			if window > 0 {
				src.Spans = hashShuffled(size, 50_000, 2)
			}
			_, _, err := memRun(t, t.Context(), hashRegistry(t, &tap), size,
				pipeline.Node{ID: "src", Type: "mem.source", Config: src},
				pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Checksum: "sha256:" + want, Window: window}},
				pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: &memOutput{}}},
			)
			var ce *ChecksumError
			if !errors.As(err, &ce) || !errors.Is(err, pipeline.ErrCorrupt) {
				t.Fatalf("Run: %v, want a *ChecksumError that is pipeline.ErrCorrupt", err)
			}
			got := hashSHA256(memExpected(size))
			if ce.Want != want || ce.Got != got || ce.Algorithm != "sha256" || ce.Source != "checksum" {
				t.Errorf("error %+v, want sha256 %s vs %s from checksum", ce, want, got)
			}
			if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, got) || !strings.HasPrefix(msg, "verify: ") {
				t.Errorf("message %q lacks the stage or a hash", msg)
			}
		})
	}
}

// TestHashTapResumeReadsBackOnlyPresent: bytes an earlier run wrote are read
// back and hashed when the frontier reaches them; what arrives is not.
func TestHashTapResumeReadsBackOnlyPresent(t *testing.T) {
	memNoLeaks(t)
	const size = 1_000_000
	data := memExpected(size)
	present := memSpans(0, 100_000, 300_000, 400_000, 900_000, size)
	missing := memSpans(100_000, 300_000, 400_000, 900_000)
	var spans []pipeline.Range
	for _, m := range missing { // cut and shuffled, as readers would deliver
		for _, s := range hashShuffled(m.End-m.Start, 30_000, 3) {
			spans = append(spans, pipeline.Range{Start: m.Start + s.Start, End: m.Start + s.End})
		}
	}
	var tap *HashTap
	reader := &hashCountingReader{data: data}
	out := &memOutput{}
	_, _, err := memRun(t, t.Context(), hashRegistry(t, &tap), size,
		pipeline.Node{ID: "have", Type: "mem.have", Config: &hashHaveConfig{Ranges: present, Reader: reader}},
		pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Spans: spans, Chunk: 8 << 10}},
		pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Checksum: "sha256:" + hashSHA256(data), Window: 1 << 20}},
		pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: out}},
	)
	if err != nil {
		t.Fatal(err)
	}
	const presentLen = 100_000 + 100_000 + 100_000
	if st := tap.Stats(); !st.Verified || st.Hashed != size || st.ReadBack != presentLen {
		t.Errorf("stats %+v, want verified, %d hashed, %d read back", st, size, presentLen)
	}
	if n := reader.bytes.Load(); n != presentLen {
		t.Errorf("read back %d bytes, want the %d present", n, presentLen)
	}
}

// TestHashTapResumeFileAllPresent: nothing arrives; the whole file is
// read back and verified.
func TestHashTapResumeFileAllPresent(t *testing.T) {
	memNoLeaks(t)
	const size = 300_000
	data := memExpected(size)
	var tap *HashTap
	_, _, err := memRun(t, t.Context(), hashRegistry(t, &tap), size,
		pipeline.Node{ID: "have", Type: "mem.have", Config: &hashHaveConfig{Ranges: memSpans(0, size), Reader: &hashCountingReader{data: data}}},
		pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Spans: []pipeline.Range{}, Chunk: 8 << 10}},
		pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Checksum: "sha256:" + hashSHA256(data), Window: 1 << 20}},
		pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: &memOutput{}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if st := tap.Stats(); !st.Verified || st.ReadBack != size {
		t.Errorf("stats %+v, want verified with %d read back", st, size)
	}
}

func TestHashTapServerDigest(t *testing.T) {
	const size = 200_000
	data := memExpected(size)
	s256, s512 := hashSHA256(data), sumHex(sha512.New(), data)
	wrong := strings.Repeat("0", 64)
	for _, tc := range []struct {
		name     string
		checksum string
		digests  map[string]string
		verified bool   // the tap hashed and matched
		mismatch string // the Source of the expected *ChecksumError
	}{
		{"no digest passes through", "", nil, false, ""},
		{"sha-256", "", map[string]string{"sha-256": s256}, true, ""},
		{"sha-512", "", map[string]string{"sha-512": s512}, true, ""},
		{"wrong digest", "", map[string]string{"sha-256": wrong}, false, "the server's digest"},
		{"checksum wins over a wrong digest", "sha256:" + s256, map[string]string{"sha-256": wrong}, true, ""},
		{"checksum wins over a right digest", "sha256:" + wrong, map[string]string{"sha-256": s256}, false, "checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memNoLeaks(t)
			var tap *HashTap
			res := &pipeline.Resource{Size: size, AcceptRanges: true, Digests: tc.digests}
			_, _, err := memRunResource(t, t.Context(), hashRegistry(t, &tap), res, zerolog.Nop(),
				pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Size: size, Chunk: 16 << 10}},
				pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Checksum: tc.checksum}},
				pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: &memOutput{}}},
			)
			var ce *ChecksumError
			switch {
			case tc.mismatch != "":
				if !errors.As(err, &ce) || ce.Source != tc.mismatch {
					t.Fatalf("Run: %v, want a mismatch against %s", err, tc.mismatch)
				}
			case err != nil:
				t.Fatal(err)
			}
			st := tap.Stats()
			if st.Verified != tc.verified {
				t.Errorf("verified %v, want %v", st.Verified, tc.verified)
			}
			if tc.checksum == "" && tc.digests == nil && st.Hashed != 0 {
				t.Errorf("hashed %d bytes with nothing to verify", st.Hashed)
			}
		})
	}
}

// TestHashTapPassThroughLiftsWindow: without a checksum a tap with a window
// holds nothing, so it must not hold the splitter back either.
func TestHashTapPassThroughLiftsWindow(t *testing.T) {
	memNoLeaks(t)
	const size = 4 << 20
	var tap *HashTap
	out := &memOutput{}
	_, _, err := memRun(t, t.Context(), hashRegistry(t, &tap), size,
		pipeline.Node{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: 64 << 10}},
		pipeline.Node{ID: "fetch", Type: "mem.reader", Inputs: []string{"split"}, Workers: 3, Config: &memReaderConfig{Chunk: 16 << 10}},
		pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"fetch"}, Config: &HashConfig{Window: 64 << 10}},
		pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: out}},
	)
	if err != nil {
		t.Fatal(err)
	}
	memCheckBytes(t, out.Bytes(), size)
	if st := tap.Stats(); st.Hashed != 0 || st.Algorithm != "" {
		t.Errorf("stats %+v, want nothing hashed", st)
	}
}

func TestHashTapWiring(t *testing.T) {
	reg := hashRegistry(t, new(*HashTap))
	build := func(nodes ...pipeline.Node) error {
		_, err := pipeline.Build(reg, nodes)
		return err
	}
	unordered := pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Spans: memSpans(0, 10)}}
	sink := pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"verify"}, Config: &memSinkConfig{Out: &memOutput{}}}

	err := build(unordered, pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}}, sink)
	if err == nil || !strings.Contains(err.Error(), "consumes ordered bytes") {
		t.Errorf("unordered bytes into a tap without window: %v", err)
	}
	err = build(
		pipeline.Node{ID: "split", Type: "range.splitter"},
		pipeline.Node{ID: "fetch", Type: "mem.reader", Inputs: []string{"split"}},
		pipeline.Node{ID: "order", Type: "reorder.heap", Inputs: []string{"fetch"}},
		pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"order"}, Config: &HashConfig{Window: 8 << 20}},
		sink)
	if err == nil || !strings.Contains(err.Error(), "only one stage may reorder") {
		t.Errorf("tap with a window after a reorder heap: %v", err)
	}
	err = build(unordered, pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Workers: 2, Config: &HashConfig{Window: 1 << 20}}, sink)
	var we *pipeline.WiringError
	if !errors.As(err, &we) || we.Key != "workers" || !strings.Contains(err.Error(), "hash.tap runs at most 1 worker") {
		t.Errorf("a tap with two workers: %v", err)
	}
	err = build(unordered, pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &HashConfig{Window: 1 << 20}}, sink)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	for _, bad := range []HashConfig{{Checksum: "sha256"}, {Checksum: "sha3:00"}, {Checksum: "sha256:abc"}, {Window: -1}} {
		if err := build(unordered, pipeline.Node{ID: "verify", Type: "hash.tap", Inputs: []string{"src"}, Config: &bad}, sink); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func TestParseChecksum(t *testing.T) {
	s := hashSHA256(nil)
	for _, tc := range []struct {
		in, alg, digest, err string
	}{
		{"sha256:" + s, "sha256", s, ""},
		{"SHA-256:" + strings.ToUpper(s), "sha256", s, ""},
		{" md5:d41d8cd98f00b204e9800998ecf8427e ", "md5", "d41d8cd98f00b204e9800998ecf8427e", ""},
		{s, "", "", "want algorithm:hex"},
		{"crc32:00000000", "", "", "unknown algorithm"},
		{"sha256:" + s[:62], "", "", "64 hex digits"},
		{"sha1:" + strings.Repeat("z", 40), "", "", "40 hex digits"},
	} {
		alg, digest, err := httpx.ParseChecksum(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseChecksum(%q) = %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || alg != tc.alg || digest != tc.digest {
			t.Errorf("ParseChecksum(%q) = %q, %q, %v", tc.in, alg, digest, err)
		}
	}
}

func TestParseDigests(t *testing.T) {
	b256 := sha256.Sum256([]byte("x"))
	b512 := sha512.Sum512([]byte("x"))
	h256, h512 := hex.EncodeToString(b256[:]), hex.EncodeToString(b512[:])
	e256, e512 := base64.StdEncoding.EncodeToString(b256[:]), base64.StdEncoding.EncodeToString(b512[:])
	for _, tc := range []struct {
		name   string
		header http.Header
		full   bool
		want   map[string]string
	}{
		{"repr-digest", http.Header{"Repr-Digest": {"sha-256=:" + e256 + ":"}}, false, map[string]string{"sha-256": h256}},
		{"repr-digest two algorithms", http.Header{"Repr-Digest": {"sha-512=:" + e512 + ":, sha-256=:" + e256 + ":;p=1"}}, false,
			map[string]string{"sha-256": h256, "sha-512": h512}},
		{"digest on a full answer", http.Header{"Digest": {"SHA-256=" + e256 + ",MD5=abc"}}, true, map[string]string{"sha-256": h256}},
		{"digest on a 206 is ignored", http.Header{"Digest": {"SHA-256=" + e256}}, false, nil},
		{"repr-digest wins", http.Header{"Digest": {"sha-256=" + e512}, "Repr-Digest": {"sha-256=:" + e256 + ":"}}, true, map[string]string{"sha-256": h256}},
		{"wrong length", http.Header{"Repr-Digest": {"sha-256=:" + e512 + ":"}}, false, nil},
		{"not base64", http.Header{"Repr-Digest": {"sha-256=:***:"}}, false, nil},
		{"not a byte sequence", http.Header{"Repr-Digest": {"sha-256=" + e256}}, false, nil},
		{"unsupported algorithm", http.Header{"Repr-Digest": {"md5=:" + base64.StdEncoding.EncodeToString(make([]byte, 16)) + ":"}}, false, nil},
	} {
		if got := httpx.ParseDigests(tc.header, tc.full); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
