package cmd

// Fault tests: every misbehaviour of a server, of the local disk or of the
// input that docs/FAULTS.md lists ends either with the exact bytes at the
// output path (sha256 checked) or with a clean failure: non-zero exit, one
// line on stderr naming the cause, no output file, and the partial data kept
// where a rerun can use it. Each runs the real CLI against a real server on
// 127.0.0.1, across the example topologies where the fault applies.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/nginxtest"
	"github.com/dlflow/dlflow/internal/testfs"
)

// fltTopologies are the shipped example topologies.
var fltTopologies = []string{"stream", "buffered", "ranged", "ranged-ordered"}

// fltRangedTopologies are the ones that send Range requests from the start.
var fltRangedTopologies = []string{"ranged", "ranged-ordered"}

const (
	fltSize = 5<<20 + 4097 // not a multiple of any piece or buffer size
	fltSeed = 11
)

// fltArgs is a download of url into out with the topology, with 1 MiB
// pieces and 4 readers for the ranged ones (so a 5 MiB file has 6 ranges in
// flight on 4 connections), fast retries, and extra.
func fltArgs(topology, url, out string, extra ...string) []string {
	args := []string{"-c", filepath.Join("..", "examples", topology+".yaml"), "--url", url, "-o", out,
		"--set", "stages.fetch.config.backoff=10ms", "--set", "stages.fetch.config.max_backoff=50ms"}
	if strings.HasPrefix(topology, "ranged") {
		args = append(args, "--connections", "4", "--set", "stages.split.config.piece=1MiB")
	}
	return append(args, extra...)
}

// fltOut is a fresh output path in a temporary directory.
func fltOut(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "out.bin")
}

// fltOK asserts a successful run: exit 0, PATH holds exactly size bytes of
// seed, no PATH.tmp left.
func fltOK(t *testing.T, res cliResult, out string, size int64, seed uint64) {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	if got, want := fileSHA256(t, out), origin.SHA256Hex(size, seed); got != want {
		t.Fatalf("sha256 of %s is %s, want %s", out, got, want)
	}
	if _, err := os.Lstat(out + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s.tmp left after success: %v", out, err)
	}
}

// fltFailed asserts a clean failure: exit code want, exactly one stderr line
// that is not a JSON log record, the last one, "dlflow: ..." containing each
// needle; no stack trace; nothing at out. It returns that line.
func fltFailed(t *testing.T, res cliResult, want int, out string, needles ...string) string {
	t.Helper()
	if res.code != want {
		t.Fatalf("exit %d, want %d; stderr:\n%s", res.code, want, res.stderr)
	}
	msg := fltMessage(t, res.stderr)
	t.Log(msg)
	for _, n := range needles {
		if !strings.Contains(msg, n) {
			t.Errorf("message %q does not mention %q", msg, n)
		}
	}
	if strings.Contains(res.stderr, "goroutine ") || strings.Contains(res.stderr, "panic") {
		t.Errorf("stderr looks like a stack trace:\n%s", res.stderr)
	}
	if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists after a failed run: %v", out, err)
	}
	return msg
}

// fltMessage returns the one line of stderr that is not a log record.
func fltMessage(t *testing.T, stderr string) string {
	t.Helper()
	var plain []string
	for _, line := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if !json.Valid([]byte(line)) {
			plain = append(plain, line)
		}
	}
	if len(plain) != 1 || !strings.HasPrefix(plain[0], "dlflow: ") {
		t.Fatalf("want exactly one message line after the log records, got %q; stderr:\n%s", plain, stderr)
	}
	if !strings.HasSuffix(strings.TrimRight(stderr, "\n"), plain[0]) {
		t.Fatalf("the message is not the last line:\n%s", stderr)
	}
	return plain[0]
}

// fltPartialKept asserts that PATH.tmp holds a prefix of the file of at
// least least bytes: what a rerun can resume from, never bytes of the wrong
// place. (Chunks still queued when a run fails are not written, so the
// prefix may end before the byte where the server cut the body; with least
// 0 it may be empty, and then there is no PATH.tmp at all.)
func fltPartialKept(t *testing.T, out string, size int64, seed uint64, least int64) {
	t.Helper()
	data, err := os.ReadFile(out + ".tmp")
	if errors.Is(err, os.ErrNotExist) && least == 0 {
		return // nothing was written, and a PATH.tmp that holds nothing is not kept
	}
	if err != nil {
		t.Fatalf("partial data not kept: %v", err)
	}
	if int64(len(data)) < least || int64(len(data)) > size {
		t.Fatalf("%s.tmp has %d bytes, want %d to %d", out, len(data), least, size)
	}
	want := make([]byte, len(data))
	origin.Fill(want, 0, seed)
	if string(data) != string(want) {
		t.Fatalf("%s.tmp is not a prefix of the file", out)
	}
}

