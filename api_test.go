package dlflow_test

// What the library API tells a caller during and after a download: Info
// and Progress while it runs, the connections it could not honour, and
// Client.Check before any I/O.

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/config"
)

// TestDownloadInfoAndProgress: Hooks.Started sees the probe's answer and
// the graph chosen in Info; Progress reports bytes, total, a rate, an ETA
// and each connection's bytes while the download runs, and the whole file
// once it ended.
func TestDownloadInfoAndProgress(t *testing.T) {
	t.Parallel()
	const size, seed = 4<<20 + 9, 6
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed, RateLimit: 2 << 20})
	out := fltOut(t)
	started := make(chan dlflow.Info, 2)
	req := &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: "ranged"}, Connections: 2,
		Sets:  []string{"stages.split.config.piece=512KiB"},
		Hooks: dlflow.Hooks{Started: func(d *dlflow.Download) { started <- d.Info() }}}
	d := newClient(t).Start(context.Background(), req)
	defer d.Cancel() // when the test fails before the end

	var info dlflow.Info
	select {
	case info = <-started:
	case <-time.After(testTimeout):
		t.Fatal("Hooks.Started not called")
	}
	if info.URL != srv.URL() || info.Path != out || info.Size != size || !info.Ranges ||
		info.Topology != builtin("ranged") || info.Connections != 2 || info.MemoryBound <= 0 {
		t.Errorf("info %+v", info)
	}
	if got := d.Info(); got != info {
		t.Errorf("Info() = %+v, want what Started saw, %+v", got, info)
	}

	// Two samples at least 100ms apart measure a rate.
	var p dlflow.Progress
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(150 * time.Millisecond) {
		p = d.Progress()
		if p.Rate > 0 || time.Now().After(deadline) {
			break
		}
	}
	if p.Total != size || p.Done < 0 || p.Done > size || p.Resumed != 0 || len(p.Connections) != 2 {
		t.Errorf("progress %+v", p)
	}
	if p.Done < size && (p.Rate <= 0 || p.ETA <= 0) {
		t.Errorf("progress mid-download %+v, want a rate and an ETA", p)
	}

	res, err := d.Wait()
	fltOK(t, res, err, out, size, seed)
	p = d.Progress()
	var conns int64
	for _, n := range p.Connections {
		conns += n
	}
	if p.Done != size || p.Total != size || p.ETA != 0 || conns != size {
		t.Errorf("progress after the end %+v (connections delivered %d)", p, conns)
	}
	if len(started) != 0 {
		t.Errorf("Hooks.Started called again without a restart")
	}
}

// TestConnectionsNotHonoured: Connections a picked topology cannot use is
// logged at info level and the download runs on one connection; for a
// topology the request names, it is a *dlflow.RequestError before any I/O.
func TestConnectionsNotHonoured(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int64
		faults origin.Faults
		why    string
	}{
		{"small file", 1<<20 + 1, origin.Faults{}, "the file is smaller than 16 MiB"},
		{"no ranges", 17 << 20, origin.Faults{NoLength: true}, "the server does not answer range requests or does not say the size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: tc.size, Seed: 4})
			srv.SetFaults(tc.faults)
			out := fltOut(t)
			logOpt, log := withLog(zerolog.InfoLevel)
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Connections: 8}, logOpt)
			fltOK(t, res, err, out, tc.size, 4)
			if res.Connections != 1 || res.Topology != builtin("stream") {
				t.Errorf("result %+v, want the stream on one connection", res)
			}
			if !contains(log.String(), `"level":"warn"`, `"connections":8`, "downloading over one connection: "+tc.why) {
				t.Errorf("the connections not honoured are not logged at warn level, the default:\n%s", log)
			}
		})
	}
	t.Run("named topology", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 4})
		out := fltOut(t)
		req := &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: "stream"}, Connections: 4}
		res, err := do(t, req)
		fltFailed(t, res, err, out, "stream.yaml", "has no stage that opens several connections")
		var re *dlflow.RequestError
		if !errors.As(err, &re) || re.Field != "Connections" {
			t.Errorf("err = %#v, want a *dlflow.RequestError of field Connections", err)
		}
		if cerr := newClient(t).Check(req); cerr == nil || cerr.Error() != err.Error() {
			t.Errorf("Check: %v, want %v", cerr, err)
		}
		// TestRequestErrorsBeforeAnyIO: Do probes first.
	})
}

