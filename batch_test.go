package dlflow_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/stages"
)

// A batch shares one transport: ten files one after another from one host
// travel over one keep-alive connection, one request each (the probe's
// GET, whose answer is the file), and every file is exact.
func TestBatchReusesConnections(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 64 << 10, Seed: 9})
	dir := t.TempDir()
	c := newClient(t)
	reqs := make(chan *dlflow.Request)
	go func() {
		defer close(reqs)
		for i := range 10 {
			reqs <- &dlflow.Request{URL: srv.URL(), Path: filepath.Join("f", string(rune('a'+i))), Dir: dir}
		}
	}()
	n := 0
	for r := range c.Batch(t.Context(), 1, reqs) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Request.Path, r.Err)
		}
		assertComplete(t, r.Result.Path, 64<<10, 9)
		n++
	}
	if n != 10 {
		t.Fatalf("%d results, want 10", n)
	}
	conns := map[string]bool{}
	for _, r := range srv.Log() {
		conns[r.RemoteAddr] = true
	}
	if st := srv.Stats(); len(conns) != 1 || st.Requests != 10 || st.HEADs != 0 {
		t.Errorf("%d connections for %d requests (%d HEADs); want 1 connection for 10 GETs, one a file", len(conns), st.Requests, st.HEADs)
	}
}

// Names in a batch are relative paths inside Dir: one that leaves it is
// refused before any request, and two downloads never write one file.
func TestBatchOutputsStayInDir(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 32 << 10, Seed: 4})
	top := t.TempDir()
	dir := filepath.Join(top, "dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(top, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	paths := []string{"../x", "/abs/x", "d/../../x", "link/x", "ok.bin", "sub/ok.bin", "ok.bin"}
	reqs := make(chan *dlflow.Request, len(paths))
	for _, p := range paths {
		reqs <- &dlflow.Request{URL: srv.URL(), Path: p, Dir: dir}
	}
	close(reqs)
	got := map[string]error{}
	claimed := 0
	for r := range newClient(t).Batch(t.Context(), 1, reqs) {
		// The second ok.bin finds the first one's download still running
		// (a claim error) or ended (its file is there).
		var ce *dlflow.OutputClaimedError
		if errors.As(r.Err, &ce) || errors.Is(r.Err, dlflow.ErrOutputExists) && r.Request.Path == "ok.bin" {
			claimed++
			if ce != nil && (ce.Path != filepath.Join(dir, "ok.bin") || ce.By.Path != "ok.bin") {
				t.Errorf("claim error %v by %+v", ce, ce.By)
			}
			continue
		}
		got[r.Request.Path] = r.Err
	}
	for _, bad := range paths[:4] {
		var re *dlflow.RequestError
		if !errors.As(got[bad], &re) || re.Field != "Path" {
			t.Errorf("%q: %v, want a *RequestError on Path", bad, got[bad])
		}
	}
	if got["ok.bin"] != nil || got["sub/ok.bin"] != nil || claimed != 1 {
		t.Errorf("good names: %v, %v; %d claim or exists errors, want 1", got["ok.bin"], got["sub/ok.bin"], claimed)
	}
	assertComplete(t, filepath.Join(dir, "ok.bin"), 32<<10, 4)
	assertComplete(t, filepath.Join(dir, "sub", "ok.bin"), 32<<10, 4)
	for _, outside := range []string{filepath.Join(top, "x"), "/abs/x"} {
		assertMissing(t, outside)
	}
	if entries, _ := os.ReadDir(top); len(entries) != 1 {
		t.Errorf("%d entries beside dir, want none", len(entries)-1)
	}
	// The refused names made no request: one GET for each of the two
	// files written.
	if n := srv.Stats().Requests; n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

// A cancelled batch stops taking requests; the downloads it started end
// with the cancellation, keep their partial data, and report; then the
// channel closes.
func TestBatchCancel(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 32 << 20, Seed: 4, RateLimit: 4 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *dlflow.Download, 100)
	reqs := make(chan *dlflow.Request)
	dir := t.TempDir()
	go func() {
		defer close(reqs)
		for i := range 100 {
			r := &dlflow.Request{URL: srv.URL(), Path: fmt.Sprintf("f%d", i), Dir: dir,
				Hooks: dlflow.Hooks{Started: func(d *dlflow.Download) { started <- d }}}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	results := newClient(t).Batch(ctx, 2, reqs)
	for range 2 {
		select {
		case d := <-started:
			// Bytes on disk, so that there is partial data to keep: the
			// progress counts bytes received, which may still be on their
			// way to the sink, so look for the first piece in the file.
			for deadline := time.Now().Add(testTimeout); !wroteStart(d) && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
		case <-time.After(testTimeout):
			t.Fatal("two downloads did not start")
		}
	}
	cancel()
	n := 0
	for r := range results {
		n++
		if !errors.Is(r.Err, context.Canceled) || r.Result.Partial == "" {
			t.Errorf("%s: %v, partial %q; want a cancellation that kept its partial data", r.Request.Path, r.Err, r.Result.Partial)
		}
	}
	if n != 2 {
		t.Errorf("%d results, want the 2 started downloads", n)
	}
}

// wroteStart reports whether d's PATH.tmp holds data at its start, which
// preallocation leaves zero: the generated content has no 4 KiB of zeros.
func wroteStart(d *dlflow.Download) bool {
	path := d.Info().Path
	if path == "" {
		return false
	}
	f, err := os.Open(path + ".tmp")
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(f, buf); err != nil {
		return false
	}
	return slices.ContainsFunc(buf, func(b byte) bool { return b != 0 })
}

// TestBatchOverlapsFinishWithNextTransfer: with one job, the second
// download's first request goes out while the first one still makes its
// output durable (Finish): a download gives its transfer slot back once
// its bytes are in. A tap's Finish stands for a slow fsync: it waits
// (bounded) for the origin to see the second request.
func TestBatchOverlapsFinishWithNextTransfer(t *testing.T) {
	noLeaks(t)
	const size = 64 << 10
	srv := startOrigin(t, origin.Options{Size: size, Seed: 21, Files: 2})
	var finishes, overlapped atomic.Int32
	holdDef := pipeline.Def[struct{}]{
		Type: "test.holdfinish", Consumes: pipeline.OrderedBytes, Produces: pipeline.Same,
		New: func(struct{}) (pipeline.Stage, error) {
			return &holdFinish{until: func() bool { return srv.Stats().GETs >= 2 }, finishes: &finishes, overlapped: &overlapped}, nil
		},
	}
	reg := pipeline.NewRegistry()
	for _, register := range []func(*pipeline.Registry) error{stages.Register, sinks.Register} {
		if err := register(reg); err != nil {
			t.Fatal(err)
		}
	}
	pipeline.MustRegister(reg, holdDef)
	topology := dlflow.Topology{Data: []byte(`stages:
  fetch: {type: http.source}
  hold: {type: test.holdfinish, inputs: [fetch]}
  write: {type: file.sink, inputs: [hold]}
`)}
	dir := t.TempDir()
	reqs := make(chan *dlflow.Request, 2)
	for i := range 2 {
		reqs <- &dlflow.Request{URL: srv.FileURL(i), Path: fmt.Sprintf("%d.bin", i), Dir: dir, Topology: topology}
	}
	close(reqs)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for r := range newClient(t, dlflow.WithRegistry(reg)).Batch(ctx, 1, reqs) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Request.Path, r.Err)
		}
	}
	for i := range 2 {
		if got := fileSHA256(t, filepath.Join(dir, fmt.Sprintf("%d.bin", i))); got != origin.SHA256Hex(size, origin.FileSeed(21, i)) {
			t.Errorf("%d.bin: sha256 %s", i, got)
		}
	}
	if overlapped.Load() == 0 {
		t.Error("the second download's request waited for the first download's Finish")
	}
}

