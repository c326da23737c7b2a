package dlflow_test

// A server that switches the file under a download and ignores If-Range:
// it keeps answering 206, from the new version, with the new version's
// validators. Only comparing each answer's validators with the probe's
// tells; without that, a download ended with a file that was one version
// up to some byte and the other after it.

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/testtar"
)

// TestFaultSwitchedFileIgnoresIfRange: every answer must carry the probe's
// validators; one that does not is the file changed, so the download
// restarts from zero once and the result is entirely the new version. In
// "resumed", the probe of a resumed run (HEAD) still sees the version of
// the partial data, and the range requests after it the new one.
func TestFaultSwitchedFileIgnoresIfRange(t *testing.T) {
	for _, topo := range append(fltTopologies, "resumed") {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			size, seed := int64(fltSize), uint64(fltSeed)
			var srv *origin.Server
			var req *dlflow.Request
			switch {
			case topo == "resumed":
				size, seed = resSize, resSeed
				out := fltOut(t)
				slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag, RateLimit: 1 << 20})
				req = &dlflow.Request{URL: slow.URL(), Path: out, Topology: dlflow.Topology{Name: "ranged"}, Connections: 4,
					Sets: []string{"stages.split.config.piece=1MiB", "stages.fetch.config.steal_min=0"}}
				resCancelMidway(t, req, resSize/4)
				slow.Close()
				// The same file (its ETag names the content) at another
				// URL: the rerun resumes, then the file switches.
				srv = startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag})
				srv.SetFaults(origin.Faults{ChangeETagAfter: 1, IgnoreIfRange: true})
				req.URL = srv.URL()
			case isRanged(topo):
				srv = startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				srv.SetFaults(origin.Faults{ChangeETagAfter: 2, IgnoreIfRange: true})
				req = fltRequest(topo, srv.URL(), fltOut(t))
			default:
				// One stream: cut it so that its resume meets the switch.
				srv = startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				srv.SetFaults(origin.Faults{ChangeETagAfter: 1, IgnoreIfRange: true, DropAfter: 1 << 20, DropRequests: 1})
				req = fltRequest(topo, srv.URL(), fltOut(t))
			}
			logOpt, log := withLog(zerolog.WarnLevel)
			res, err := do(t, req, logOpt)
			fltOK(t, res, err, req.Path, size, seed+1)
			if !contains(log.String(), "restarting the download from zero", "resource changed on the server") {
				t.Errorf("no restart warning:\n%s", log)
			}
		})
	}
}

// TestFaultSwitchedFileWriter: when the switch is seen after bytes of the
// old version went out to a Writer, the download fails: it can neither
// take back the bytes nor start over.
func TestFaultSwitchedFileWriter(t *testing.T) {
	noLeaks(t)
	const size = 16 << 20
	srv := startOrigin(t, origin.Options{Size: size, Seed: 5})
	w := &switchAtFirstWrite{hashWriter: newHashWriter(), srv: srv}
	_, err := do(t, &dlflow.Request{URL: srv.URL(), Writer: w, Topology: dlflow.Topology{Name: "stdout"}, Connections: 2,
		Sets: []string{"stages.fetch.config.max_request=1MiB"}})
	const want = "the bytes of the old version went out to the writer already, so the download cannot start over"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "resource changed on the server") {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if w.n == 0 || w.n >= size {
		t.Errorf("the writer got %d bytes", w.n)
	}
}

// switchAtFirstWrite switches the origin's file, If-Range ignored, once
// the first bytes are written: every GET but the next sees the new
// version.
type switchAtFirstWrite struct {
	*hashWriter
	srv     *origin.Server
	changed bool
}

func (w *switchAtFirstWrite) Write(p []byte) (int, error) {
	if !w.changed {
		w.changed = true
		w.srv.SetFaults(origin.Faults{ChangeETagAfter: 1, IgnoreIfRange: true})
	}
	return w.hashWriter.Write(p)
}

// TestFaultSwitchedArchive: the same with --extract, over ranges put back
// in order and over one stream (cut once, so that its resume meets the
// switch): DIR holds the new archive's members byte for byte, never a
// member made of both.
func TestFaultSwitchedArchive(t *testing.T) {
	noLeaks(t)
	trees := [2][]testtar.Entry{
		{{Name: "big.bin", Mode: 0o644, Body: randomBytes(2<<20, 1)}},
		{{Name: "big.bin", Mode: 0o644, Body: randomBytes(2<<20, 2)}},
	}
	archives := [2][]byte{testtar.Tar(t, trees[0]), testtar.Tar(t, trees[1])}
	if len(archives[0]) != len(archives[1]) {
		t.Fatal("the two archives differ in size")
	}
	for _, topo := range []string{"extract", "extract-stream"} {
		t.Run(topo, func(t *testing.T) {
			url, switched := switchingArchive(t, archives, topo == "extract-stream")
			dir := extractDir(t)
			req := &dlflow.Request{URL: url, Extract: dir, Topology: dlflow.Topology{Name: topo},
				Sets: []string{"stages.fetch.config.backoff=10ms"}}
			if topo == "extract" {
				req.Connections, req.Sets = 3, append(req.Sets, "stages.split.config.piece=256KiB")
			}
			if _, err := newClient(t).Do(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			testtar.Check(t, dir, trees[1])
			assertNothingBeside(t, dir)
			if switched.Load() == 0 {
				t.Fatal("no 206 of the new archive to an If-Range of the old one: the fault did not happen")
			}
		})
	}
}

// switchingArchive serves archives[0] for the first two GETs and
// archives[1] after them, each with an ETag of its own, answering ranges
// with 206 whatever If-Range says. cut makes the first GET stop after half
// the archive, and the switch come after it. switched counts the 206 answers of archives[1] to an
// If-Range of archives[0].
func switchingArchive(t *testing.T, archives [2][]byte, cut bool) (url string, switched *atomic.Int64) {
	var gets atomic.Int64
	switched = new(atomic.Int64)
	etag := func(v int) string { sum := sha256.Sum256(archives[v]); return fmt.Sprintf(`"%x"`, sum[:4]) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, after := 0, int64(2)
		if cut {
			after = 1
		}
		if r.Method == http.MethodGet && gets.Add(1) > after {
			v = 1
		}
		if v == 1 && r.Header.Get("Range") != "" && r.Header.Get("If-Range") == etag(0) {
			switched.Add(1)
		}
		w.Header().Set("ETag", etag(v))
		r.Header.Del("If-Range")
		var rw http.ResponseWriter = w
		if cut && r.Method == http.MethodGet && gets.Load() == 1 {
			rw = &cutWriter{ResponseWriter: w, left: int64(len(archives[v]) / 2)}
		}
		http.ServeContent(rw, r, "archive.tar", time.Time{}, bytes.NewReader(archives[v]))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/archive.tar", switched
}
