package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	bench "github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/daemon"
	"github.com/dlflow/dlflow/daemon/web"
)

// newDaemon runs the real daemon in process, with the page mounted at "/"
// as cmd/daemon.go mounts it, and returns its base URL and its directory.
func newDaemon(t *testing.T, opts daemon.Options) (base, dir string) {
	t.Helper()
	opts.Dir, opts.Secret = t.TempDir(), pageSecret
	opts.Session = filepath.Join(t.TempDir(), "session.db")
	opts.Extra = map[string]http.Handler{"/": web.Handler()}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	return srv.URL, d.Engine().Root()
}

// TestPageDaemonLanes: the page against dlflow's own daemon (not aria2c):
// it adds the URL of a throttled loopback origin, shows the download's
// connections as lanes with bars (their ranges known), pauses and resumes
// it through its buttons, and sees it complete; the file is right.
func TestPageDaemonLanes(t *testing.T) {
	const size = 32 << 20
	// Four connections at 2 MiB/s each: about 4 s of transfer.
	o, err := bench.Start(bench.Options{Size: size, Seed: 21, Files: 1, RateLimit: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	base, dir := newDaemon(t, daemon.Options{Jobs: 1, MaxPerHost: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := newBrowser(t, ctx)
	b.open(base + "/#secret=" + encodeFragment(pageSecret))
	b.waitFor("push mode", `document.getElementById('conn').textContent === 'connected (push)'`, 30*time.Second)

	name := filepath.Base(bench.FilePath(0))
	b.add(o.FileURL(0))
	r := row(name)
	b.waitFor("the lanes view", `(`+r+` || {}).querySelector && !`+r+`.querySelector('details.lanes').hidden`, 30*time.Second)
	b.eval(r+`.querySelector('details.lanes').open = true`, nil)
	// A lane's bar is drawn (width > 0) once its range is known.
	bars := `[...` + r + `.querySelectorAll('tr.lane progress')].filter(p => !p.hidden && p.max > 1 && p.getBoundingClientRect().width > 0)`
	b.waitFor("bars in three lanes or more", bars+`.length >= 3`, 30*time.Second)
	var lanes struct {
		Bars   int
		Ranges []string
	}
	b.eval(`({Bars: `+bars+`.length, Ranges: [...`+r+`.querySelectorAll('tr.lane')].map(l => l.children[1].textContent)})`, &lanes)
	t.Logf("lanes: %d bars, ranges %q", lanes.Bars, lanes.Ranges)

	b.click(name, "pause")
	b.status(name, "paused", 30*time.Second)
	b.click(name, "resume")
	b.status(name, "complete", time.Minute)
	if got, want := fileSum(t, filepath.Join(dir, name)), bench.SHA256Hex(size, bench.FileSeed(21, 0)); got != want {
		t.Errorf("sha256 %s, want %s", got, want)
	}
	if errs := b.errs(); len(errs) > 0 {
		t.Errorf("page errors: %q", errs)
	}
}

// fileSum is the sha256 of the file at path, "" when it is missing.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("downloaded file: %v", err)
		return ""
	}
	return sum(b)
}
