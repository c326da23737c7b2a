package dlflow_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// Get downloads with the defaults: a 64 MiB file over ranges and a file of
// an odd size, each exact; the result says what ran.
func TestGet(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		size     int64
		topology string
		conns    int
	}{
		{64 << 20, "(built-in) ranged.yaml", 8},
		{10_000_019, "(built-in) stream.yaml", 1},
	} {
		srv := startOrigin(t, origin.Options{Size: tc.size, Seed: 3})
		out := filepath.Join(t.TempDir(), "out.bin")
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		res, err := dlflow.Get(ctx, srv.URL(), out)
		cancel()
		if err != nil {
			t.Fatalf("%d bytes: %v", tc.size, err)
		}
		assertComplete(t, out, tc.size, 3)
		if res.Path != out || res.Bytes != tc.size || res.Topology != tc.topology || res.Connections != tc.conns || res.Skipped || res.Partial != "" {
			t.Errorf("%d bytes: result %+v", tc.size, res)
		}
		if res.URL != srv.URL() || res.Elapsed <= 0 {
			t.Errorf("%d bytes: url %q, elapsed %v", tc.size, res.URL, res.Elapsed)
		}
		srv.Close()
	}
}

// Get refuses an existing output before any request and leaves it as it
// was.
func TestGetExistingOutput(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 3})
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := os.WriteFile(out, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := dlflow.Get(t.Context(), srv.URL(), out)
	if !errors.Is(err, dlflow.ErrOutputExists) {
		t.Fatalf("err = %v, want ErrOutputExists", err)
	}
	if data, _ := os.ReadFile(out); string(data) != "mine" {
		t.Fatalf("output changed to %q", data)
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests made for an output that exists", n)
	}
	if res == nil || res.Path != out || res.Partial != "" {
		t.Errorf("result %+v", res)
	}
	assertMissing(t, out+".tmp")
}

// The probe retries like the readers: a server that answers 503 to the
// first two requests is asked again, and the result counts the retries.
// The probe is the download's first GET: no HEAD, and its answer is the
// file, so the download takes three requests in all.
func TestGetProbeRetries(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 3})
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 2, FailAnyMethod: true})
	out := filepath.Join(t.TempDir(), "out.bin")
	res, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Path: out})
	if err != nil {
		t.Fatal(err)
	}
	assertComplete(t, out, 1<<20, 3)
	if st := srv.Stats(); res.Retries != 2 || st.GETs != 3 || st.HEADs != 0 {
		t.Errorf("%d retries, %d GETs, %d HEADs; want the probe's 2 retries and 3 GETs", res.Retries, st.GETs, st.HEADs)
	}
}
