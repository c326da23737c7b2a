package daemon_test

import (
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

func startOrigin(t *testing.T, opts origin.Options) *origin.Server {
	t.Helper()
	s, err := origin.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func gids(list []status) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.GID)
	}
	return out
}

func statuses(list []status) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Status)
	}
	return out
}

// TestKill9Restart: a daemon killed with SIGKILL while two tasks download
// (others waiting, paused, moved in the queue, one complete) brings every
// task back as it was, the active ones resume from their .tmp (the origin
// serves only the missing bytes), and every file is right.
func TestKill9Restart(t *testing.T) {
	const slowSize, fastSize = 1 << 20, 256 << 10
	slow := startOrigin(t, origin.Options{Size: slowSize, Seed: 7, Files: 2, RateLimit: 128 << 10})
	fast := startOrigin(t, origin.Options{Size: fastSize, Seed: 9, Files: 6})
	dir, state := t.TempDir(), t.TempDir()
	sock := filepath.Join(state, "d.sock")
	args := []string{"--dir", dir, "--jobs", "2", "--session", filepath.Join(state, "session.db")}
	p := startDaemon(t, sock, args...)
	c := p.client

	var done string
	c.must(t, &done, "aria2.addUri", []string{fast.FileURL(0)}, map[string]string{"out": "done.bin"})
	waitFor(t, 20*time.Second, "the first task to complete", func() bool { return c.status(t, done).Status == "complete" })

	add := func(url, out string, extra ...string) string {
		opts := map[string]string{"out": out}
		for i := 0; i+1 < len(extra); i += 2 {
			opts[extra[i]] = extra[i+1]
		}
		var gid string
		c.must(t, &gid, "aria2.addUri", []string{url}, opts)
		return gid
	}
	a0, a1 := add(slow.FileURL(0), "a0.bin"), add(slow.FileURL(1), "a1.bin")
	w0, w1 := add(fast.FileURL(1), "w0.bin"), add(fast.FileURL(2), "w1.bin")
	p0 := add(fast.FileURL(3), "p0.bin", "pause", "true")
	p1 := add(fast.FileURL(4), "p1.bin")
	c.must(t, nil, "aria2.pause", p1)
	w3 := add(fast.FileURL(5), "w3.bin")
	var pos int
	c.must(t, &pos, "aria2.changePosition", w3, 0, "POS_SET")
	if pos != 0 {
		t.Fatalf("changePosition answered %d, want 0", pos)
	}
	wantWaiting := []string{w3, w0, w1, p0, p1}
	wantStatuses := []string{"waiting", "waiting", "waiting", "paused", "paused"}

	// Active, with bytes checkpointed (every second) but far from done.
	waitFor(t, 30*time.Second, "both active tasks to pass 300 KiB", func() bool {
		for _, g := range []string{a0, a1} {
			s := c.status(t, g)
			n, _ := strconv.Atoi(s.CompletedLength)
			if s.Status != "active" || n < 300<<10 {
				return false
			}
		}
		return true
	})
	p.kill9(t)
	before := len(slow.Log())

	p = startDaemon(t, sock, args...)
	c = p.client
	if s := c.status(t, done); s.Status != "complete" || s.ErrorCode != "0" || s.CompletedLength != strconv.Itoa(fastSize) {
		t.Errorf("the complete task came back as %+v", s)
	}
	var active, waiting []status
	c.must(t, &active, "aria2.tellActive", []string{"gid", "status"})
	c.must(t, &waiting, "aria2.tellWaiting", 0, 100, []string{"gid", "status"})
	if got := gids(active); !slices.Equal(got, []string{a0, a1}) {
		t.Errorf("active after the restart: %v, want %v", got, []string{a0, a1})
	}
	if got := gids(waiting); !slices.Equal(got, wantWaiting) {
		t.Errorf("waiting after the restart: %v, want %v", got, wantWaiting)
	}
	if got := statuses(waiting); !slices.Equal(got, wantStatuses) {
		t.Errorf("statuses after the restart: %v, want %v", got, wantStatuses)
	}

	c.must(t, nil, "aria2.unpauseAll")
	all := map[string]string{done: "done.bin", a0: "a0.bin", a1: "a1.bin", w0: "w0.bin", w1: "w1.bin", p0: "p0.bin", p1: "p1.bin", w3: "w3.bin"}
	waitFor(t, 60*time.Second, "every task to complete", func() bool {
		for g := range all {
			if s := c.status(t, g); s.Status != "complete" {
				if s.Status == "error" {
					t.Fatalf("%s failed: %s", g, s.ErrorMessage)
				}
				return false
			}
		}
		return true
	})
	want := map[string]string{
		"done.bin": origin.SHA256Hex(fastSize, origin.FileSeed(9, 0)),
		"a0.bin":   origin.SHA256Hex(slowSize, origin.FileSeed(7, 0)), "a1.bin": origin.SHA256Hex(slowSize, origin.FileSeed(7, 1)),
		"w0.bin": origin.SHA256Hex(fastSize, origin.FileSeed(9, 1)), "w1.bin": origin.SHA256Hex(fastSize, origin.FileSeed(9, 2)),
		"p0.bin": origin.SHA256Hex(fastSize, origin.FileSeed(9, 3)), "p1.bin": origin.SHA256Hex(fastSize, origin.FileSeed(9, 4)),
		"w3.bin": origin.SHA256Hex(fastSize, origin.FileSeed(9, 5)),
	}
	for name, sum := range want {
		if got := fileSHA256(t, filepath.Join(dir, name)); got != sum {
			t.Errorf("%s: sha256 %s, want %s", name, got, sum)
		}
	}
	checkResumed(t, slow.Log()[before:], slowSize)
}

