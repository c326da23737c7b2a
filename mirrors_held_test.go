package dlflow_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// heldOrigin serves content with ranges, and holds every GET but the
// first of each path (the probe's) without an answer until release is closed, the
// client gives up, or holdMax passed; it counts the holds that ran out.
type heldOrigin struct {
	*httptest.Server
	content []byte
	release chan struct{}
	once    sync.Once

	mu       sync.Mutex
	gets     map[string]int // per path
	held     int            // GETs held
	ranOut   int            // held GETs answered because holdMax passed
	answered int            // GETs answered
}

// holdMax bounds a hold, so that a test never waits on its own origin
// forever.
const holdMax = 10 * time.Second

func startHeld(t *testing.T, content []byte) *heldOrigin {
	t.Helper()
	h := &heldOrigin{content: content, release: make(chan struct{}), gets: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(func() {
		h.free()
		h.Close()
	})
	return h
}

// free ends every hold.
func (h *heldOrigin) free() { h.once.Do(func() { close(h.release) }) }

func (h *heldOrigin) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.gets[r.URL.Path]++
	hold := r.Method == http.MethodGet && h.gets[r.URL.Path] > 1
	if hold {
		h.held++
	}
	h.mu.Unlock()
	if hold {
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		case <-time.After(holdMax):
			h.mu.Lock()
			h.ranOut++
			h.mu.Unlock()
		}
	}
	h.mu.Lock()
	h.answered++
	h.mu.Unlock()
	serveSame(w, r, h.content)
}

// serveSame answers r with content, ranges included, with the validators
// every server of these tests shares.
func serveSame(w http.ResponseWriter, r *http.Request, content []byte) {
	w.Header().Set("ETag", `"held-1"`)
	http.ServeContent(w, r, "file.bin", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), bytes.NewReader(content))
}

func (h *heldOrigin) counts() (held, ranOut, answered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held, h.ranOut, h.answered
}

// TestMirrorAskedWhilePrimaryHolds: the primary answers the probe, and
// the copy of the file on its origin its first request; then both hold
// every request without a header. The mirror on another origin, not
// measured yet, must be asked for that work (a probe of the stalled
// range), and then serves the rest: the download completes exact while
// every held request is still held. Before, its idle replicas were offered
// nothing (a source that never answered takes over no silent request, and
// a range not answered is not split): the primary and its copy took each
// other's silent requests over, and the download waited for the holds to
// run out (holdMax).
func TestMirrorAskedWhilePrimaryHolds(t *testing.T) {
	noLeaks(t)
	const size, seed = 4<<20 + 77, 41
	content := make([]byte, size)
	origin.Fill(content, 0, seed)
	primary := startHeld(t, content)
	var mu sync.Mutex
	var mirrorGets int
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		mirrorGets++
		mu.Unlock()
		serveSame(w, r, content)
	}))
	t.Cleanup(mirror.Close)

	out := fltOut(t)
	req := mirRequest(primary.URL+"/file.bin", out, primary.URL+"/copy.bin", mirror.URL+"/file.bin")
	req.Sets = append(req.Sets, "stages.split.config.piece=256KiB")
	res, err := do(t, req) // bounded by testTimeout
	held, ranOut, answered := primary.counts()
	primary.free()
	fltOK(t, res, err, out, size, seed) // the size and sha256 of the output
	got := sourceBytes(t, res.Sources, 3)
	mu.Lock()
	asked := mirrorGets
	mu.Unlock()
	t.Logf("primary's origin: %d requests held, %d ran out, %d answered; mirror: %d requests; bytes per source %v",
		held, ranOut, answered, asked, got)
	if ranOut != 0 || answered > 2 {
		t.Errorf("the primary's origin answered %d requests, %d of them when their hold ran out: the download waited for it", answered, ranOut)
	}
	if asked == 0 || got[2] == 0 || got[0]+got[1]+got[2] != size {
		t.Errorf("the mirror got %d requests; bytes per source %v, want %d in all, some from the mirror", asked, got, size)
	}
}
