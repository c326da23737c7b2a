package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
)

// A notes.txt.tmp of the user's own, beside -o notes.txt, is not dlflow's
// partial download (no state beside it): the run refuses, exit 1, one
// line naming it and --overwrite, the file untouched and nothing fetched.
// With --overwrite the download replaces it.
func TestForeignTmpIsNotDestroyed(t *testing.T) {
	const size, seed = 3<<20 + 7, 4
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	out := filepath.Join(t.TempDir(), "notes.txt")
	mine := []byte("my own notes, not a download\n")
	if err := os.WriteFile(out+".tmp", mine, 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, srv.URL(), "-o", out, "--no-progress")
	if res.code != exitFailed {
		t.Fatalf("exit %d, want %d; stderr:\n%s", res.code, exitFailed, res.stderr)
	}
	if n := strings.Count(res.stderr, "\n"); n != 1 || !strings.Contains(res.stderr, out+".tmp") || !strings.Contains(res.stderr, "--overwrite") {
		t.Errorf("stderr (%d lines) %q", n, res.stderr)
	}
	if got, err := os.ReadFile(out + ".tmp"); err != nil || string(got) != string(mine) {
		t.Fatalf("the user's file now holds %q (%v)", got, err)
	}
	if _, err := os.Lstat(out); !os.IsNotExist(err) {
		t.Errorf("output: %v, want none", err)
	}
	if _, err := os.Lstat(out + ".tmp.state"); !os.IsNotExist(err) {
		t.Errorf("state: %v, want none", err)
	}
	if b := srv.Stats().BytesServed; b != 0 {
		t.Errorf("%d bytes served for a refused run", b)
	}

	res = runCLI(t, srv.URL(), "-o", out, "--no-progress", "--overwrite")
	if res.code != 0 {
		t.Fatalf("with --overwrite: exit %d; stderr:\n%s", res.code, res.stderr)
	}
	if got := fileSHA256(t, out); got != origin.SHA256Hex(size, seed) {
		t.Errorf("sha256 %s, want %s", got, origin.SHA256Hex(size, seed))
	}
}

// A download that cannot be resumed (no length, no ranges) and fails
// keeps its PATH.tmp with a state of no ranges, so that the rerun, without
// --overwrite, takes it as dlflow's and starts over.
func TestUnresumableTmpIsStillOurs(t *testing.T) {
	const size, seed = 2<<20 + 1, 6
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	srv.SetFaults(origin.Faults{NoLength: true, DropAfter: 256 << 10})
	out := filepath.Join(t.TempDir(), "f.bin")
	res := runCLI(t, srv.URL(), "-o", out, "--no-progress", "--set", "stages.fetch.config.total_retries=0")
	if res.code != exitFailed {
		t.Fatalf("exit %d, want %d; stderr:\n%s", res.code, exitFailed, res.stderr)
	}
	fi, err := os.Stat(out + ".tmp")
	if err != nil || fi.Size() == 0 {
		t.Fatalf("partial download: %v, %v; stderr:\n%s", fi, err, res.stderr)
	}
	st, ok := readResState(t, out)
	if !ok || st.claimed() != 0 {
		t.Fatalf("state %+v (present %v), want one of no ranges", st, ok)
	}
	srv.SetFaults(origin.Faults{NoLength: true})
	res = runCLI(t, srv.URL(), "-o", out, "--no-progress")
	if res.code != 0 {
		t.Fatalf("rerun: exit %d; stderr:\n%s", res.code, res.stderr)
	}
	if got := fileSHA256(t, out); got != origin.SHA256Hex(size, seed) {
		t.Errorf("sha256 %s, want %s", got, origin.SHA256Hex(size, seed))
	}
}
