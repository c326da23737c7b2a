package dlflow_test

// Helpers of the fault tests: a download of the test origin by each
// example topology, and what a successful or a failed download must leave.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// fltTopologies are the shipped example topologies.
var fltTopologies = []string{"stream", "buffered", "ranged", "ranged-ordered"}

// fltRangedTopologies are the ones that send Range requests from the start.
var fltRangedTopologies = []string{"ranged", "ranged-ordered"}

func isRanged(topology string) bool { return strings.HasPrefix(topology, "ranged") }

const (
	fltSize = 5<<20 + 4097 // not a multiple of any piece or buffer size
	fltSeed = 11
)

// fltRequest is a download of url into out with the built-in topology,
// with 1 MiB pieces and 4 readers for the ranged ones (so a 5 MiB file has
// 6 ranges in flight on 4 connections), fast retries, and sets.
func fltRequest(topology, url, out string, sets ...string) *dlflow.Request {
	req := &dlflow.Request{URL: url, Path: out, Topology: dlflow.Topology{Name: topology},
		Sets: []string{"stages.fetch.config.backoff=10ms", "stages.fetch.config.max_backoff=50ms"}}
	if isRanged(topology) {
		req.Connections = 4
		req.Sets = append(req.Sets, "stages.split.config.piece=1MiB")
	}
	req.Sets = append(req.Sets, sets...)
	return req
}

// fltOut is a fresh output path in a temporary directory.
func fltOut(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "out.bin")
}

// do downloads req on a client of its own, bounded by testTimeout. The
// result is never nil.
func do(t *testing.T, req *dlflow.Request, opts ...dlflow.Option) (*dlflow.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := newClient(t, opts...).Do(ctx, req)
	if res == nil {
		t.Fatalf("nil result (err %v)", err)
	}
	return res, err
}

// fltOK asserts a successful download: no error, out holds exactly size
// bytes of seed, no PATH.tmp nor its state (or a new state) left, and the
// result says so.
func fltOK(t *testing.T, res *dlflow.Result, err error, out string, size int64, seed uint64) {
	t.Helper()
	if err != nil {
		t.Fatalf("download failed: %v", err)
	}
	assertComplete(t, out, size, seed)
	assertMissing(t, out+".tmp.state.new")
	if res.Path != out || res.Bytes != size || res.Partial != "" || res.Skipped {
		t.Fatalf("result %+v, want %d bytes at %s", res, size, out)
	}
}

// fltFailed asserts a clean failure: an error whose text contains each
// needle, not a panic, nothing at out, and a result that names out (once
// known) and PATH.tmp only when it holds data. It returns the error.
func fltFailed(t *testing.T, res *dlflow.Result, err error, out string, needles ...string) error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; result %+v", res)
	}
	t.Log(err)
	for _, n := range needles {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not mention %q", err, n)
		}
	}
	if pe := new(pipeline.PanicError); errors.As(err, &pe) {
		t.Errorf("a stage panicked: %v\n%s", pe, pe.Stack)
	}
	assertMissing(t, out)
	if res.Path != "" && res.Path != out {
		t.Errorf("result path %q, want %q", res.Path, out)
	}
	if res.Partial != "" && res.Partial != out+".tmp" {
		t.Errorf("result partial %q, want %q", res.Partial, out+".tmp")
	}
	if res.Partial != "" {
		if _, serr := os.Lstat(res.Partial); serr != nil {
			t.Errorf("result partial %q: %v", res.Partial, serr)
		}
	}
	return err
}

// fltPartialKept asserts that the result names PATH.tmp and that it holds
// a prefix of the file of at least least bytes: what a rerun can resume
// from, never bytes of the wrong place. (Chunks still queued when a
// download fails are not written, so the prefix may end before the byte
// where the server cut the body; with least 0 nothing may have been
// written, and a PATH.tmp that holds nothing is not kept.)
func fltPartialKept(t *testing.T, res *dlflow.Result, out string, size int64, seed uint64, least int64) {
	t.Helper()
	if _, err := os.Lstat(out + ".tmp"); errors.Is(err, os.ErrNotExist) && least == 0 {
		if res.Partial != "" {
			t.Errorf("result partial %q, but there is none", res.Partial)
		}
		return
	}
	if res.Partial != out+".tmp" {
		t.Errorf("result partial %q, want %q", res.Partial, out+".tmp")
	}
	data, err := os.ReadFile(out + ".tmp")
	if err != nil {
		t.Fatalf("partial data not kept: %v", err)
	}
	if int64(len(data)) < least || int64(len(data)) > size {
		t.Fatalf("%s.tmp has %d bytes, want %d to %d", out, len(data), least, size)
	}
	want := make([]byte, len(data))
	origin.Fill(want, 0, seed)
	if !bytes.Equal(data, want) {
		t.Fatalf("%s.tmp is not a prefix of the file", out)
	}
}

// logBuffer collects the JSON log lines of a client, safe for the
// download's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// withLog is a client option that logs at level into the returned buffer.
func withLog(level zerolog.Level) (dlflow.Option, *logBuffer) {
	b := &logBuffer{}
	return dlflow.WithLogger(zerolog.New(b).Level(level)), b
}

// rangedGETs are the logged GETs that carried a Range header, leaving out
// the probe's one-byte request.
func rangedGETs(log []origin.Request) []origin.Request {
	var out []origin.Request
	for _, r := range log {
		if r.Method == "GET" && r.Range != "" && r.Range != "bytes=0-0" {
			out = append(out, r)
		}
	}
	return out
}

// cutShort counts the range answers that ended before their range did:
// the reader dropped them (work stealing replaced a slow connection or
// raced its tail), which closes that connection, so one more may open.
func cutShort(ranged []origin.Request, size int64) int {
	n := 0
	for _, r := range ranged {
		var first, last int64
		if _, err := fmt.Sscanf(r.Range, "bytes=%d-%d", &first, &last); err != nil {
			continue
		}
		if last >= size {
			last = size - 1
		}
		if r.Bytes < last-first+1 {
			n++
		}
	}
	return n
}

func plainGETs(log []origin.Request) []origin.Request {
	var out []origin.Request
	for _, r := range log {
		if r.Method == "GET" && r.Range == "" {
			out = append(out, r)
		}
	}
	return out
}

// verifyNoClientLeaks checks for leaked goroutines while the origin still
// runs, ignoring its server side and what ran before the test (opt, from
// goleak.IgnoreCurrent). Checking only after closing the origin would hide
// idle keep-alive connections of the client: closing the server ends them
// too. Only for tests that do not run in parallel.
func verifyNoClientLeaks(t *testing.T, opt goleak.Option) {
	t.Helper()
	goleak.VerifyNone(t, opt,
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
	)
}

// resumeState mirrors the file sink's state file (sinks/state.go).
type resumeState struct {
	Size   int64      `json:"size"`
	Ranges [][2]int64 `json:"ranges"`
}

// claimed is the number of bytes the state says are on disk.
func (s resumeState) claimed() int64 {
	var n int64
	for _, r := range s.Ranges {
		n += r[1] - r[0]
	}
	return n
}

// readResumeState reads PATH.tmp.state.
func readResumeState(t *testing.T, out string) resumeState {
	t.Helper()
	data, err := os.ReadFile(out + ".tmp.state")
	if err != nil {
		t.Fatalf("no resume state: %v", err)
	}
	var s resumeState
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("state file: %v: %s", err, data)
	}
	return s
}

// contains reports whether s contains every needle.
func contains(s string, needles ...string) bool {
	for _, n := range needles {
		if !strings.Contains(s, n) {
			return false
		}
	}
	return true
}
