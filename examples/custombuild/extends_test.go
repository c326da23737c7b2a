package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
)

// TestCustomBinaryExtendsAuto is issue 19's "done when": the custom binary
// downloads 64 MiB with a file that extends auto and inserts its throttle
// tap, and --checksum. The ranged topology is picked (the summary names
// it, and more than one connection ran), the checksum is verified (the
// summary says so, and the file's sha256 is the origin's), the throttle is
// in the path (the run lasts at least size/rate), and the progress moves:
// the progress tap's events, which the bar draws from, report growing
// byte counts during the download.
func TestCustomBinaryExtendsAuto(t *testing.T) {
	exe := customBinary(t)
	const size, seed = 64 << 20, 19
	srv, err := origin.Start(origin.Options{Size: size, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "out.bin")
	sum := origin.SHA256Hex(size, seed)
	// 64 MiB at 128 MiB/s: half a second at least, which a 50 ms progress
	// interval ticks through many times.
	res := runBinary(t, exe, "-c", filepath.Join("..", "customstage", "throttle-auto.yaml"), srv.URL(), "-o", out,
		"--checksum", "sha256:"+sum, "--json", "--log-level", "info", "--log-format", "json",
		"--set", "stages.limit.config.rate=128MiB", "--set", "stages.progress.config.interval=50ms")
	if res.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	var summary struct {
		Bytes       int64   `json:"bytes"`
		Seconds     float64 `json:"seconds"`
		Connections int     `json:"connections"`
		Checksum    string  `json:"checksum"`
		Topology    string  `json:"topology"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &summary); err != nil {
		t.Fatalf("--json: %v: %q", err, res.stdout)
	}
	wantTopology := "(built-in) ranged.yaml extended by " + filepath.Join("..", "customstage", "throttle-auto.yaml")
	if summary.Topology != wantTopology || summary.Connections < 2 || summary.Bytes != size || summary.Checksum != "sha256:"+sum {
		t.Errorf("summary %+v; want %s, several connections, %d bytes, checksum sha256:%s", summary, wantTopology, size, sum)
	}
	if summary.Seconds < 0.5 {
		t.Errorf("64 MiB in %.2fs: faster than the throttle's 128 MiB/s, so the inserted stage did not run", summary.Seconds)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(data)); got != sum || len(data) != size {
		t.Errorf("output: %d bytes, sha256 %s; want %d, %s", len(data), got, size, sum)
	}
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "dlflow: saved ") || !strings.HasSuffix(last, "sha256:"+sum+" verified") {
		t.Errorf("summary line %q, want one that says the checksum was verified", last)
	}
	if moving := progressSteps(t, lines[:len(lines)-1], size); moving < 2 {
		t.Errorf("%d progress events with a growing count below the size, want 2 or more:\n%s", moving, res.stderr)
	}
}

// progressSteps counts the progress events whose bytes grew from the one
// before and are still below size: the steps of a moving bar.
func progressSteps(t *testing.T, lines []string, size int64) int {
	t.Helper()
	steps, last := 0, int64(0)
	for _, line := range lines {
		var ev struct {
			Message string `json:"message"`
			Stage   string `json:"stage"`
			Bytes   int64  `json:"bytes"`
			Total   int64  `json:"total"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("a log line is not JSON (%v): %q", err, line)
		}
		if ev.Message != "progress" {
			continue
		}
		if ev.Total != size {
			t.Errorf("progress event with total %d, want %d: %s", ev.Total, size, line)
		}
		if ev.Bytes > last && ev.Bytes < size {
			steps++
		}
		last = max(last, ev.Bytes)
	}
	return steps
}