// holdFinish passes its input on. The first Finish of all that share
// finishes waits until until reports true (at most 10s), and counts in
// overlapped that it did.
type holdFinish struct {
	until                func() bool
	finishes, overlapped *atomic.Int32
}

func (h *holdFinish) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	for {
		c, ok, err := edges.Recv(ctx)
		if !ok {
			return err
		}
		if err := edges.Send(ctx, c); err != nil {
			return err
		}
	}
}

func (h *holdFinish) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	if h.finishes.Add(1) > 1 {
		return nil
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if h.until() {
			h.overlapped.Add(1)
			return nil
		}
	}
	return nil
}

// A batch into a directory that does not exist yet creates it (and its
// parents), as mkdir -p: every download lands in it, byte for byte.
func TestBatchCreatesDir(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 48 << 10, Seed: 21})
	dir := filepath.Join(t.TempDir(), "new", "b")
	reqs := make(chan *dlflow.Request, 5)
	for i := range 5 {
		reqs <- &dlflow.Request{URL: srv.URL(), Path: fmt.Sprintf("f%d", i), Dir: dir}
	}
	close(reqs)
	n := 0
	for r := range newClient(t).Batch(t.Context(), 2, reqs) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Request.Path, r.Err)
		}
		if want := filepath.Join(dir, r.Request.Path); r.Result.Path != want {
			t.Fatalf("saved at %s, want %s", r.Result.Path, want)
		}
		assertComplete(t, r.Result.Path, 48<<10, 21)
		n++
	}
	if n != 5 {
		t.Fatalf("%d results, want 5", n)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("dir: %v", err)
	}
	// A name from the server (no Path) lands in a new Dir too.
	dir2 := filepath.Join(t.TempDir(), "auto")
	res, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Dir: dir2})
	if err != nil {
		t.Fatal(err)
	}
	assertComplete(t, filepath.Join(dir2, "file.bin"), 48<<10, 21)
	if res.Path != filepath.Join(dir2, "file.bin") {
		t.Fatalf("saved at %s", res.Path)
	}
}