// TestFaultIgnoreRange: the server advertises ranges but answers every
// Range request with 200 and the whole body. Every topology gets the exact
// bytes: the range at 0 streams the whole body and the others are dropped.
func TestFaultIgnoreRange(t *testing.T) {
	cases := map[string][]string{}
	for _, topo := range fltTopologies {
		cases[topo] = nil
	}
	// A reorder window smaller than the file: the ranges dropped by the
	// other readers hold no credit, so the stream from 0 is never starved.
	cases["ranged-ordered/window=2MiB"] = []string{"--set", "stages.order.config.window=2MiB"}
	for name, extra := range cases {
		topo, _, _ := strings.Cut(name, "/")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{IgnoreRange: true})
			out := fltOut(t)
			fltOK(t, runCLI(t, fltArgs(topo, srv.URL(), out, extra...)...), out, fltSize, fltSeed)
			srv.WaitIdle(5 * time.Second)
			full := 0
			for _, r := range srv.Log() {
				if r.Method == http.MethodGet && r.Bytes == fltSize {
					full++
				}
			}
			if full != 1 {
				t.Fatalf("the whole body was sent %d times, want 1", full)
			}
		})
	}
}

// TestFaultIgnoreRangeCannotResume: a stream cut by a server that ignores
// ranges cannot be resumed; the 200 to the resume request is detected, never
// written at the offset, and the prefix received is kept.
func TestFaultIgnoreRangeCannotResume(t *testing.T) {
	for _, topo := range []string{"stream", "ranged"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			// Every GET is cut after 1 MiB, so the range at 0 that streams
			// the whole body is cut too.
			srv.SetFaults(origin.Faults{IgnoreRange: true, DropAfter: 1 << 20})
			out := fltOut(t)
			// The stream's resume request gets the whole body (refused);
			// the reader streaming the whole body knows it cannot resume.
			want := map[string]string{"stream": "the server sent the whole body with 200", "ranged": "cannot resume at byte 1048576"}[topo]
			fltFailed(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), 1, out, want)
			if topo == "stream" {
				fltPartialKept(t, out, fltSize, fltSeed, 0)
			}
		})
	}
}

// TestFaultProbeNoAcceptRanges: a HEAD without Accept-Ranges: bytes (nginx
// with max_ranges 0) makes the ranged topologies one stream.
func TestFaultProbeNoAcceptRanges(t *testing.T) {
	for _, topo := range fltRangedTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			// NoLength answers without Accept-Ranges (and without a length).
			srv.SetFaults(origin.Faults{NoLength: true})
			out := fltOut(t)
			fltOK(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), out, fltSize, fltSeed)
			for _, r := range srv.Log() {
				if r.Method == http.MethodGet && r.Range != "" && r.Range != "bytes=0-0" {
					t.Fatalf("a Range request to a server without ranges: %+v", r)
				}
			}
		})
	}
}

// TestFaultWrongContentRange: a 206 whose Content-Range is not the range
// asked for is never written.
func TestFaultWrongContentRange(t *testing.T) {
	for _, topo := range fltRangedTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{WrongContentRange: true})
			out := fltOut(t)
			fltFailed(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), 1, out, "Content-Range", "not honoured")
		})
	}
}

// TestFaultShortBody: a body shorter than its Content-Length is resumed
// from the first missing byte.
func TestFaultShortBody(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{ShortBody: 1000, ShortBodyRequests: 3})
			out := fltOut(t)
			fltOK(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), out, fltSize, fltSeed)
			if topo == "stream" || topo == "buffered" {
				// The one stream was resumed with a Range request from
				// where it was cut.
				want := fmt.Sprintf("bytes=%d-", fltSize-1000)
				resumed := false
				for _, r := range srv.Log() {
					resumed = resumed || r.Range == want
				}
				if !resumed {
					t.Fatalf("no request for %s: %+v", want, srv.Log())
				}
			}
		})
	}
}

