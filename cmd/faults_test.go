package cmd

// The fault tests of the download itself call the library (the dlflow
// package's faults_*_test.go; docs/FAULTS.md lists them). Here the CLI's
// share of a failure: whatever goes wrong, a non-zero exit (1 for a failed
// download, 2 for bad input), one line on stderr naming the cause after any
// log records, nothing on stdout, no output file, and no secret on stderr.

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
)

const (
	fltSize = 5<<20 + 4097 // not a multiple of any piece or buffer size
	fltSeed = 11
)

// fltArgs is a download of url into out with the topology, with 1 MiB
// pieces and 4 readers for the ranged ones (so a 5 MiB file has 6 ranges in
// flight on 4 connections), fast retries, and extra.
func fltArgs(topology, url, out string, extra ...string) []string {
	args := []string{"-c", examplePath(topology), "--url", url, "-o", out,
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
// needle; nothing on stdout; no stack trace; nothing at out. It returns that
// line.
func fltFailed(t *testing.T, res cliResult, want int, out string, needles ...string) string {
	t.Helper()
	msg := fltFailedLine(t, res, want, needles...)
	if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists after a failed run: %v", out, err)
	}
	return msg
}

// fltFailedLine is fltFailed without the check of the output.
func fltFailedLine(t *testing.T, res cliResult, want int, needles ...string) string {
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
	if res.stdout != "" {
		t.Errorf("stdout is not empty: %q", res.stdout)
	}
	if strings.Contains(res.stderr, "goroutine ") || strings.Contains(res.stderr, "panic") {
		t.Errorf("stderr looks like a stack trace:\n%s", res.stderr)
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

// withSecret puts credentials into the origin's URL u.
func withSecret(u string) string { return strings.Replace(u, "http://", "http://user:secret1@", 1) }

// cliFault is a case of TestFaultsCLIContract: a failure and what the CLI
// must say of it.
type cliFault struct {
	name    string
	faults  origin.Faults
	url     func(base string) string // nil: the origin's URL
	prepare func(t *testing.T, out string)
	args    func(url, out string) []string
	code    int
	needles []string
	// records: log records (warnings at the default level) may come
	// before the message; without, stderr is the message alone.
	// logged: records naming the URL must come (a leak would show).
	// exists: out exists before the run and must stay as it was.
	records, logged, exists bool
}

// cliFaults are the cases of TestFaultsCLIContract.
var cliFaults = []cliFault{
	{
		name: "probe 404, credentials, debug log", faults: origin.Faults{Status: 404}, url: withSecret,
		args: func(url, out string) []string {
			return fltArgs("ranged", url, out, "--log-level", "debug", "--log-format", "json", "-H", "Authorization: Bearer secret2")
		},
		code: exitFailed, needles: []string{"http 404", "user:xxxxx@"}, records: true,
	},
	{
		// The probe's answer is cut, and the requests for the rest 404.
		name: "stage 404, credentials, debug log", faults: origin.Faults{FailStatus: 404, FailCount: 1000, FailAfter: 1, DropAfter: 100 << 10, DropRequests: 1}, url: withSecret,
		args: func(url, out string) []string {
			return fltArgs("stream", url, out, "--log-level", "debug", "--log-format", "json", "--set", "http.headers.Authorization=Bearer secret2")
		},
		code: exitFailed, needles: []string{"http 404"}, records: true, logged: true,
	},
	{
		name: "retries spent", faults: origin.Faults{FailStatus: 503, FailCount: 1000},
		args: func(url, out string) []string {
			return fltArgs("stream", url, out, "--set", "stages.fetch.config.attempts=3")
		},
		code: exitFailed, needles: []string{"giving up after 3 attempts", "503"}, records: true,
	},
	{
		name: "wrong Content-Range", faults: origin.Faults{WrongContentRange: true},
		args: func(url, out string) []string { return fltArgs("ranged", url, out) },
		code: exitFailed, needles: []string{"Content-Range", "not honoured"},
	},
	{
		name: "changed twice", faults: origin.Faults{ChangeETagAfter: 2, ChangeAgain: true},
		args: func(url, out string) []string { return fltArgs("ranged", url, out, "--log-level", "info") },
		code: exitFailed, needles: []string{"resource changed on the server"}, records: true,
	},
	{
		name: "11 redirects", faults: origin.Faults{Redirects: 11},
		args: func(url, out string) []string { return fltArgs("ranged", url, out) },
		code: exitFailed, needles: []string{"stopped after 10 redirects"},
	},
	{
		name: "checksum mismatch",
		args: func(url, out string) []string {
			return fltArgs("ranged-ordered", url, out, "--checksum", "sha256:"+strings.Repeat("0", 64))
		},
		code: exitFailed, needles: []string{"sha256 mismatch", origin.SHA256Hex(fltSize, fltSeed)},
	},
	{
		name: "output exists",
		prepare: func(t *testing.T, out string) {
			if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		args: func(url, out string) []string { return fltArgs("ranged", url, out) },
		code: exitFailed, needles: []string{"exists", "--overwrite"}, exists: true,
	},
	{
		name: "symlink at PATH.tmp",
		prepare: func(t *testing.T, out string) {
			if err := os.Symlink(filepath.Join(t.TempDir(), "victim"), out+".tmp"); err != nil {
				t.Fatal(err)
			}
		},
		args: func(url, out string) []string { return fltArgs("stream", url, out) },
		code: exitFailed, needles: []string{"symlink"},
	},
	{
		name: "scheme", url: func(string) string { return "ftp://127.0.0.1/file.bin" },
		args: func(url, out string) []string { return fltArgs("ranged", url, out) },
		code: exitUsage, needles: []string{"the scheme must be http or https"},
	},
	{
		name: "header injection",
		args: func(url, out string) []string {
			return fltArgs("ranged", url, out, "--set", "http.headers.X-Test=a\r\nInjected: 1")
		},
		code: exitUsage, needles: []string{"X-Test"},
	},
	{
		name: "stage config value",
		args: func(url, out string) []string {
			return fltArgs("ranged", url, out, "--set", "stages.fetch.config.attempts=0")
		},
		code: exitUsage, needles: []string{"attempts"},
	},
}

// TestFaultsCLIContract runs failures of every kind through the CLI, from
// the probe, from a running graph, from the disk and from the input, at the
// default log level and at debug level with JSON records: each exits 1 (2
// for bad input, before any request) with one line on stderr, the last,
// that names the cause, nothing on stdout and no output file; no secret
// of the URL or of a header reaches stderr.
func TestFaultsCLIContract(t *testing.T) {
	for _, tc := range cliFaults {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			srv.SetFaults(tc.faults)
			url := srv.URL()
			if tc.url != nil {
				url = tc.url(url)
			}
			out := fltOut(t)
			if tc.prepare != nil {
				tc.prepare(t, out)
			}
			res := runCLI(t, tc.args(url, out)...)
			if tc.exists {
				fltFailedLine(t, res, tc.code, tc.needles...)
				if data, _ := os.ReadFile(out); string(data) != "precious" {
					t.Errorf("the existing output changed to %d bytes", len(data))
				}
			} else {
				fltFailed(t, res, tc.code, out, tc.needles...)
			}
			if !tc.records && strings.Count(strings.TrimRight(res.stderr, "\n"), "\n") != 0 {
				t.Errorf("stderr is more than the message at the default log level:\n%s", res.stderr)
			}
			if strings.Contains(res.stderr, "secret") {
				t.Errorf("a secret leaked to stderr:\n%s", res.stderr)
			}
			if tc.logged && !strings.Contains(res.stderr, `"url":"http://user:xxxxx@127.0.0.1:`) {
				t.Errorf("no record names the URL: the test would not see a leak in them:\n%s", res.stderr)
			}
			if tc.code == exitUsage || tc.exists {
				if n := srv.Stats().Requests; n != 0 {
					t.Errorf("%d requests before refusing", n)
				}
			}
		})
	}
}
