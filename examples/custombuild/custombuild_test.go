package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// buildBinary builds pkg with go build into dir, as a user builds it.
func buildBinary(t *testing.T, pkg, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build with")
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if msg, err := exec.CommandContext(ctx, goTool, "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// custom is the custom binary, built once for the tests that run it.
var custom struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// customBinary builds this example once (into a directory TestMain
// removes) and returns its path.
func customBinary(t *testing.T) string {
	t.Helper()
	custom.once.Do(func() {
		if custom.dir, custom.err = os.MkdirTemp("", "custombuild"); custom.err == nil {
			custom.path = buildBinary(t, "github.com/dlflow/dlflow/examples/custombuild", custom.dir)
		}
	})
	if custom.err != nil || custom.path == "" {
		t.Fatalf("building the custom binary: %v", custom.err)
	}
	return custom.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if custom.dir != "" {
		os.RemoveAll(custom.dir)
	}
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func runBinary(t *testing.T, exe string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("%s %q: %v", exe, args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// listsType reports whether the output of `stages` has a row for typ.
func listsType(stagesOut, typ string) bool {
	for _, line := range strings.Split(stagesOut, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == typ {
			return true
		}
	}
	return false
}

// TestCustomBinary builds this example and the stock CLI: the custom one
// knows throttle.tap and downloads through it byte for byte; the stock one
// ships the built-in stage types only.
func TestCustomBinary(t *testing.T) {
	dir := t.TempDir()
	custom := customBinary(t)
	stock := buildBinary(t, "github.com/dlflow/dlflow/cmd/run", dir)

	res := runBinary(t, custom, "stages")
	if res.code != 0 || !listsType(res.stdout, "throttle.tap") || !listsType(res.stdout, "http.reader") {
		t.Fatalf("custom stages: exit %d, stdout:\n%s\nstderr: %s", res.code, res.stdout, res.stderr)
	}

	const size, seed = 3<<20 + 11, 7
	srv, err := origin.Start(origin.Options{Size: size, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	topology := filepath.Join("..", "customstage", "throttled.yaml")
	out := filepath.Join(dir, "out.bin")
	// 3 MiB at 8 MiB/s: the throttle is in the path, and the test stays
	// short.
	res = runBinary(t, custom, "-c", topology, "--url", srv.URL(), "-o", out, "-q", "--set", "stages.limit.config.rate=8MiB")
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("custom download: exit %d, stderr %q", res.code, res.stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprintf("%x", sha256.Sum256(data)), origin.SHA256Hex(size, seed); got != want || len(data) != size {
		t.Errorf("custom download: %d bytes, sha256 %s; want %d bytes, %s", len(data), got, size, want)
	}

	res = runBinary(t, stock, "stages")
	if res.code != 0 || listsType(res.stdout, "throttle.tap") || !listsType(res.stdout, "http.reader") {
		t.Errorf("stock stages: exit %d, want the built-in types without throttle.tap:\n%s", res.code, res.stdout)
	}
	res = runBinary(t, stock, "validate", "-c", topology)
	if res.code != 2 || !strings.Contains(res.stderr, `"throttle.tap"`) {
		t.Errorf("stock validate of %s: exit %d, stderr %q; want exit 2 naming throttle.tap", topology, res.code, res.stderr)
	}
}