// TestFaultNoHEAD: HEAD refused (403 as from a presigned URL, 405, 501):
// the probe asks GET Range: bytes=0-0 instead.
func TestFaultNoHEAD(t *testing.T) {
	for _, status := range []int{403, 405, 501} {
		for _, topo := range []string{"stream", "ranged"} {
			t.Run(fmt.Sprintf("%d/%s", status, topo), func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				srv.SetFaults(origin.Faults{NoHEAD: status})
				out := fltOut(t)
				fltOK(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), out, fltSize, fltSeed)
				probed := false
				for _, r := range srv.Log() {
					probed = probed || r.Method == http.MethodGet && r.Range == "bytes=0-0"
				}
				if !probed {
					t.Fatal("no GET bytes=0-0 probe after HEAD was refused")
				}
			})
		}
	}
}

// TestFaultNoLength: no Content-Length (chunked): streamed to EOF in every
// topology.
func TestFaultNoLength(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{NoLength: true})
			out := fltOut(t)
			fltOK(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), out, fltSize, fltSeed)
		})
	}
}

// TestFaultNoLengthCut: a chunked body cut before its last chunk is an
// error, never a short file; it cannot be resumed without ranges.
func TestFaultNoLengthCut(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{NoLength: true, DropAfter: 1 << 20})
			out := fltOut(t)
			fltFailed(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), 1, out, "cannot resume", "unexpected EOF")
			if topo == "stream" {
				fltPartialKept(t, out, fltSize, fltSeed, 0)
			}
		})
	}
}

// TestFaultGzip: a gzip-encoded answer despite Accept-Encoding: identity is
// an error in every topology, never decompressed nor written as the file.
func TestFaultGzip(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{Gzip: true})
			out := fltOut(t)
			fltFailed(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), 1, out, `Content-Encoding "gzip"`)
			for _, r := range srv.Log() {
				if r.AcceptEncoding != "identity" {
					t.Fatalf("request without Accept-Encoding: identity: %+v", r)
				}
			}
		})
	}
}

// TestFaultChangedRestarts: the file changes on the server during the
// download. If-Range catches it; the download restarts from zero once, with
// a warning, and the result is entirely the new version.
func TestFaultChangedRestarts(t *testing.T) {
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			f := origin.Faults{ChangeETagAfter: 2}
			if !strings.HasPrefix(topo, "ranged") {
				// One stream: cut it so that its resume meets the change.
				f = origin.Faults{ChangeETagAfter: 1, DropAfter: 1 << 20, DropRequests: 1}
			}
			srv.SetFaults(f)
			out := fltOut(t)
			res := runCLI(t, fltArgs(topo, srv.URL(), out)...)
			fltOK(t, res, out, fltSize, fltSeed+1)
			if !strings.Contains(res.stderr, "restarting the download from zero") {
				t.Fatalf("no restart warning:\n%s", res.stderr)
			}
			ifRange := 0
			for _, r := range srv.Log() {
				if r.Range != "" && r.Range != "bytes=0-0" {
					if r.IfRange == "" {
						t.Fatalf("range request without If-Range: %+v", r)
					}
					ifRange++
				}
			}
			if ifRange == 0 {
				t.Fatal("no range request")
			}
		})
	}
}

// TestFaultChangedTwiceFails: a file that changes again after the restart
// fails cleanly rather than looping or mixing versions.
func TestFaultChangedTwiceFails(t *testing.T) {
	for _, topo := range fltRangedTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{ChangeETagAfter: 2, ChangeAgain: true})
			out := fltOut(t)
			fltFailed(t, runCLI(t, fltArgs(topo, srv.URL(), out)...), 1, out, "resource changed on the server")
		})
	}
}

