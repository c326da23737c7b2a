package cmd

import (
	"crypto/sha512"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// Integrity: a checksum (--checksum, the top-level checksum key) or a
// server's Repr-Digest is verified while downloading, by the hash.tap of
// every example topology.

const ckSize, ckSeed = 20<<20 + 777, 21

var ckZeros = strings.Repeat("0", 64)

// ckMessage is the one line stderr holds after a failed run at the default
// log level (warnings and errors only, as JSON, when stderr is not a
// terminal).
func ckMessage(t *testing.T, res cliResult) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "dlflow: ") {
		t.Fatalf("stderr is not one message line:\n%s", res.stderr)
	}
	return lines[0]
}

// ckAssertNothingLeft fails unless neither the output, nor OUTPUT.tmp, nor
// its state exists: bad bytes are not kept, not even for a resume.
func ckAssertNothingLeft(t *testing.T, out string) {
	t.Helper()
	for _, p := range []string{out, out + ".tmp", out + ".tmp.state", out + ".tmp.state.new"} {
		if fltExists(p) {
			t.Errorf("%s exists after a checksum mismatch", p)
		}
	}
}

func TestChecksumVerifiedInEveryTopology(t *testing.T) {
	want := origin.SHA256Hex(ckSize, ckSeed)
	for _, topo := range exampleTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
			out := filepath.Join(t.TempDir(), "f.bin")
			res := runCLI(t, resArgs(topo, srv.URL(), out, "--checksum", "sha256:"+want, "--log-level", "info")...)
			resAssertDone(t, res, out, ckSize, ckSeed)
			if !strings.Contains(res.stderr, "checksum verified") {
				t.Errorf("no verification logged:\n%s", res.stderr)
			}
		})
	}
}

// TestChecksumFromConfigKey sets the top-level checksum key (here through
// the environment, like a line `checksum: sha512:...` in the file would) with
// another algorithm.
func TestChecksumFromConfigKey(t *testing.T) {
	h := sha512.New()
	if _, err := io.Copy(h, origin.NewReader(ckSize, ckSeed)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DLFLOW_CHECKSUM", "sha512:"+hex.EncodeToString(h.Sum(nil)))
	srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
	out := filepath.Join(t.TempDir(), "f.bin")
	res := runCLI(t, resArgs("ranged", srv.URL(), out, "--log-level", "info")...)
	resAssertDone(t, res, out, ckSize, ckSeed)
	if !strings.Contains(res.stderr, "checksum verified") || !strings.Contains(res.stderr, "sha512") {
		t.Errorf("no sha512 verification logged:\n%s", res.stderr)
	}
}

func TestChecksumMismatch(t *testing.T) {
	got := origin.SHA256Hex(ckSize, ckSeed)
	for _, topo := range exampleTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
			out := filepath.Join(t.TempDir(), "f.bin")
			res := runCLI(t, resArgs(topo, srv.URL(), out, "--checksum", "sha256:"+ckZeros)...)
			if res.code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", res.code, res.stderr)
			}
			msg := ckMessage(t, res)
			for _, needle := range []string{"sha256 mismatch", ckZeros, got} {
				if !strings.Contains(msg, needle) {
					t.Errorf("message %q lacks %q", msg, needle)
				}
			}
			ckAssertNothingLeft(t, out)
		})
	}
}

