package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// Integrity through the CLI: --checksum is a usage error when no stage can
// verify it, and a rerun after a kill verifies the whole file. Verification
// itself (every topology, the checksum key, Repr-Digest, mismatches) is
// tested through the library: the dlflow package's checksum_test.go.

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

// TestChecksumNeedsAHashTap: a checksum the topology cannot verify (its
// bytes arrive in any order, and it has no hash.tap, which dlflow adds only
// to one ordered stream) is a usage error naming the need, not a silently
// unverified download.
func TestChecksumNeedsAHashTap(t *testing.T) {
	dir := t.TempDir()
	topo := filepath.Join(dir, "plain.yaml")
	yaml := "stages:\n  split:\n    type: range.splitter\n  fetch:\n    type: http.reader\n    inputs: [split]\n" +
		"  write:\n    type: file.sink\n    inputs: [fetch]\n    config: {mode: positional}\n"
	if err := os.WriteFile(topo, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "f.bin")
	res := runCLI(t, "-c", topo, "--url", "http://127.0.0.1:1/f", "-o", out, "--checksum", "sha256:"+ckZeros)
	if res.code != 2 || !strings.Contains(res.stderr, "has no stage that provides checksum") {
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

// A malformed --checksum is one line that names the flag once and says
// what is wrong, without the stutter of wrapped errors ("--checksum:
// checksum: checksum ...").
func TestChecksumFlagErrorSaysItOnce(t *testing.T) {
	out := filepath.Join(t.TempDir(), "f.bin")
	for value, want := range map[string]string{
		"sha256:abc": `dlflow: --checksum: "sha256:abc" is not a checksum: a sha256 digest is 64 hex digits`,
		"abc":        `dlflow: --checksum: "abc" is not a checksum: want algorithm:hex, such as sha256:<64 hex digits>`,
	} {
		res := runCLI(t, "--url", "http://127.0.0.1:1/f", "-o", out, "--checksum", value)
		if got := strings.SplitN(res.stderr, "\n", 2)[0]; res.code != 2 || got != want {
			t.Errorf("--checksum %s: exit %d, %q; want %q", value, res.code, got, want)
		}
	}
}