// TestFaultTransient: connection resets and retryable statuses are retried
// with backoff, resuming from the last byte received.
func TestFaultTransient(t *testing.T) {
	cases := map[string]origin.Faults{
		"reset mid-body":     {DropAfter: 300 << 10, DropRequests: 3},
		"reset after header": {DropRequests: 2},
	}
	for _, status := range []int{408, 429, 500, 502, 503, 504} {
		cases[fmt.Sprint(status)] = origin.Faults{FailStatus: status, FailCount: 3}
	}
	for name, f := range cases {
		for _, topo := range fltTopologies {
			t.Run(name+"/"+topo, func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				srv.SetFaults(f)
				out := fltOut(t)
				var extra []string
				if strings.HasPrefix(topo, "ranged") {
					// Work stealing may fetch a slow tail twice on purpose;
					// this test counts bytes to prove retries resume, so it
					// runs without it (steal_test.go covers stealing).
					extra = []string{"--set", "stages.fetch.config.steal_min=0"}
				}
				res := runCLI(t, fltArgs(topo, srv.URL(), out, extra...)...)
				fltOK(t, res, out, fltSize, fltSeed)
				if !strings.Contains(res.stderr, "retrying") {
					t.Fatalf("no retry logged:\n%s", res.stderr)
				}
				// Every byte received before a reset is kept, so the
				// server sends the file about once (plus error pages).
				if n := srv.Stats().BytesServed; n > fltSize+64<<10 {
					t.Fatalf("%d bytes served for a %d byte file: a retry started over", n, fltSize)
				}
			})
		}
	}
}

// TestFaultStall: a body that stops sending is cancelled after the idle
// timeout and resumed; a stage's idle_timeout and the transport's
// http.idle_timeout both work.
func TestFaultStall(t *testing.T) {
	settings := map[string][]string{
		"stage":     {"--set", "stages.fetch.config.idle_timeout=300ms"},
		"transport": {"--set", "stages.fetch.config.idle_timeout=0s", "--set", "http.idle_timeout=300ms"},
	}
	for name, set := range settings {
		for _, topo := range fltTopologies {
			t.Run(name+"/"+topo, func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				// The first GET trickles one byte a second: a stall.
				srv.SetFaults(origin.Faults{Trickle: 1, TrickleRequest: 1})
				out := fltOut(t)
				start := time.Now()
				res := runCLI(t, fltArgs(topo, srv.URL(), out, set...)...)
				fltOK(t, res, out, fltSize, fltSeed)
				if d := time.Since(start); d > 20*time.Second {
					t.Fatalf("took %v: the stall was not cut", d)
				}
			})
		}
	}
}

// TestFaultRetryAfter: a 503 with Retry-After: 1 waits a second, not the
// configured 10ms backoff.
func TestFaultRetryAfter(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
	srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 1, RetryAfter: "1"})
	out := fltOut(t)
	start := time.Now()
	res := runCLI(t, fltArgs("stream", srv.URL(), out)...)
	fltOK(t, res, out, fltSize, fltSeed)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("retried after %v, Retry-After asked for 1s", d)
	}
}

// TestFaultRetryLimits: the attempts and total_retries budgets end a
// download that keeps failing, with the last error in the message.
func TestFaultRetryLimits(t *testing.T) {
	t.Run("attempts", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{FailStatus: 503, FailCount: 1000})
		out := fltOut(t)
		res := runCLI(t, fltArgs("stream", srv.URL(), out, "--set", "stages.fetch.config.attempts=3")...)
		fltFailed(t, res, 1, out, "giving up after 3 attempts", "503")
		if n := srv.Stats().GETs; n != 3 {
			t.Fatalf("%d GETs, want 3", n)
		}
	})
	t.Run("total_retries", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{DropAfter: 100 << 10})
		out := fltOut(t)
		res := runCLI(t, fltArgs("ranged", srv.URL(), out, "--set", "stages.fetch.config.total_retries=5")...)
		fltFailed(t, res, 1, out, "retries are spent")
	})
}

// TestFaultPermanentStatus: 401, 403, 404, 410 and 416 fail at once, from
// the probe or from a reader, with the status in the message.
func TestFaultPermanentStatus(t *testing.T) {
	for _, status := range []int{401, 403, 404, 410, 416} {
		t.Run(fmt.Sprintf("probe/%d", status), func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{Status: status})
			out := fltOut(t)
			fltFailed(t, runCLI(t, fltArgs("ranged", srv.URL(), out)...), 1, out, fmt.Sprintf("http %d", status))
			if n := srv.Stats().Requests; n > 2 {
				t.Fatalf("%d requests: a permanent status was retried", n)
			}
		})
		for _, topo := range []string{"stream", "ranged"} {
			t.Run(fmt.Sprintf("%s/%d", topo, status), func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
				// The probe's HEAD passes; the first GET of the download fails.
				srv.SetFaults(origin.Faults{FailStatus: status, FailCount: 1})
				out := fltOut(t)
				res := runCLI(t, fltArgs(topo, srv.URL(), out)...)
				fltFailed(t, res, 1, out, fmt.Sprintf("http %d", status))
				if strings.Contains(res.stderr, "retrying") {
					t.Fatalf("a permanent status was retried:\n%s", res.stderr)
				}
			})
		}
	}
}