// TestChecksumReprDigest: a server that declares Repr-Digest (RFC 9530) is
// verified without any checksum configured; a wrong one fails the run; a
// configured checksum takes precedence.
func TestChecksumReprDigest(t *testing.T) {
	right := "sha256:" + origin.SHA256Hex(ckSize, ckSeed)
	for _, tc := range []struct {
		name   string
		topo   string
		faults origin.Faults
		extra  []string
		fails  bool
	}{
		{"sha-256 ranged", "ranged", origin.Faults{ReprDigest: "sha-256"}, nil, false},
		{"sha-512 stream", "stream", origin.Faults{ReprDigest: "sha-512"}, nil, false},
		{"wrong ranged", "ranged", origin.Faults{ReprDigest: "sha-256", WrongDigest: true}, nil, true},
		{"wrong ranged-ordered", "ranged-ordered", origin.Faults{ReprDigest: "sha-512", WrongDigest: true}, nil, true},
		{"wrong stream", "stream", origin.Faults{ReprDigest: "sha-256", WrongDigest: true}, nil, true},
		{"wrong digest on a HEAD", "ranged", origin.Faults{Digest: "sha-256", WrongDigest: true}, nil, true},
		// Without HEAD the probe sees the Digest of a 206, which may
		// describe the part: it is not trusted, so nothing is verified.
		{"digest on a 206 ignored", "ranged", origin.Faults{Digest: "sha-256", WrongDigest: true, NoHEAD: 405}, nil, false},
		{"checksum wins", "ranged", origin.Faults{ReprDigest: "sha-256", WrongDigest: true}, []string{"--checksum", right}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
			srv.SetFaults(tc.faults)
			out := filepath.Join(t.TempDir(), "f.bin")
			res := runCLI(t, resArgs(tc.topo, srv.URL(), out, tc.extra...)...)
			if !tc.fails {
				resAssertDone(t, res, out, ckSize, ckSeed)
				return
			}
			if res.code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", res.code, res.stderr)
			}
			if msg := ckMessage(t, res); !strings.Contains(msg, "mismatch") || !strings.Contains(msg, "the server's digest") {
				t.Errorf("message %q does not report the server's digest", msg)
			}
			ckAssertNothingLeft(t, out)
		})
	}
	t.Run("logged", func(t *testing.T) {
		srv := startOrigin(t, origin.Options{Size: ckSize, Seed: ckSeed})
		srv.SetFaults(origin.Faults{ReprDigest: "sha-256"})
		out := filepath.Join(t.TempDir(), "f.bin")
		res := runCLI(t, resArgs("ranged", srv.URL(), out, "--log-level", "info")...)
		resAssertDone(t, res, out, ckSize, ckSeed)
		for _, needle := range []string{"the server declared a digest", "checksum verified"} {
			if !strings.Contains(res.stderr, needle) {
				t.Errorf("log lacks %q:\n%s", needle, res.stderr)
			}
		}
	})
}

// TestChecksumNeedsAHashTap: a checksum the topology cannot verify is a
// config error, not a silently unverified download.
func TestChecksumNeedsAHashTap(t *testing.T) {
	dir := t.TempDir()
	topo := filepath.Join(dir, "plain.yaml")
	yaml := "stages:\n  fetch:\n    type: http.source\n  write:\n    type: file.sink\n    inputs: [fetch]\n"
	if err := os.WriteFile(topo, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "f.bin")
	res := runCLI(t, "-c", topo, "--url", "http://127.0.0.1:1/f", "-o", out, "--checksum", "sha256:"+ckZeros)
	if res.code != 2 || !strings.Contains(res.stderr, "no stage verifies it") {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	res = runCLI(t, "-c", examplePath("stream"), "--url", "http://127.0.0.1:1/f", "-o", out, "--checksum", "sha256:abc")
	if res.code != 2 || !strings.Contains(res.stderr, "--checksum") || !strings.Contains(res.stderr, "64 hex digits") {
		t.Fatalf("bad checksum: exit %d, stderr:\n%s", res.code, res.stderr)
	}
}

// TestChecksumAfterResume: after a kill, the rerun verifies the whole file:
// it hashes what it fetches as it passes and reads back only the bytes the
// first run left. A mismatch then removes the partial data and its state.
func TestChecksumAfterResume(t *testing.T) {
	for _, tc := range []struct {
		topo  string
		conns []string
	}{
		{"ranged", []string{"--connections", "4"}},
		{"ranged-ordered", []string{"--connections", "4"}},
		{"stream", nil},
	} {
		t.Run(tc.topo, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "big.bin")
			slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, RateLimit: 16 << 20 / int64(max(len(tc.conns)*2, 1))})
			resKillMidway(t, out, resSize/4, resArgs(tc.topo, slow.URL(), out, tc.conns...)...)
			slow.Close()

			fast := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed})
			right := "sha256:" + origin.SHA256Hex(resSize, resSeed)
			res := runCLI(t, resArgs(tc.topo, fast.URL(), out, append(tc.conns, "--checksum", right, "--log-level", "info")...)...)
			resAssertDone(t, res, out, resSize, resSeed)
			if !strings.Contains(res.stderr, "checksum verified") || strings.Contains(res.stderr, `"read_back":0`) {
				t.Errorf("no verification that read back the present bytes:\n%s", res.stderr)
			}
		})
	}
	t.Run("mismatch drops the partial data", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "big.bin")
		slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, RateLimit: 5 << 20})
		resKillMidway(t, out, resSize/4, resArgs("ranged", slow.URL(), out, "--connections", "4")...)
		slow.Close()
		fast := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed})
		res := runCLI(t, resArgs("ranged", fast.URL(), out, "--checksum", "sha256:"+ckZeros)...)
		if res.code != 1 || !strings.Contains(ckMessage(t, res), "mismatch") {
			t.Fatalf("exit %d; stderr:\n%s", res.code, res.stderr)
		}
		ckAssertNothingLeft(t, out)
		fast.WaitIdle(5 * time.Second)
	})
}
