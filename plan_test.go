package dlflow_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// TestOnePlanPerAttempt: a download loads its configuration once and
// builds one graph per attempt: automatic or chosen topology, a stream or
// ranges, the output named or not, and a restart (the file changed on
// the server) makes one new plan. (Before the plan, a download loaded its
// configuration 4 times and built 3 graphs.)
func TestOnePlanPerAttempt(t *testing.T) {
	noLeaks(t)
	small := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 4})
	large := startOrigin(t, origin.Options{Size: 24 << 20, Seed: 5})
	for _, tc := range []struct {
		name string
		req  dlflow.Request
	}{
		{"auto stream", dlflow.Request{URL: small.URL()}},
		{"auto ranged", dlflow.Request{URL: large.URL(), Connections: 4}},
		{"ranged", dlflow.Request{URL: large.URL(), Topology: dlflow.Topology{Name: "ranged"}}},
		{"stream", dlflow.Request{URL: small.URL(), Topology: dlflow.Topology{Name: "stream"}}},
		{"auto, name from the server", dlflow.Request{URL: small.URL(), Dir: "DIR"}},
		{"auto, mirror", dlflow.Request{URL: large.URL(), Mirrors: []string{large.URL() + "?m"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			dir := t.TempDir()
			if req.Dir == "DIR" {
				req.Dir = dir
			} else {
				req.Path = filepath.Join(dir, "out")
			}
			loads, builds := dlflow.Counts()
			if _, err := newClient(t).Do(t.Context(), &req); err != nil {
				t.Fatal(err)
			}
			l, b := dlflow.Counts()
			if l-loads != 1 || b-builds != 1 {
				t.Errorf("%d configuration loads and %d graph builds, want 1 and 1", l-loads, b-builds)
			}
		})
	}
}

// TestRestartMakesOnePlan: a file that changes on the server between the
// probe and the run restarts the download once, with a new plan: still
// one configuration load, and two graphs (one per attempt).
func TestRestartMakesOnePlan(t *testing.T) {
	noLeaks(t)
	old, cur := bytes.Repeat([]byte("a"), 3<<20), bytes.Repeat([]byte("b"), 3<<20)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, etag := cur, `"b"`
		if served.Add(1) == 1 { // the probe sees the old version
			body, etag = old, `"a"`
		}
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "f", time.Unix(1e9, 0), bytes.NewReader(body))
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "out")
	loads, builds := dlflow.Counts()
	if _, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL, Path: out, Topology: dlflow.Topology{Name: "ranged"},
		Sets: []string{"stages.split.config.piece=1MiB"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, cur) {
		t.Fatalf("output: %d bytes, %v; want the new version", len(got), err)
	}
	l, b := dlflow.Counts()
	if l-loads != 1 || b-builds != 2 {
		t.Errorf("%d configuration loads and %d graph builds, want 1 and 2", l-loads, b-builds)
	}
}
