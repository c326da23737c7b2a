package daemon_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/daemon"
)

// TestSoak runs the daemon under a steady churn for DLFLOW_SOAK (a
// duration, e.g. 1h; skipped without it, so not in CI): tasks added,
// paused, unpaused, removed, moved and purged at random against a
// throttled origin, with tellActive polled as a UI would. Every minute it
// checks the heap and the goroutines stay under a bound (the ended
// results are capped at 1,000, as aria2's max-download-result), and at the
// end that every completed file is right.
//
//	DLFLOW_SOAK=1h go test -run TestSoak -timeout 2h -v ./daemon/
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("DLFLOW_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set DLFLOW_SOAK=1h to run the soak")
	}
	const size = 256 << 10
	o := startOrigin(t, origin.Options{Size: size, Seed: 11, Files: 64, RateLimit: 512 << 10})
	eng, c := newInProcess(t, daemon.Options{Jobs: 8, MaxPerHost: 16})
	rng := rand.New(rand.NewPCG(1, 2))
	var gidsAdded []string
	deadline := time.Now().Add(d)
	nextCheck := time.Now().Add(time.Minute)
	var heap0 uint64
	var goroutines0 int
	for i := 0; time.Now().Before(deadline); i++ {
		switch r := rng.IntN(100); {
		case r < 40:
			var gid string
			c.must(t, &gid, "aria2.addUri", []string{o.FileURL(i % 64)}, map[string]string{"out": fmt.Sprintf("s%07d.bin", i)})
			gidsAdded = append(gidsAdded, gid)
		case r < 50 && len(gidsAdded) > 0:
			c.call(t, "aria2.pause", gidsAdded[rng.IntN(len(gidsAdded))])
		case r < 60:
			c.must(t, nil, "aria2.unpauseAll")
		case r < 65 && len(gidsAdded) > 0:
			c.call(t, "aria2.remove", gidsAdded[rng.IntN(len(gidsAdded))])
		case r < 70 && len(gidsAdded) > 0:
			c.call(t, "aria2.changePosition", gidsAdded[rng.IntN(len(gidsAdded))], rng.IntN(20)-10, "POS_CUR")
		case r < 71:
			c.must(t, nil, "aria2.purgeDownloadResult")
			gidsAdded = gidsAdded[:0]
		default:
			c.must(t, nil, "aria2.tellActive", []string{"gid", "completedLength"})
		}
		time.Sleep(20 * time.Millisecond)
		if time.Now().After(nextCheck) {
			nextCheck = time.Now().Add(time.Minute)
			h, g := heapAlloc(), runtime.NumGoroutine()
			s := eng.Engine().MetricsSnapshot()
			t.Logf("heap %d KiB, %d goroutines, %d active, %d waiting, %d stopped", h>>10, g, s.Active, s.Waiting, s.Stopped)
			if heap0 == 0 {
				heap0, goroutines0 = h, g
			} else if h > heap0+uint64(s.Waiting)*4<<10+64<<20 || g > goroutines0+500 {
				t.Fatalf("heap %d KiB (first %d), goroutines %d (first %d): growing", h>>10, heap0>>10, g, goroutines0)
			}
		}
	}
	// Drain: what is left completes (the last purge may have taken the
	// results before it).
	c.must(t, nil, "aria2.unpauseAll")
	waitFor(t, 5*time.Minute, "the queue to drain", func() bool {
		var st map[string]string
		c.must(t, &st, "aria2.getGlobalStat")
		return st["numActive"] == "0" && st["numWaiting"] == "0"
	})
	var stopped []status
	c.must(t, &stopped, "aria2.tellStopped", 0, 1000, []string{"gid", "status", "files"})
	checked := 0
	for _, s := range stopped {
		if s.Status == "complete" && len(s.Files) == 1 {
			var i int
			if _, err := fmt.Sscanf(filepath.Base(s.Files[0].Path), "s%07d.bin", &i); err != nil {
				t.Fatalf("%s: %v", s.Files[0].Path, err)
			}
			checked++
			if got := fileSHA256(t, s.Files[0].Path); got != origin.SHA256Hex(size, origin.FileSeed(11, i%64)) {
				t.Errorf("%s: wrong sha256", s.Files[0].Path)
			}
		}
	}
	t.Logf("%d completed files checked", checked)
	if checked == 0 {
		t.Error("no task completed")
	}
}