// TestFaultRedirects: up to 10 redirects are followed, 11 are not; only
// http and https; no credentials to another host; no https to http unless
// http.allow_insecure_redirect.
func TestFaultRedirects(t *testing.T) {
	t.Run("3 followed", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{Redirects: 3})
		out := fltOut(t)
		fltOK(t, runCLI(t, fltArgs("ranged", srv.URL(), out)...), out, fltSize, fltSeed)
	})
	t.Run("11 refused", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{Redirects: 11})
		out := fltOut(t)
		fltFailed(t, runCLI(t, fltArgs("ranged", srv.URL(), out)...), 1, out, "stopped after 10 redirects")
	})
	t.Run("other scheme refused", func(t *testing.T) {
		t.Parallel()
		srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		srv.SetFaults(origin.Faults{RedirectTo: "ftp://127.0.0.1/file.bin"})
		out := fltOut(t)
		fltFailed(t, runCLI(t, fltArgs("stream", srv.URL(), out)...), 1, out, `unsupported scheme "ftp"`)
	})
	t.Run("no credentials to another host", func(t *testing.T) {
		t.Parallel()
		target := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		first := startOrigin(t, origin.Options{Size: 1, Seed: 1})
		first.SetFaults(origin.Faults{RedirectTo: target.URL()})
		out := fltOut(t)
		res := runCLI(t, fltArgs("ranged", first.URL(), out, "--set", "http.headers.Authorization=Bearer tok")...)
		fltOK(t, res, out, fltSize, fltSeed)
		if log := first.Log(); len(log) == 0 || log[0].Authorization != "Bearer tok" {
			t.Fatalf("the first host did not get the credentials: %+v", log)
		}
		for _, r := range target.Log() {
			if r.Authorization != "" {
				t.Fatalf("credentials sent to another host: %+v", r)
			}
		}
	})
	t.Run("https to http", func(t *testing.T) {
		t.Parallel()
		target := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
		tlsSrv := httptest.NewTLSServer(http.RedirectHandler(target.URL(), http.StatusFound))
		t.Cleanup(tlsSrv.Close)
		out := fltOut(t)
		res := runCLI(t, fltArgs("stream", tlsSrv.URL+"/file.bin", out, "--set", "http.insecure=true")...)
		fltFailed(t, res, 1, out, "downgrades https to http")
		if n := target.Stats().Requests; n != 0 {
			t.Fatalf("%d requests reached the http target", n)
		}
		res = runCLI(t, fltArgs("stream", tlsSrv.URL+"/file.bin", out, "--set", "http.insecure=true",
			"--set", "http.allow_insecure_redirect=true")...)
		fltOK(t, res, out, fltSize, fltSeed)
	})
}

// TestFaultHeaderTimeout: a server slower to answer than http.header_timeout
// fails the probe with a timeout, long before it would answer.
func TestFaultHeaderTimeout(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed, Latency: 5 * time.Second})
	out := fltOut(t)
	start := time.Now()
	res := runCLI(t, fltArgs("stream", srv.URL(), out, "--set", "http.header_timeout=200ms")...)
	fltFailed(t, res, 1, out, "no response header from")
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("took %v with a 200ms header timeout", d)
	}
}

// TestFaultTLSTimeout: a server that accepts the connection but never
// completes the TLS handshake fails after http.tls_timeout.
func TestFaultTLSTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c) // held open, silent
		}
	}()
	t.Cleanup(func() { ln.Close(); <-accepted })
	out := fltOut(t)
	start := time.Now()
	res := runCLI(t, fltArgs("stream", "https://"+ln.Addr().String()+"/file.bin", out, "--set", "http.tls_timeout=200ms")...)
	fltFailed(t, res, 1, out, "TLS handshake timeout")
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("took %v with a 200ms TLS timeout", d)
	}
}

