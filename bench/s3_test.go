package bench

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/bench/weed"
	_ "github.com/dlflow/dlflow/sinks/s3" // the memory bound of s3.yaml
)

// needWeed skips t without weed, or fails it when CI is set.
func needWeed(t *testing.T) {
	t.Helper()
	if _, err := weed.Binary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// s3Options are a bench of the s3 scenarios on a file of two parts (and
// a few bytes of a third), registry with the S3 backend.
func s3Options(t *testing.T, scenarios ...Scenario) Options {
	o := testOptions(t)
	o.Registry = nil // pipeline.DefaultRegistry: s3.sink registers there
	o.Scenarios, o.Runs, o.Size, o.ConnRate = scenarios, 1, 16<<20+5, 64<<20
	return o
}

// TestRunS3Scenarios: dlflow uploads to the bench's weed as `URL -o
// s3://...`, each object read back and checked; s3cap caps the origin's
// connections; --compare adds curl | s5cmd pipe where s5cmd is installed
// and says why not where it is not; weed's directory is gone after.
func TestRunS3Scenarios(t *testing.T) {
	needWeed(t)
	o := s3Options(t, ScenarioS3, ScenarioS3Cap)
	o.Compare = true
	var skipped []string
	o.Progress = func(e Event) {
		if e.Kind == Skipped {
			skipped = append(skipped, string(e.Scenario)+": "+e.Cell+": "+e.Reason)
		}
	}
	res := run(t, o)
	want := []string{"auto"}
	if installed("s5cmd") && installed("curl") {
		want = append(want, "curl | s5cmd pipe")
		if len(skipped) > 0 {
			t.Errorf("skipped %q with s5cmd installed", skipped)
		}
	} else if len(skipped) != 2 {
		t.Errorf("skipped %q, want the s5cmd row of both scenarios, with a reason", skipped)
	}
	for _, c := range res.Cells {
		if !c.Verified || c.SHA256 != "ok" || c.Bytes != int64(o.Size) || c.Runs != 1 || c.Failed() {
			t.Errorf("%s %s: %+v", c.Scenario, c.Label, c)
		}
		if c.Tool == "dlflow" && (c.MemoryBound < 64<<20 || !slices.Contains(c.Command, "s3://"+s3Bucket+"/"+s3Key) || slices.Contains(c.Command, "-c")) {
			t.Errorf("%s: bound %d, command %q: want s3.yaml's bound and -o s3://, no -c", c.Label, c.MemoryBound, c.Command)
		}
	}
	if got := labels(res.Cells); !slices.Equal(got, append(slices.Clone(want), want...)) {
		t.Errorf("cells %q, want %q in each scenario", got, want)
	}
	if got := res.Servers[ScenarioS3Cap]; !strings.Contains(got, "64MiB/s per TCP connection") || !strings.Contains(got, "SeaweedFS") {
		t.Errorf("s3cap server %q", got)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, "weed")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("weed's directory stays: %v", err)
	}
}

// TestRunS3WrongObject: a tool that uploads a wrong object (one byte
// changed) fails its cell with a sha256 mismatch read back from the
// store.
func TestRunS3WrongObject(t *testing.T) {
	needWeed(t)
	o := s3Options(t, ScenarioS3)
	o.Env = append(o.Env, "BENCH_TEST_CORRUPT_S3=1")
	res := run(t, o)
	c := res.Cells[0]
	right := origin.SHA256Hex(int64(o.Size), seed)
	if len(res.Cells) != 1 || c.Verified || c.SHA256 != "failed" || !res.Failed() || c.Runs != 0 ||
		!strings.HasPrefix(c.Error, "sha256 mismatch: got ") || !strings.HasSuffix(c.Error, "want "+right) || strings.Contains(c.Error, "got "+right) {
		t.Errorf("a wrong object: %+v", res.Cells)
	}
}

// TestS5cmdRowSkipped: without s5cmd on PATH the s3 scenarios have no
// reference row, and a Skipped event names why and how to install it;
// with it (a stand-in on PATH) the row runs curl | s5cmd pipe.
func TestS5cmdRowSkipped(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"curl", "sh"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s is not installed", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	var events []Event
	o := Options{Compare: true, Progress: func(e Event) { events = append(events, e) }}
	if cells := s3ReferenceCells(o, ScenarioS3Cap); len(cells) != 0 {
		t.Fatalf("without s5cmd: cells %+v", cells)
	}
	if len(events) != 1 || events[0].Kind != Skipped || events[0].Scenario != ScenarioS3Cap || events[0].Cell != "curl | s5cmd pipe" ||
		!strings.Contains(events[0].Reason, "s5cmd is not on PATH") || !strings.Contains(events[0].Reason, "github.com/peak/s5cmd/v2@v2.3.0") {
		t.Fatalf("events %+v, want one Skipped naming s5cmd and its install", events)
	}
	if err := os.WriteFile(filepath.Join(bin, "s5cmd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	events = nil
	cells := s3ReferenceCells(o, ScenarioS3)
	if len(cells) != 1 || cells[0].Tool != "s5cmd" || cells[0].Label != "curl | s5cmd pipe" || len(events) != 0 {
		t.Fatalf("with s5cmd: cells %+v, events %+v", cells, events)
	}
	cmd, err := cells[0].command(t.Context(), job{url: "http://127.0.0.1:1/f", object: "s3://b/k", endpoint: "http://127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cmd.Args[2:], " "); !strings.Contains(got, `pipe "$5"`) || !strings.HasSuffix(got, "http://127.0.0.1:1/f "+filepath.Join(bin, "s5cmd")+" http://127.0.0.1:2 s3://b/k") {
		t.Errorf("command %q", cmd.Args)
	}
}
