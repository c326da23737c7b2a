package dlflow_test

// Integrity: a checksum (Request.Checksum, the top-level checksum key) or a
// server's Repr-Digest is verified while downloading, by the hash.tap of
// every example topology; the result says what was verified.

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/stages"
)

const ckSize, ckSeed = 20<<20 + 777, 21

var ckZeros = strings.Repeat("0", 64)

// ckRequest downloads url into out by the built-in topology.
func ckRequest(topology, url, out string) *dlflow.Request {
	return &dlflow.Request{URL: url, Path: out, Topology: dlflow.Topology{Name: topology}}
}

// ckSHA512 is the hex sha512 of the origin's content.
func ckSHA512(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	h := sha512.New()
	if _, err := io.Copy(h, origin.NewReader(size, seed)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ckAssertNothingLeft fails unless neither the output, nor PATH.tmp, nor
// its state exists, and the result offers no partial data: bad bytes are
// not kept, not even for a resume.
func ckAssertNothingLeft(t *testing.T, res *dlflow.Result, out string) {
	t.Helper()
	for _, p := range []string{out, out + ".tmp", out + ".tmp.state", out + ".tmp.state.new"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after a checksum mismatch", p)
		}
	}
	if res.Partial != "" || res.Checksum != "" {
		t.Errorf("result %+v after a checksum mismatch", res)
	}
}

// ckMismatch asserts a *stages.ChecksumError of alg from source that wraps
// pipeline.ErrCorrupt.
func ckMismatch(t *testing.T, err error, alg, source string) *stages.ChecksumError {
	t.Helper()
	var ce *stages.ChecksumError
	if !errors.As(err, &ce) || !errors.Is(err, pipeline.ErrCorrupt) {
		t.Fatalf("err = %v, want a *stages.ChecksumError wrapping pipeline.ErrCorrupt", err)
	}
	if ce.Algorithm != alg || ce.Source != source || ce.Want == ce.Got {
		t.Errorf("checksum error %+v, want a %s mismatch from %s", ce, alg, source)
	}
	return ce
}

func TestChecksumVerifiedInEveryTopology(t *testing.T) {
	want := origin.SHA256Hex(ckSize, ckSeed)
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
			out := fltOut(t)
			req := ckRequest(topo, srv.URL(), out)
			req.Checksum = "sha256:" + want
			res, err := do(t, req)
			fltOK(t, res, err, out, ckSize, ckSeed)
			if res.Checksum != "sha256:"+want {
				t.Errorf("result checksum %q, want the verified sha256:%s", res.Checksum, want)
			}
		})
	}
}

// TestChecksumFromConfigKey sets the top-level checksum key (here through
// the environment, like a line `checksum: sha512:...` in the file would)
// with another algorithm.
func TestChecksumFromConfigKey(t *testing.T) {
	t.Parallel()
	sum := ckSHA512(t, ckSize, ckSeed)
	srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
	out := fltOut(t)
	req := ckRequest("ranged", srv.URL(), out)
	req.Environ = []string{"DLFLOW_CHECKSUM=sha512:" + sum}
	res, err := do(t, req)
	fltOK(t, res, err, out, ckSize, ckSeed)
	if res.Checksum != "sha512:"+sum {
		t.Errorf("result checksum %q, want the verified sha512", res.Checksum)
	}
}

func TestChecksumMismatch(t *testing.T) {
	got := origin.SHA256Hex(ckSize, ckSeed)
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
			out := fltOut(t)
			req := ckRequest(topo, srv.URL(), out)
			req.Checksum = "sha256:" + ckZeros
			res, err := do(t, req)
			fltFailed(t, res, err, out, "sha256 mismatch", ckZeros, got)
			if ce := ckMismatch(t, err, "sha256", "checksum"); ce.Want != ckZeros || ce.Got != got {
				t.Errorf("checksum error %+v, want %s, got %s", ce, ckZeros, got)
			}
			ckAssertNothingLeft(t, res, out)
		})
	}
}

