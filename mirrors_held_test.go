package dlflow_test

import (
	"testing"

	"github.com/dlflow/dlflow/internal/credtest"
)

// TestMirrorAskedWhilePrimaryHolds: the primary answers the probe, and
// the copy of the file on its origin its first request; then both hold
// every request without a header (credtest.Hold: up to 10 s). The mirror
// on another origin, not measured yet, must be asked for that work (a
// probe of a stalled range), and then serves the rest: the download
// completes exact while every held request is still held. Before, its
// idle replicas were offered nothing when the others had taken the input
// (a source that never answered takes over no silent request, and a range
// not answered is not split): the primary and its copy took each other's
// silent requests over, and the download waited for the holds to run out.
func TestMirrorAskedWhilePrimaryHolds(t *testing.T) {
	noLeaks(t)
	content := credContent()
	primary := credtest.Start(t, "127.0.0.1", content)
	mirror := credtest.Start(t, "127.0.0.2", content)
	release := make(chan struct{})
	defer close(release)
	primary.Hold("/file.bin", release)
	primary.Hold("/copy.bin", release)

	out := fltOut(t)
	req := mirRequest(primary.URL+"/file.bin", out, primary.URL+"/copy.bin", mirror.URL+"/file.bin")
	req.Sets = append(req.Sets, "stages.split.config.piece=256KiB")
	res, err := do(t, req)                      // bounded by testTimeout
	fltOK(t, res, err, out, credSize, credSeed) // the size and sha256 of the output
	got := sourceBytes(t, res.Sources, 3)
	asked := len(mirror.Requests())
	t.Logf("primary's origin: %d requests, %d answered when their hold ran out; mirror: %d requests; bytes per source %v",
		len(primary.Requests()), primary.RanOut(), asked, got)
	if primary.RanOut() != 0 {
		t.Errorf("%d held requests were answered when their hold ran out: the download waited for them", primary.RanOut())
	}
	if asked == 0 || got[2] == 0 || got[0]+got[1]+got[2] != credSize {
		t.Errorf("the mirror got %d requests; bytes per source %v, want %d in all, some from the mirror", asked, got, credSize)
	}
}
