package bench

import (
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPeakRSSIsTheChildsOwn: under GNU time a child's peak RSS is its own,
// however large the bench is. This process grows by a 128 MiB ballast
// first; a child started straight from it (vfork) reports at least that
// much, since Linux carries the parent's peak into the child at exec,
// while `true` under GNU time reports its own few hundred KiB.
func TestPeakRSSIsTheChildsOwn(t *testing.T) {
	timePath := timeTool()
	if timePath == "" {
		t.Skip("GNU time is not installed")
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true command")
	}
	const ballast = 128 << 20
	// Mapped and populated by the kernel: resident at once, and no work
	// for the race detector.
	mem, err := unix.Mmap(-1, 0, ballast, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	rss := filepath.Join(t.TempDir(), "rss")

	direct, err := measureWith(exec.Command(truePath), rss, "")
	if err != nil {
		t.Fatal(err)
	}
	if direct.maxRSS < ballast {
		t.Errorf("started straight from this process, true reports a peak RSS of %d bytes, below the ballast of %d: this kernel does not carry the parent's peak over vfork, and the check below proves less", direct.maxRSS, ballast)
	}
	timed, err := measureWith(exec.CommandContext(t.Context(), truePath), rss, timePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("peak RSS of true: %d bytes straight, %d under GNU time", direct.maxRSS, timed.maxRSS)
	if timed.maxRSS <= 0 || timed.maxRSS >= 32<<20 {
		t.Errorf("under GNU time, true reports a peak RSS of %d bytes; want its own, above 0 and below 32 MiB", timed.maxRSS)
	}
}