// TestFaultBadInput: a malformed URL, header or config value is refused
// with a message naming it, before any request.
func TestFaultBadInput(t *testing.T) {
	cases := []struct {
		name   string
		url    string
		extra  []string
		code   int
		needle string
	}{
		{"scheme", "ftp://127.0.0.1/file.bin", nil, 2, "the scheme must be http or https"},
		{"no host", "http:///file.bin", nil, 2, "no host"},
		{"header injection", "", []string{"--set", "http.headers.X-Test=a\r\nInjected: 1"}, 2, "X-Test"},
		{"header name", "", []string{"--set", "http.headers.Bad Name=x"}, 2, "Bad Name"},
		{"negative timeout", "", []string{"--set", "http.header_timeout=-1s"}, 2, "timeout"},
		{"attempts", "", []string{"--set", "stages.fetch.config.attempts=0"}, 2, "attempts"},
		{"buffer", "", []string{"--set", "stages.fetch.config.buffer=lots"}, 2, "buffer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			url := tc.url
			if url == "" {
				url = srv.URL()
			}
			out := fltOut(t)
			res := runCLI(t, fltArgs("ranged", url, out, tc.extra...)...)
			t.Log(strings.TrimSpace(res.stderr))
			if res.code == 0 {
				t.Fatal("exit 0")
			}
			if res.code != tc.code {
				t.Errorf("exit %d, want %d", res.code, tc.code)
			}
			if !strings.Contains(res.stderr, tc.needle) {
				t.Errorf("stderr does not mention %q:\n%s", tc.needle, res.stderr)
			}
			if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s exists", out)
			}
			if n := srv.Stats().Requests; n != 0 {
				t.Fatalf("%d requests despite the bad input", n)
			}
		})
	}
}

// fltMount mounts a tmpfs with opts at a new directory for the test, or
// skips the test when it cannot (not root, no mount).
func fltMount(t *testing.T, opts string) string {
	t.Helper()
	return testfs.Mount(t, "tmpfs", opts)
}

// TestDiskFull: 8 MiB into a 2 MiB file system ends with a clean error
// naming the path (ENOSPC), from the preallocation or, without it, from a
// write; the stream keeps what fitted.
func TestDiskFull(t *testing.T) {
	const size = 8 << 20
	for _, topo := range []string{"stream", "ranged", "ranged-ordered"} {
		for _, prealloc := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/preallocate=%v", topo, prealloc), func(t *testing.T) {
				dir := fltMount(t, "size=2m")
				srv := startOrigin(t, origin.Options{Size: size, Seed: fltSeed})
				out := filepath.Join(dir, "out.bin")
				res := runCLI(t, fltArgs(topo, srv.URL(), out, "--set", fmt.Sprintf("stages.write.config.preallocate=%v", prealloc))...)
				fltFailed(t, res, 1, out, "no space left on device", out+".tmp")
				if topo == "stream" && !prealloc {
					fltPartialKept(t, out, size, fltSeed, 0)
				}
			})
		}
	}
}

// TestFaultExistingOutput: an existing output is never replaced without
// --overwrite, and nothing is downloaded.
func TestFaultExistingOutput(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
	out := fltOut(t)
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, fltArgs("ranged", srv.URL(), out)...)
	if res.code == 0 {
		t.Fatal("exit 0 with an existing output")
	}
	fltMessage(t, res.stderr)
	if data, _ := os.ReadFile(out); string(data) != "precious" {
		t.Fatalf("existing output changed to %d bytes", len(data))
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Fatalf("%d requests before refusing", n)
	}
	fltOK(t, runCLI(t, fltArgs("ranged", srv.URL(), out, "--overwrite")...), out, fltSize, fltSeed)
}

// TestFaultSymlinkTmp: a symlink planted at PATH.tmp is never followed: the
// file it points to stays as it was.
func TestFaultSymlinkTmp(t *testing.T) {
	for _, topo := range []string{"stream", "ranged"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			out := fltOut(t)
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, out+".tmp"); err != nil {
				t.Fatal(err)
			}
			res := runCLI(t, fltArgs(topo, srv.URL(), out)...)
			if res.code == 0 {
				t.Fatal("exit 0 with a symlink at PATH.tmp")
			}
			fltFailed(t, res, res.code, out, "symlink")
			if data, _ := os.ReadFile(victim); string(data) != "victim" {
				t.Fatalf("the symlink target was written: %d bytes", len(data))
			}
			if st, err := os.Lstat(out + ".tmp"); err != nil || st.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the symlink was replaced: %v", err)
			}
		})
	}
}

