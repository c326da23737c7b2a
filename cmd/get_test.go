package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/origin"
)

// exampleTopologies are the shipped topology files, relative to this
// package's directory (go test runs in it).
var exampleTopologies = []string{"stream", "buffered", "ranged", "ranged-ordered"}

func examplePath(name string) string { return filepath.Join("..", "examples", name+".yaml") }

func isRanged(topology string) bool { return strings.HasPrefix(topology, "ranged") }

// assertComplete fails the test unless path holds exactly the origin's
// bytes and no .tmp was left behind.
func assertComplete(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("output: %v", err)
	}
	if fi.Size() != size {
		t.Fatalf("output is %d bytes, want %d", fi.Size(), size)
	}
	if got, want := fileSHA256(t, path), origin.SHA256Hex(size, seed); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(".tmp left behind: %v", err)
	}
}

// assertFailedCleanly fails the test unless the run failed with exit code
// want, printed exactly one line on stderr containing each of needles, and
// left no output.
func assertFailedCleanly(t *testing.T, res cliResult, want int, path string, needles ...string) {
	t.Helper()
	if res.code != want {
		t.Fatalf("exit %d, want %d; stderr: %s", res.code, want, res.stderr)
	}
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Fatalf("stderr is %d lines, want one:\n%s", len(lines), res.stderr)
	}
	for _, n := range needles {
		if !strings.Contains(lines[0], n) {
			t.Errorf("stderr %q does not mention %q", lines[0], n)
		}
	}
	if strings.Contains(res.stderr, "goroutine ") || strings.Contains(res.stderr, "panic") {
		t.Errorf("stderr looks like a stack trace: %s", res.stderr)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output exists after a failed run: %v", err)
	}
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

func plainGETs(log []origin.Request) []origin.Request {
	var out []origin.Request
	for _, r := range log {
		if r.Method == "GET" && r.Range == "" {
			out = append(out, r)
		}
	}
	return out
}

func TestGetStreamsTheExactBytes(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 3<<20 + 5, Seed: 7})
	out := filepath.Join(t.TempDir(), "out.bin")
	res := runCLI(t, "-c", "../examples/stream.yaml", "--url", srv.URL(), "-o", out)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	assertComplete(t, out, 3<<20+5, 7)
}

// TestGetExampleTopologies runs every shipped topology over the sizes that
// hit its edge cases: empty, one byte, a size that is a multiple of neither
// the 4 MiB piece nor the 256 KiB buffer, and one large enough for many
// pieces in flight.
func TestGetExampleTopologies(t *testing.T) {
	sizes := []int64{0, 1, 9<<20 + 4097, 64 << 20}
	for _, topo := range exampleTopologies {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", topo, size), func(t *testing.T) {
				t.Parallel()
				seed := uint64(size) + 11
				srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
				out := filepath.Join(t.TempDir(), "out.bin")
				res := runCLI(t, "-c", examplePath(topo), "--url", srv.URL(), "-o", out)
				if res.code != 0 {
					t.Fatalf("exit %d: %s", res.code, res.stderr)
				}
				assertComplete(t, out, size, seed)
				srv.WaitIdle(5 * time.Second)
				if isRanged(topo) && size > 4<<20 && len(rangedGETs(srv.Log())) < 2 {
					t.Errorf("%d-byte file fetched with %d range requests, want one per 4 MiB piece",
						size, len(rangedGETs(srv.Log())))
				}
			})
		}
	}
}

