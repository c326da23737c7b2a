package bench

import (
	"errors"
	"os"
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
