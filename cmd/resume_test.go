package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// Resume across runs: a download killed with SIGKILL (no chance to clean
// up) is rerun, and the rerun fetches only what the state file says is
// missing, whatever the topology or the number of connections.

const (
	resSize  = 48 << 20
	resSeed  = 11
	resPiece = 4 << 20 // the examples' piece size
	// resETag names the content, as S3's MD5 does: the reruns below ask
	// another origin (another URL), which the file sink resumes only when
	// the ETag is not one made of size and time (the origin's default
	// "size-seed" has that form).
	resETag = `"b1946ac92492d2347c6235b4d2611184"`
)

// resState mirrors the file sink's state file (sinks/state.go).
type resState struct {
	Version      int        `json:"version"`
	URL          string     `json:"url"`
	Size         int64      `json:"size"`
	ETag         string     `json:"etag"`
	LastModified string     `json:"last_modified"`
	Ranges       [][2]int64 `json:"ranges"`
}

// claimed is the number of bytes the state says are on disk.
func (s resState) claimed() int64 {
	var n int64
	for _, r := range s.Ranges {
		n += r[1] - r[0]
	}
	return n
}

// readResState reads OUTPUT.tmp.state; ok is false when there is none (or
// it is being replaced, which is atomic, so that does not happen).
func readResState(t *testing.T, out string) (resState, bool) {
	t.Helper()
	data, err := os.ReadFile(out + ".tmp.state")
	if errors.Is(err, os.ErrNotExist) {
		return resState{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var s resState
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("state file: %v: %s", err, data)
	}
	return s, true
}

func resArgs(topology, url, out string, extra ...string) []string {
	return append([]string{"-c", examplePath(topology), "--url", url, "-o", out}, extra...)
}

// resKillMidway runs the CLI as a separate process, waits (bounded) until
// its state file claims at least least bytes, kills it with SIGKILL, and
// returns the state it left behind.
func resKillMidway(t *testing.T, out string, least int64, args ...string) resState {
	t.Helper()
	return resStopMidway(t, out, least, syscall.SIGKILL, args...)
}

// resStopMidway is resKillMidway with the signal of one's choice.
func resStopMidway(t *testing.T, out string, least int64, sig syscall.Signal, args ...string) resState {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killed := false
	defer func() {
		if !killed { // the test failed before the kill
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s, ok := readResState(t, out); ok && s.claimed() >= least {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the state file claims less than %d bytes after 60s; stderr:\n%s", least, stderr.String())
		}
		select {
		case err := <-done:
			killed = true
			t.Fatalf("the CLI ended before it could be killed: %v; stderr:\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after %v", sig)
	}
	killed = true
	if fltExists(out) {
		t.Fatalf("%s exists after the kill", out)
	}
	s, ok := readResState(t, out)
	if !ok {
		t.Fatal("no state file after the kill")
	}
	if s.claimed() >= s.Size {
		t.Fatalf("the run was complete before the kill (%d bytes claimed)", s.claimed())
	}
	return s
}

// resCheckClaims fails unless every byte the state claims is in OUTPUT.tmp
// with the right content: a state must never claim bytes that are not on
// disk.
func resCheckClaims(t *testing.T, out string, s resState, seed uint64) {
	t.Helper()
	f, err := os.Open(out + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range s.Ranges {
		got := make([]byte, r[1]-r[0])
		if _, err := f.ReadAt(got, r[0]); err != nil {
			t.Fatalf("range %v: %v", r, err)
		}
		want := make([]byte, len(got))
		origin.Fill(want, r[0], seed)
		if string(got) != string(want) {
			t.Fatalf("the state claims [%d,%d), which does not hold the file's bytes", r[0], r[1])
		}
	}
}

// resAssertDone fails unless out is complete and neither OUTPUT.tmp nor its
// state is left.
func resAssertDone(t *testing.T, res cliResult, out string, size int64, seed uint64) {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", res.code, res.stderr)
	}
	if got, want := fileSHA256(t, out), origin.SHA256Hex(size, seed); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	for _, p := range []string{out + ".tmp", out + ".tmp.state", out + ".tmp.state.new"} {
		if fltExists(p) {
			t.Errorf("%s left behind", p)
		}
	}
}

// TestResumeAfterKill is the key test: kill a download with SIGKILL once a
// quarter is on disk, rerun it against an unthrottled origin with the same
// file, and check that the rerun fetched no more than what was missing
// (plus at most one piece per connection).
func TestResumeAfterKill(t *testing.T) {
	for _, tc := range []struct {
		name           string
		first, second  string // topologies
		conns1, conns2 int    // 0 for the stream
		rate           int64  // per connection, bytes/s, in the first run
		// least is how much the state must claim before the kill. Past the
		// first checkpoint (16 MiB, when 4 readers have just finished
		// their first pieces) the positional state has holes: the pieces
		// in flight are partly written.
		least int64
	}{
		{"ranged", "ranged", "ranged", 4, 4, 5 << 20, resSize * 35 / 100},
		{"ranged then 8 connections", "ranged", "ranged", 4, 8, 5 << 20, resSize * 35 / 100},
		{"ranged-ordered", "ranged-ordered", "ranged-ordered", 4, 4, 5 << 20, resSize / 4},
		{"stream", "stream", "stream", 0, 0, 16 << 20, resSize / 4},
		{"buffered", "buffered", "buffered", 0, 0, 16 << 20, resSize / 4},
		{"stream then ranged", "stream", "ranged", 0, 8, 16 << 20, resSize / 4},
		{"ranged then ranged-ordered", "ranged", "ranged-ordered", 4, 4, 5 << 20, resSize * 35 / 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "big.bin")
			slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag, RateLimit: tc.rate})
			var extra1, extra2 []string
			if tc.conns1 > 0 {
				extra1 = []string{"--connections", fmt.Sprint(tc.conns1)}
			}
			if tc.conns2 > 0 {
				extra2 = []string{"--connections", fmt.Sprint(tc.conns2)}
			}
			st := resKillMidway(t, out, tc.least, resArgs(tc.first, slow.URL(), out, extra1...)...)
			resCheckClaims(t, out, st, resSeed)
			slow.Close()

			// Same size and seed: same content, ETag and Last-Modified, on
			// another port (the URL differs; the validators prove it is
			// the same file).
			fast := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag})
			fast.ResetStats()
			st, _ = readResState(t, out) // read right before the rerun
			res := runCLI(t, resArgs(tc.second, fast.URL(), out, append(extra2, "--log-level", "info")...)...)
			resAssertDone(t, res, out, resSize, resSeed)
			fast.WaitIdle(5 * time.Second)

			claimed := st.claimed()
			usable := claimed
			if tc.second != "ranged" && len(st.Ranges) > 0 {
				// A sequential sink continues from the prefix only.
				usable = 0
				if st.Ranges[0][0] == 0 {
					usable = st.Ranges[0][1]
				}
			}
			served := fast.Stats().BytesServed
			bound := resSize - usable + int64(max(tc.conns2, 1))*resPiece
			t.Logf("state claimed %d of %d bytes in %d ranges %v (%d usable by %s); second run fetched %d bytes (missing %d, bound %d)",
				claimed, int64(resSize), len(st.Ranges), st.Ranges, usable, tc.second, served, resSize-usable, bound)
			if served > bound {
				t.Errorf("the second run fetched %d bytes, more than the %d missing plus a piece per connection (%d)", served, resSize-usable, bound)
			}
			if served < resSize-usable {
				t.Errorf("the second run fetched %d bytes, fewer than the %d missing", served, resSize-usable)
			}
			if !strings.Contains(res.stderr, "resuming a partial download") {
				t.Errorf("no resume logged:\n%s", res.stderr)
			}
		})
	}
}