// TestGetConnections checks that --connections reaches the range readers:
// the file arrives by Range requests from at most that many connections.
func TestGetConnections(t *testing.T) {
	const size, seed = 40<<20 + 17, 5
	for _, topo := range []string{"ranged", "ranged-ordered"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
			out := filepath.Join(t.TempDir(), "out.bin")
			res := runCLI(t, "-c", examplePath(topo), "--url", srv.URL(), "-o", out, "--connections", "3")
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			assertComplete(t, out, size, seed)
			srv.WaitIdle(5 * time.Second)
			ranged := rangedGETs(srv.Log())
			if want := (size + 4<<20 - 1) / (4 << 20); len(ranged) < int(want) {
				t.Fatalf("%d range requests, want at least %d (one per piece)", len(ranged), want)
			}
			// Each reader keeps its own connection, so three readers use at
			// most three (a retry could add one; none is expected here).
			conns := map[string]bool{}
			for _, r := range ranged {
				conns[r.RemoteAddr] = true
			}
			if len(conns) > 3 {
				t.Errorf("range requests came from %d connections, want at most 3: %v", len(conns), conns)
			}
			// At most three requests at once. The probe's connection is
			// reused by a reader when it is back in the idle pool in time;
			// on a loaded machine the readers may have dialled before, and
			// it idles beside them until the end: one more, never two.
			if st := srv.Stats(); st.MaxOpenConns > 4 || st.MaxInFlight > 3 {
				t.Errorf("%d connections open and %d requests in flight at once, want at most 4 and 3", st.MaxOpenConns, st.MaxInFlight)
			}
		})
	}
}

// TestGetWithoutContentLength: a chunked answer of unknown length. The
// sequential topologies just stream it; the ranged ones cannot split an
// unknown size and must fall back to one plain GET.
func TestGetWithoutContentLength(t *testing.T) {
	const size, seed = 5<<20 + 333, 9
	for _, topo := range exampleTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
			srv.SetFaults(origin.Faults{NoLength: true})
			out := filepath.Join(t.TempDir(), "out.bin")
			res := runCLI(t, "-c", examplePath(topo), "--url", srv.URL(), "-o", out)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			assertComplete(t, out, size, seed)
			srv.WaitIdle(5 * time.Second)
			log := srv.Log()
			if isRanged(topo) {
				if n := len(rangedGETs(log)); n != 0 {
					t.Errorf("%d range requests to a server without ranges: %+v", n, log)
				}
			}
			if n := len(plainGETs(log)); n != 1 {
				t.Errorf("%d GETs without Range, want exactly one: %+v", n, log)
			}
		})
	}
}

// TestGetDefaultTopology: without -c the CLI picks stream for a small file
// and ranged for a large one that the server serves by ranges.
func TestGetDefaultTopology(t *testing.T) {
	cases := []struct {
		name   string
		size   int64
		ranged bool
	}{
		{"small-streams", 1<<20 + 3, false},
		{"large-ranged", 20<<20 + 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: c.size, Seed: 3})
			out := filepath.Join(t.TempDir(), "out.bin")
			res := runCLI(t, srv.URL(), "-o", out)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			assertComplete(t, out, c.size, 3)
			srv.WaitIdle(5 * time.Second)
			log := srv.Log()
			if n := len(rangedGETs(log)); c.ranged && n < 2 {
				t.Errorf("%d range requests for a %d-byte file, want the ranged topology", n, c.size)
			} else if !c.ranged && n != 0 {
				t.Errorf("%d range requests for a %d-byte file, want one stream", n, c.size)
			}
			if n := len(plainGETs(log)); !c.ranged && n != 1 {
				t.Errorf("%d plain GETs, want one stream: %+v", n, log)
			}
		})
	}
}

