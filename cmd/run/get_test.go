package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dlflow/dlflow/internal/origin"
)

func TestGetStreamsTheExactBytes(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 3<<20 + 5, Seed: 7})
	out := filepath.Join(t.TempDir(), "out.bin")
	res := runCLI(t, "-c", "../../examples/stream.yaml", "--url", srv.URL(), "-o", out)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if got, want := fileSHA256(t, out), origin.SHA256Hex(3<<20+5, 7); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf(".tmp left behind: %v", err)
	}
}
