package sinks

import (
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// What the tests of package sinks_test watch inside a file sink.

// Switches is how often a replica of the last run changed the way it
// writes (direct: auto).
func (s *FileSink) Switches() int64 { return s.switches.Load() }

// DirectBytes and CachedBytes are the bytes the last run wrote direct and
// through the page cache.
func (s *FileSink) DirectBytes() int64 { return s.directBytes.Load() }
func (s *FileSink) CachedBytes() int64 { return s.cachedBytes.Load() }

// SlowDisk makes each gathered direct write take d longer until restore
// is called.
func SlowDisk(d time.Duration) (restore func()) {
	slowDisk = func() { time.Sleep(d) }
	return func() { slowDisk = nil }
}

// DirectWrites is how many direct writes the last run made.
func (s *FileSink) DirectWrites() int64 { return s.directWrites.Load() }

// TuneChooser sets direct: auto's least window, warm-up and backoff for a
// test, makes every window hold the download up, lets a trial start however
// little is left, and makes every trial win or lose; it returns what
// restores them.
func TuneChooser(windowBytes, warmup, backoff int64, trialsWin bool) (restore func()) {
	w, u, b, st, tl, tw := chooseWindow, chooseWarmup, chooseBackoff, chooseStall, chooseTrialLeft, trialWins
	chooseWindow, chooseWarmup, chooseBackoff, chooseStall, chooseTrialLeft = windowBytes, warmup, backoff, -1, 0
	trialWins = func(trial, base window, remaining int64) bool { return trialsWin }
	return func() {
		chooseWindow, chooseWarmup, chooseBackoff, chooseStall, chooseTrialLeft, trialWins = w, u, b, st, tl, tw
	}
}

// CountProbes counts the probe files Preflight makes in each directory
// until restore is called; probes reports the count for dir.
func CountProbes() (probes func(dir string) int, restore func()) {
	var mu sync.Mutex
	counts := map[string]int{}
	orig := fsx.CreateTemp
	fsx.CreateTemp = func(dir, pattern string) (*os.File, error) {
		mu.Lock()
		counts[filepath.Clean(dir)]++
		mu.Unlock()
		return orig(dir, pattern)
	}
	return func(dir string) int {
			mu.Lock()
			defer mu.Unlock()
			return counts[filepath.Clean(dir)]
		}, func() {
			fsx.CreateTemp = orig
		}
}

// HideReservations runs f as if no Preflight of this process had made a
// PATH.tmp: f's runs open and lock it as another process would.
func HideReservations(f func()) {
	reservations.Lock()
	saved := reservations.files
	reservations.files = map[string]reservation{}
	reservations.Unlock()
	defer func() {
		reservations.Lock()
		reservations.files = saved
		reservations.Unlock()
	}()
	f()
}