// TestResumeChangedFile: the file on the server changed between the runs
// (same URL and size, other content, so another ETag): the rerun starts
// from zero and ends with the new content, never a mix. (At another URL
// the partial data is another URL's, which says so instead.)
func TestResumeChangedFile(t *testing.T) {
	for _, topo := range []string{"ranged", "stream"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "big.bin")
			// About 16 MiB/s in all, so that the one-second checkpoint
			// records a quarter of the file before the download ends.
			rate := int64(16 << 20)
			if topo == "ranged" {
				rate /= 8 // per connection
			}
			srv := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, RateLimit: rate})
			resKillMidway(t, out, resSize/4, resArgs(topo, srv.URL(), out)...)
			srv.WaitIdle(5 * time.Second)

			// One GET of the old version, then the file is version 2
			// (Seed+1, another ETag and Last-Modified).
			srv.SetFaults(origin.Faults{ChangeETagAfter: 1})
			req, err := http.NewRequest(http.MethodGet, srv.URL(), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Range", "bytes=0-0")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			srv.WaitIdle(5 * time.Second)
			srv.ResetStats()

			res := runCLI(t, resArgs(topo, srv.URL(), out)...)
			resAssertDone(t, res, out, resSize, resSeed+1)
			srv.WaitIdle(5 * time.Second)
			if served := srv.Stats().BytesServed; served < resSize {
				t.Errorf("fetched %d bytes, want the whole %d again", served, int64(resSize))
			}
			if !strings.Contains(res.stderr, "the file changed on the server") {
				t.Errorf("the restart is not logged:\n%s", res.stderr)
			}
		})
	}
}