// TestChecksumReprDigest: a server that declares Repr-Digest (RFC 9530) is
// verified without any checksum configured, and the log says so; a wrong
// one fails the download; a configured checksum takes precedence.
func TestChecksumReprDigest(t *testing.T) {
	sha256Sum := "sha256:" + origin.SHA256Hex(ckSize, ckSeed)
	for _, tc := range []struct {
		name     string
		topo     string
		faults   origin.Faults
		checksum string
		verified string // the result's checksum, "sha512" for the content's sha512; "" when it fails
		fails    string // the algorithm of the mismatch
	}{
		{"sha-256 ranged", "ranged", origin.Faults{ReprDigest: "sha-256"}, "", sha256Sum, ""},
		{"sha-512 stream", "stream", origin.Faults{ReprDigest: "sha-512"}, "", "sha512", ""},
		{"wrong ranged", "ranged", origin.Faults{ReprDigest: "sha-256", WrongDigest: true}, "", "", "sha256"},
		{"wrong ranged-ordered", "ranged-ordered", origin.Faults{ReprDigest: "sha-512", WrongDigest: true}, "", "", "sha512"},
		{"wrong stream", "stream", origin.Faults{ReprDigest: "sha-256", WrongDigest: true}, "", "", "sha256"},
		// Digest (RFC 3230) is trusted on a whole answer: the probe's GET
		// answered 200 by a server that ignores ranges.
		{"wrong digest on a 200", "ranged", origin.Faults{Digest: "sha-256", WrongDigest: true, IgnoreRange: true}, "", "", "sha256"},
		// The probe's GET is answered 206: its Digest may describe the
		// part, so it is not trusted, and nothing is verified.
		{"digest on a 206 ignored", "ranged", origin.Faults{Digest: "sha-256", WrongDigest: true}, "", "", ""},
		{"checksum wins", "ranged", origin.Faults{ReprDigest: "sha-256", WrongDigest: true}, sha256Sum, sha256Sum, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
			srv.SetFaults(tc.faults)
			out := fltOut(t)
			req := ckRequest(tc.topo, srv.URL(), out)
			req.Checksum = tc.checksum
			logOpt, log := withLog(zerolog.InfoLevel)
			res, err := do(t, req, logOpt)
			if tc.fails != "" {
				fltFailed(t, res, err, out, "mismatch", "the server's digest")
				ckMismatch(t, err, tc.fails, "the server's digest")
				ckAssertNothingLeft(t, res, out)
				return
			}
			fltOK(t, res, err, out, ckSize, ckSeed)
			want := tc.verified
			if want == "sha512" {
				want = "sha512:" + ckSHA512(t, ckSize, ckSeed)
			}
			if res.Checksum != want {
				t.Errorf("result checksum %q, want %q", res.Checksum, want)
			}
			if tc.faults.ReprDigest != "" && tc.checksum == "" {
				for _, needle := range []string{"the server declared a digest", "checksum verified"} {
					if !strings.Contains(log.String(), needle) {
						t.Errorf("log lacks %q:\n%s", needle, log)
					}
				}
			}
		})
	}
}

// TestChecksumNeedsAHashTap: a checksum the topology cannot verify (its
// bytes arrive in any order and it has no hash.tap, which dlflow adds
// only to one ordered stream) is a *NeedError, not a silently unverified
// download; a malformed one is a configuration error. Both come before
// any request: from Client.Check and from Do (whose URL nothing listens
// on). TestNeedChecksumHashTapAdded has the stream that gets a hash.tap.
func TestChecksumNeedsAHashTap(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "f.bin")
	for _, tc := range []struct {
		name     string
		topology dlflow.Topology
		checksum string
		needles  []string
		as       any
	}{
		{"no hash.tap", dlflow.Topology{File: "noverify.yaml", Data: []byte(rangedNoVerify)}, "sha256:" + ckZeros,
			[]string{"noverify.yaml", "checksum", "hash.tap"}, new(*dlflow.NeedError)},
		{"malformed", dlflow.Topology{Name: "stream"}, "sha256:abc", []string{"checksum", "64 hex digits"}, new(*config.Error)},
	} {
		req := &dlflow.Request{URL: "http://127.0.0.1:1/f", Path: out, Topology: tc.topology, Checksum: tc.checksum}
		cerr := newClient(t).Check(req)
		res, err := do(t, req)
		for _, e := range []error{cerr, err} {
			if e == nil || !contains(e.Error(), tc.needles...) || !errors.As(e, tc.as) {
				t.Errorf("%s: err = %v, want a %T mentioning %q", tc.name, e, tc.as, tc.needles)
			}
		}
		if res.Partial != "" {
			t.Errorf("%s: result %+v", tc.name, res)
		}
		assertMissing(t, out)
	}
}