// TestFaultReadOnlyDir: an output directory that cannot be written fails
// before any network I/O. As root permission bits do not stop writes, so the
// directory is a read-only tmpfs.
func TestFaultReadOnlyDir(t *testing.T) {
	dir := fltMount(t, "ro,size=1m")
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
	out := filepath.Join(dir, "out.bin")
	res := runCLI(t, fltArgs("ranged", srv.URL(), out)...)
	if res.code == 0 {
		t.Fatal("exit 0 into a read-only directory")
	}
	fltFailed(t, res, res.code, out, "read-only file system")
	if n := srv.Stats().Requests; n != 0 {
		t.Fatalf("%d requests to the server before failing", n)
	}
}

// fltChild runs the CLI as a child process in dir and waits for it.
func fltChild(t *testing.T, dir string, args ...string) (stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	var errBuf strings.Builder
	cmd.Stderr = &errBuf
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return errBuf.String(), cmd.ProcessState.ExitCode()
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the CLI did not finish in a minute; stderr:\n%s", errBuf.String())
		return "", 0
	}
}

// TestFaultContentDisposition: without -o the server's Content-Disposition
// names the file, reduced to a base name in the working directory: a path
// in it never writes outside.
func TestFaultContentDisposition(t *testing.T) {
	cases := map[string]string{
		"filename":  `attachment; filename="../etc/passwd"`,
		"filename*": `attachment; filename="x.bin"; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd`,
		"backslash": `attachment; filename="..\\..\\passwd"`,
	}
	for name, cd := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{ContentDisposition: cd})
			root := t.TempDir()
			work := filepath.Join(root, "a", "b")
			if err := os.MkdirAll(work, 0o755); err != nil {
				t.Fatal(err)
			}
			stderr, code := fltChild(t, work, srv.URL())
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got, want := fileSHA256(t, filepath.Join(work, "passwd")), origin.SHA256Hex(fltSize, fltSeed); got != want {
				t.Fatalf("sha256 %s, want %s", got, want)
			}
			// Nothing but a/b/passwd anywhere under root.
			var files []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			if len(files) != 1 {
				t.Fatalf("files written: %q", files)
			}
		})
	}
}

// TestFaultSecretsRedacted: a password in the URL and an Authorization
// header never appear in a log line or in the error, even at debug level.
func TestFaultSecretsRedacted(t *testing.T) {
	for _, topo := range []string{"stream", "ranged"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(origin.Faults{Status: 404})
			url := strings.Replace(srv.URL(), "http://", "http://user:secret1@", 1)
			out := fltOut(t)
			res := runCLI(t, fltArgs(topo, url, out, "--log-level", "debug", "--log-format", "json",
				"--set", "http.headers.Authorization=Bearer secret2")...)
			fltFailed(t, res, 1, out, "http 404")
			if strings.Contains(res.stderr, "secret") {
				t.Fatalf("a secret leaked to stderr:\n%s", res.stderr)
			}
		})
	}
}

// TestFaultNginx: the faults a real nginx produces: max_ranges 0 (Range
// ignored, no Accept-Ranges), limit_rate (slow, many connections), and a
// missing file.
func TestFaultNginx(t *testing.T) {
	const size, seed = 6<<20 + 77, 23
	root := t.TempDir()
	if err := origin.WriteFile(filepath.Join(root, "file.bin"), size, seed); err != nil {
		t.Fatal(err)
	}
	zero := 0
	cases := []struct {
		name string
		opts nginxtest.Options
	}{
		{"max_ranges 0", nginxtest.Options{Root: root, MaxRanges: &zero}},
		{"limit_rate", nginxtest.Options{Root: root, LimitRate: "4m"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := nginxtest.StartT(t, tc.opts)
			for _, topo := range fltTopologies {
				t.Run(topo, func(t *testing.T) {
					out := fltOut(t)
					fltOK(t, runCLI(t, fltArgs(topo, srv.BaseURL()+"/file.bin", out)...), out, size, seed)
				})
			}
			t.Run("404", func(t *testing.T) {
				out := fltOut(t)
				fltFailed(t, runCLI(t, fltArgs("ranged", srv.BaseURL()+"/missing.bin", out)...), 1, out, "http 404")
			})
		})
	}
}