// TestResumeOff: --no-resume fetches everything again.
func TestResumeOff(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "big.bin")
	slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, RateLimit: 5 << 20})
	resKillMidway(t, out, resSize/4, resArgs("ranged", slow.URL(), out, "--connections", "4")...)
	slow.Close()

	fast := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed})
	res := runCLI(t, resArgs("ranged", fast.URL(), out, "--no-resume")...)
	resAssertDone(t, res, out, resSize, resSeed)
	fast.WaitIdle(5 * time.Second)
	if served := fast.Stats().BytesServed; served < resSize {
		t.Errorf("fetched %d bytes, want the whole %d again", served, int64(resSize))
	}
	if !strings.Contains(res.stderr, "resume is off") {
		t.Errorf("starting over is not logged:\n%s", res.stderr)
	}
}

// TestResumeAfterInterrupt: SIGINT lets the sink save its state with every
// byte written, so the rerun fetches exactly the rest.
func TestResumeAfterInterrupt(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "big.bin")
	slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag, RateLimit: 5 << 20})
	st := resStopMidway(t, out, resSize/4, syscall.SIGINT, resArgs("ranged", slow.URL(), out, "--connections", "4")...)
	resCheckClaims(t, out, st, resSeed)
	slow.WaitIdle(5 * time.Second)
	// Only what the four readers had in their buffers when the signal came
	// (512 KiB each in ranged.yaml), and what the origin had pushed into
	// the sockets, may be missing from the state.
	const inFlight = 4*(512<<10) + 4*(64<<10)
	if written := slow.Stats().BytesServed; st.claimed() < written-inFlight {
		t.Errorf("the state claims %d bytes, the first run received %d (more than %d apart)", st.claimed(), written, inFlight)
	}
	slow.Close()

	fast := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag})
	// Without work stealing, which may race a slow tail on purpose, the
	// rerun must fetch exactly the missing bytes.
	res := runCLI(t, resArgs("ranged", fast.URL(), out, "--connections", "4", "--set", "stages.fetch.config.steal_min=0")...)
	resAssertDone(t, res, out, resSize, resSeed)
	fast.WaitIdle(5 * time.Second)
	served := fast.Stats().BytesServed
	t.Logf("state claimed %d bytes in %d ranges after SIGINT; second run fetched %d bytes", st.claimed(), len(st.Ranges), served)
	if served != resSize-st.claimed() {
		t.Errorf("the second run fetched %d bytes, want exactly the %d missing", served, resSize-st.claimed())
	}
}
