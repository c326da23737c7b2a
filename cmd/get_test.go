package cmd

// Helpers of the CLI tests that download. The downloads themselves (every
// example topology, connections, no Content-Length, the default topology,
// leaks after cancel, failure and success, a server ignoring ranges) are
// tested through the library: the dlflow package's topologies_test.go.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
)

func examplePath(name string) string { return filepath.Join("..", "examples", name+".yaml") }

// assertComplete fails the test unless path holds exactly the origin's
// bytes and no .tmp was left behind.
func assertComplete(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("output: %v", err)
	}
	if fi.Size() != size {
		t.Fatalf("output is %d bytes, want %d", fi.Size(), size)
	}
	if got, want := fileSHA256(t, path), origin.SHA256Hex(size, seed); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(".tmp left behind: %v", err)
	}
}

// assertFailedCleanly fails the test unless the run failed with exit code
// want, printed exactly one line on stderr containing each of needles, and
// left no output.
func assertFailedCleanly(t *testing.T, res cliResult, want int, path string, needles ...string) {
	t.Helper()
	if res.code != want {
		t.Fatalf("exit %d, want %d; stderr: %s", res.code, want, res.stderr)
	}
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Fatalf("stderr is %d lines, want one:\n%s", len(lines), res.stderr)
	}
	for _, n := range needles {
		if !strings.Contains(lines[0], n) {
			t.Errorf("stderr %q does not mention %q", lines[0], n)
		}
	}
	if strings.Contains(res.stderr, "goroutine ") || strings.Contains(res.stderr, "panic") {
		t.Errorf("stderr looks like a stack trace: %s", res.stderr)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output exists after a failed run: %v", err)
	}
}