// checkResumed: after the restart, each slow file was asked from where
// its .tmp ended, and served once from there: no byte before that
// offset again, none twice.
func checkResumed(t *testing.T, log []origin.Request, size int64) {
	t.Helper()
	for _, path := range []string{origin.FilePath(0), origin.FilePath(1)} {
		var served, from int64 = 0, -1
		for _, r := range log {
			if r.Path != path || r.Method != "GET" {
				continue
			}
			t.Logf("%s after the restart: Range %q, %d bytes", path, r.Range, r.Bytes)
			start, _, _ := strings.Cut(strings.TrimPrefix(r.Range, "bytes="), "-")
			n, err := strconv.ParseInt(start, 10, 64)
			if err != nil {
				t.Errorf("%s: a request without a range after the restart: %q", path, r.Range)
				continue
			}
			if from < 0 || n < from {
				from = n
			}
			served += r.Bytes
		}
		switch {
		case from <= 0:
			t.Errorf("%s: not resumed: the first request after the restart starts at %d", path, from)
		case served != size-from:
			t.Errorf("%s: %d bytes served after the restart, want %d (the size less the %d on disk)", path, served, size-from, from)
		}
	}
}

// TestBinaryServesPageAndMetrics: the release binary mounts the web page
// at / and the metrics at /metrics (behind the secret).
func TestBinaryServesPageAndMetrics(t *testing.T) {
	state := t.TempDir()
	sock := filepath.Join(state, "d.sock")
	p := startDaemon(t, sock, "--dir", t.TempDir(), "--jobs", "0", "--session", filepath.Join(state, "s.db"))
	p.client.must(t, nil, "aria2.addUri", []string{"http://127.0.0.1:9/x"})
	get := func(path, auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://daemon"+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := p.client.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/", ""); code != 200 || !strings.Contains(body, "<html") {
		t.Errorf("/: %d %.100s", code, body)
	}
	if code, _ := get("/metrics", ""); code != 401 {
		t.Errorf("/metrics without the secret: %d", code)
	}
	if code, body := get("/metrics", secret); code != 200 || !strings.Contains(body, "dlflow_") || !strings.Contains(body, "waiting") {
		t.Errorf("/metrics: %d %.300s", code, body)
	}
}