// TestClientCheck: Check refuses what Do would refuse before any I/O, with
// the same typed error, and accepts a good request whose server does not
// even listen; it touches no file.
func TestClientCheck(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "missing")
	const url = "http://127.0.0.1:1/f.bin" // nothing listens: I/O would fail
	// With a Path, Do finds the faults of the topology's configuration
	// before the probe too (TestRequestErrorsBeforeAnyIO).
	out := filepath.Join(t.TempDir(), "out.bin")
	for _, tc := range []struct {
		name  string
		req   dlflow.Request
		field string // of the *dlflow.RequestError; "" for a *config.Error
	}{
		{"too many connections", dlflow.Request{Connections: dlflow.MaxConnections + 1}, "Connections"},
		{"negative connections", dlflow.Request{Connections: -1}, "Connections"},
		{"overwrite and skip", dlflow.Request{Overwrite: true, SkipExisting: true}, "Overwrite"},
		{"two topologies", dlflow.Request{Topology: dlflow.Topology{Name: "stream", File: "x.yaml"}}, "Topology"},
		{"unknown built-in", dlflow.Request{Topology: dlflow.Topology{Name: "nope"}}, "Topology"},
		{"missing file", dlflow.Request{Topology: dlflow.Topology{File: filepath.Join(dir, "t.yaml")}}, "Topology"},
		{"negative rate", dlflow.Request{LimitRate: -1}, "LimitRate"},
		{"Range header", dlflow.Request{Header: http.Header{"Range": {"bytes=0-"}}}, "Header"},
		{"Accept-Encoding header", dlflow.Request{Header: http.Header{"Accept-Encoding": {"gzip"}}}, "Header"},
		{"path outside dir", dlflow.Request{Path: "../x", Dir: dir}, "Path"},
		{"unknown key", dlflow.Request{Topology: dlflow.Topology{Name: "ranged"}, Sets: []string{"stages.fetch.config.bufer=1MiB"}}, ""},
	} {
		req := tc.req
		req.URL = url
		if req.Path == "" {
			req.Path = out
		}
		cerr := newClient(t).Check(&req)
		var re *dlflow.RequestError
		switch {
		case cerr == nil:
			t.Errorf("%s: Check accepted %+v", tc.name, req)
			continue
		case tc.field != "" && (!errors.As(cerr, &re) || re.Field != tc.field):
			t.Errorf("%s: Check: %#v, want a *dlflow.RequestError of field %s", tc.name, cerr, tc.field)
		case tc.field == "" && !errors.As(cerr, new(*config.Error)):
			t.Errorf("%s: Check: %#v, want a *config.Error", tc.name, cerr)
		}
		if _, err := do(t, &req); err == nil || err.Error() != cerr.Error() {
			t.Errorf("%s: Do: %v, want the error of Check: %v", tc.name, err, cerr)
		}
	}
	for _, req := range []*dlflow.Request{
		{URL: url},
		{URL: url, Path: "out.bin", Dir: dir, Topology: dlflow.Topology{Name: "ranged"}, Connections: 8, Checksum: "sha256:" + ckZeros},
	} {
		if err := newClient(t).Check(req); err != nil {
			t.Errorf("Check(%+v): %v", req, err)
		}
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Check touched %s: %v", dir, err)
	}
	assertMissing(t, out)
}

// TestRequestErrorsBeforeAnyIO: a *dlflow.RequestError or a configuration
// error is found before any request, as Check finds it, also when the
// output is named after the probe or the topology cannot take the
// connections asked for.
func TestRequestErrorsBeforeAnyIO(t *testing.T) {
	t.Parallel()
	for _, req := range []*dlflow.Request{
		{Path: fltOut(t), Topology: dlflow.Topology{Name: "stream"}, Connections: 4},
		{Topology: dlflow.Topology{Name: "ranged"}, Sets: []string{"stages.fetch.config.bufer=1MiB"}},
	} {
		srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 4})
		req.URL = srv.URL()
		cerr := newClient(t).Check(req)
		_, err := do(t, req)
		if cerr == nil || err == nil || err.Error() != cerr.Error() {
			t.Errorf("Do: %v, want the error of Check: %v", err, cerr)
		}
		if n := srv.Stats().Requests; n != 0 {
			t.Errorf("%d requests for a request the library refuses (%v)", n, err)
		}
	}
}

// TestCheckBadURL: Check refuses a URL that Do refuses before any I/O.
func TestCheckBadURL(t *testing.T) {
	for _, url := range []string{"ftp://127.0.0.1/file.bin", "http:///file.bin"} {
		var re *dlflow.RequestError
		if err := newClient(t).Check(&dlflow.Request{URL: url}); !errors.As(err, &re) || re.Field != "URL" {
			t.Errorf("Check(%q): %v, want a *dlflow.RequestError of field URL", url, err)
		}
	}
}

// TestResultURLIsTheURLAskedFor: Result.URL is documented as the URL asked
// for; Info.URL is the final one after redirects.
func TestResultURLIsTheURLAskedFor(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 5})
	srv.SetFaults(origin.Faults{Redirects: 3})
	out := fltOut(t)
	res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out})
	fltOK(t, res, err, out, 1<<20, 5)
	if res.URL != srv.URL() {
		t.Errorf("result URL %q, want the URL asked for, %q", res.URL, srv.URL())
	}
}