// TestGetCancelledLeaksNothing cancels a throttled download mid-body: the
// run must end promptly with the interrupt's exit code, keep the partial
// .tmp for a resume, never create the output, and leave no goroutine
// behind (idle keep-alive connections included).
func TestGetCancelledLeaksNothing(t *testing.T) {
	for _, topo := range exampleTopologies {
		t.Run(topo, func(t *testing.T) {
			srv, err := origin.Start(origin.Options{Size: 32 << 20, Seed: 1, RateLimit: 2 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			out := filepath.Join(t.TempDir(), "out.bin")

			ctx, cancel := context.WithCancelCause(context.Background())
			timer := time.AfterFunc(100*time.Millisecond, func() { cancel(&interrupted{sig: os.Interrupt}) })
			defer timer.Stop()
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(ctx, []string{"-c", examplePath(topo), "--url", srv.URL(), "-o", out}, nil, &stdout, &stderr)
			cancel(nil)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("cancelled run took %v", d)
			}
			assertFailedCleanly(t, cliResult{stdout.String(), stderr.String(), code}, exitInterrupted, out, "interrupted")
			// What was written is kept for a resume, with its state; a
			// .tmp that nothing was written into yet is not kept.
			if fltExists(out+".tmp") != fltExists(out+".tmp.state") {
				t.Errorf("partial .tmp kept: %v, its state: %v; want both or neither", fltExists(out+".tmp"), fltExists(out+".tmp.state"))
			}
			verifyNoClientLeaks(t)
			srv.Close()
			goleak.VerifyNone(t)
		})
	}
}

// TestGetNotFoundLeaksNothing: a 404 fails the run with exit 1 and one line
// naming the status, no output, and no goroutine left behind. "probe" 404s
// every request; "stage" lets the HEAD probe through and 404s the GETs, so
// the error comes out of a running graph.
func TestGetNotFoundLeaksNothing(t *testing.T) {
	faults := map[string]origin.Faults{
		"probe": {Status: 404},
		"stage": {FailStatus: 404, FailCount: 1000},
	}
	for _, topo := range exampleTopologies {
		for _, where := range []string{"probe", "stage"} {
			t.Run(topo+"/"+where, func(t *testing.T) {
				testNotFound(t, topo, faults[where])
			})
		}
	}
}

func testNotFound(t *testing.T, topo string, f origin.Faults) {
	srv, err := origin.Start(origin.Options{Size: 9 << 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetFaults(f)
	out := filepath.Join(t.TempDir(), "out.bin")
	res := runCLI(t, "-c", examplePath(topo), "--url", srv.URL(), "-o", out)
	assertFailedCleanly(t, res, exitFailed, out, "404")
	verifyNoClientLeaks(t)
	srv.Close()
	goleak.VerifyNone(t)
}

// verifyNoClientLeaks checks for leaked goroutines while the origin still
// runs, ignoring its server side. Checking only after closing the origin
// would hide idle keep-alive connections of the run's client: closing the
// server ends them too.
func verifyNoClientLeaks(t *testing.T) {
	t.Helper()
	goleak.VerifyNone(t,
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
	)
}

// TestGetSuccessLeaksNothing: a completed ranged run (many connections,
// all idle at the end) leaves no goroutine behind either.
func TestGetSuccessLeaksNothing(t *testing.T) {
	srv, err := origin.Start(origin.Options{Size: 20<<20 + 1, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "out.bin")
	res := runCLI(t, srv.URL(), "-o", out, "--connections", "4")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	assertComplete(t, out, 20<<20+1, 2)
	verifyNoClientLeaks(t)
	srv.Close()
	goleak.VerifyNone(t)
}

// TestGetServerIgnoringRanges: the server advertises Accept-Ranges but
// answers every Range request with 200 and the whole body. The ranged
// topologies must still produce the exact bytes, from one full-body stream,
// not by taking the whole file once per piece.
func TestGetServerIgnoringRanges(t *testing.T) {
	const size, seed = 20<<20 + 9, 4
	cases := map[string][]string{
		"ranged":         {"-c", examplePath("ranged")},
		"ranged-ordered": {"-c", examplePath("ranged-ordered")},
		"default":        nil,
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
			srv.SetFaults(origin.Faults{IgnoreRange: true})
			out := filepath.Join(t.TempDir(), "out.bin")
			res := runCLI(t, append(args, "--url", srv.URL(), "-o", out)...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			assertComplete(t, out, size, seed)
			srv.WaitIdle(5 * time.Second)
			var full int
			var served int64
			for _, r := range srv.Log() {
				if r.Method == "GET" {
					served += r.Bytes
					if r.Bytes == size {
						full++
					}
				}
			}
			if full != 1 {
				t.Errorf("the whole file was sent %d times, want one stream: %+v", full, srv.Log())
			}
			// Abandoned 200s push bytes into socket buffers before the
			// server sees them closed: how many depends on the machine's
			// load, so it is logged, not bounded. The client read the file
			// once (full == 1 above and the sha256).
			t.Logf("origin served %d bytes for a %d-byte file", served, size)
		})
	}
}
