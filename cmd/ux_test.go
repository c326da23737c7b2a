package cmd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vbauerster/mpb/v8"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/cmd/internal/progress"
)

// uxSummary decodes the --json object; the names are the contract.
type uxSummary struct {
	URL          string  `json:"url"`
	Output       string  `json:"output"`
	Bytes        int64   `json:"bytes"`
	Seconds      float64 `json:"seconds"`
	RateBPS      float64 `json:"rate_bps"`
	Connections  int     `json:"connections"`
	Retries      int64   `json:"retries"`
	ResumedBytes int64   `json:"resumed_bytes"`
	Checksum     string  `json:"checksum"`
	Topology     string  `json:"topology"`
	Skipped      bool    `json:"skipped"`
	Error        string  `json:"error"`
	ExitCode     int     `json:"exit_code"`
}

// uxJSON decodes stdout, which must be exactly one JSON object on one line
// with every contract key present.
func uxJSON(t *testing.T, stdout string) uxSummary {
	t.Helper()
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "}\n") {
		t.Fatalf("stdout is not one JSON line: %q", stdout)
	}
	var keys map[string]any
	if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
		t.Fatalf("stdout: %v: %s", err, stdout)
	}
	for _, k := range []string{"url", "output", "bytes", "seconds", "rate_bps", "connections", "retries", "resumed_bytes", "checksum", "topology"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("the summary lacks %q: %s", k, stdout)
		}
	}
	var s uxSummary
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("stdout: %v: %s", err, stdout)
	}
	return s
}

// TestLimitRate: --limit-rate is one budget for the whole download. Four
// connections fetching 2 MiB at 4 MiB/s together cannot be done before
// (2 MiB - the bucket's burst of 256 KiB) / 4 MiB/s = 437ms; separate
// budgets per connection would finish in about a quarter of that. The bound
// is a lower one only: the limiter guarantees it however slow the machine.
func TestLimitRate(t *testing.T) {
	const size, seed = 2 << 20, 31
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ranged", []string{"-c", examplePath("ranged"), "--connections", "4", "--set", "stages.split.config.piece=256KiB"}},
		{"stream", []string{"-c", examplePath("stream")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			args := append([]string{"--url", srv.URL(), "-o", out, "--limit-rate", "4MiB", "--json"}, tc.args...)
			start := time.Now()
			res := runCLI(t, args...)
			elapsed := time.Since(start)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			assertComplete(t, out, size, seed)
			if elapsed < 350*time.Millisecond {
				t.Fatalf("2 MiB at 4 MiB/s took %v; the limit is not applied to the whole download", elapsed)
			}
			if s := uxJSON(t, res.stdout); s.Bytes != size {
				t.Fatalf("summary bytes %d, want %d", s.Bytes, size)
			}
		})
	}
	t.Run("bad value", func(t *testing.T) {
		res := runCLI(t, srv.URL(), "-o", filepath.Join(t.TempDir(), "x"), "--limit-rate", "fast")
		if res.code != exitUsage || !strings.Contains(res.stderr, "--limit-rate") || !strings.Contains(res.stderr, `"fast"`) {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
	})
}

// headerServer serves content with Range support on 127.0.0.1 and records
// the headers of every request.
type headerServer struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func startHeaderServer(t *testing.T, content []byte, tlsServer bool) *headerServer {
	t.Helper()
	hs := &headerServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.mu.Lock()
		hs.headers = append(hs.headers, r.Header.Clone())
		hs.mu.Unlock()
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "file.bin", time.Time{}, bytes.NewReader(content))
	})
	hs.Server = httptest.NewUnstartedServer(h)
	// A client refusing the certificate is what a test wants, not news.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsServer {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	return hs
}

func (hs *headerServer) requests() []http.Header {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]http.Header(nil), hs.headers...)
}

// TestHeadersAndCredentials: -H headers, --user-agent and basic auth (from
// the URL, --user or http.basic_auth) reach every request, probe included,
// and no secret shows in the logs, even at debug level, nor in the summary.
func TestHeadersAndCredentials(t *testing.T) {
	content := bytes.Repeat([]byte("dlflow-"), 50_000) // 350 kB
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		name     string
		url      func(base string) string
		args     []string
		want     map[string]string // header -> value on every request
		secrets  []string
		ranged   bool
		topology string
	}{
		{
			name: "headers",
			url:  func(base string) string { return base + "/file.bin" },
			args: []string{"-H", "X-Token: tok-secret-1", "-H", "Authorization: Bearer bearer-secret-2", "--user-agent", "ux-test/1"},
			want: map[string]string{"X-Token": "tok-secret-1", "Authorization": "Bearer bearer-secret-2", "User-Agent": "ux-test/1", "Accept-Encoding": "identity"},
			// The header names are fine to log; their values are not.
			secrets: []string{"tok-secret-1", "bearer-secret-2"},
		},
		{
			name: "url userinfo",
			url: func(base string) string {
				return strings.Replace(base, "http://", "http://alice:url-secret-3@", 1) + "/file.bin"
			},
			want:    map[string]string{"Authorization": basic("alice", "url-secret-3")},
			secrets: []string{"url-secret-3", strings.TrimPrefix(basic("alice", "url-secret-3"), "Basic ")},
		},
		{
			name:    "--user, ranged",
			url:     func(base string) string { return base + "/file.bin" },
			args:    []string{"--user", "bob:flag-secret-4", "-c", examplePath("ranged"), "--connections", "3", "--set", "stages.split.config.piece=64KiB"},
			want:    map[string]string{"Authorization": basic("bob", "flag-secret-4")},
			secrets: []string{"flag-secret-4", strings.TrimPrefix(basic("bob", "flag-secret-4"), "Basic ")},
			ranged:  true,
		},
		{
			name:    "config key",
			url:     func(base string) string { return base + "/file.bin" },
			args:    []string{"--set", "http.basic_auth=carol:set-secret-5"},
			want:    map[string]string{"Authorization": basic("carol", "set-secret-5")},
			secrets: []string{strings.TrimPrefix(basic("carol", "set-secret-5"), "Basic ")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := startHeaderServer(t, content, false)
			out := filepath.Join(t.TempDir(), "out.bin")
			args := append([]string{tc.url(hs.URL), "-o", out, "--log-level", "debug", "--log-format", "json", "--json"}, tc.args...)
			res := runCLI(t, args...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, content) {
				t.Fatalf("output differs from the content (%d bytes)", len(got))
			}
			reqs := hs.requests()
			ranged := 0
			for i, h := range reqs {
				for name, want := range tc.want {
					if got := h.Get(name); got != want {
						t.Errorf("request %d: %s is %q, want %q", i, name, got, want)
					}
				}
				if r := h.Get("Range"); r != "" && r != "bytes=0-0" {
					ranged++
				}
			}
			if tc.ranged && ranged < 2 {
				t.Errorf("%d ranged requests; the test wants several connections to carry the credentials", ranged)
			}
			if !strings.Contains(res.stderr, `"level":"debug"`) {
				t.Errorf("no debug lines: the test would not see a leak:\n%s", res.stderr)
			}
			for _, secret := range tc.secrets {
				if strings.Contains(res.stderr, secret) || strings.Contains(res.stdout, secret) {
					t.Errorf("%q leaked:\nstdout: %s\nstderr:\n%s", secret, res.stdout, res.stderr)
				}
			}
			if s := uxJSON(t, res.stdout); s.Bytes != int64(len(content)) {
				t.Errorf("summary bytes %d, want %d", s.Bytes, len(content))
			}
		})
	}
}

// TestProgressEventsWithoutTTY: with stderr not a terminal there is no bar;
// --log-level info gives JSON progress events at the tap's interval with
// bytes, total, percent, rate and eta. The origin sends 1 MiB at 2 MiB/s,
// so a 100ms interval ticks several times.
func TestProgressEventsWithoutTTY(t *testing.T) {
	const size, seed = 1 << 20, 5
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed, RateLimit: 2 << 20})
	out := filepath.Join(t.TempDir(), "out.bin")
	res := runCLI(t, srv.URL(), "-o", out, "--log-level", "info", "--log-format", "json",
		"--set", "stages.progress.config.interval=100ms")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	assertComplete(t, out, size, seed)
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "dlflow: saved ") {
		t.Errorf("the last line is not the summary: %q", last)
	}
	full := 0
	for _, line := range lines[:len(lines)-1] {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("a log line is not JSON (%v): %q", err, line)
		}
		if ev["message"] != "progress" {
			continue
		}
		if ev["level"] != "info" || ev["stage"] != "progress" || ev["total"] != float64(size) {
			t.Errorf("progress event %q", line)
		}
		_, hasPercent := ev["percent"]
		_, hasRate := ev["rate"]
		_, hasETA := ev["eta_s"]
		if b, ok := ev["bytes"].(float64); ok && b > 0 && b < size && hasPercent && hasRate && hasETA {
			full++
		}
	}
	if full == 0 {
		t.Fatalf("no progress event with bytes, total, percent, rate and eta mid-download:\n%s", res.stderr)
	}
	if strings.Contains(res.stderr, "\r") || strings.Contains(res.stderr, "\x1b[") {
		t.Errorf("terminal control sequences on a non-terminal stderr:\n%q", res.stderr)
	}
}

// TestSummaryCountsRetriesAndResume: retries the HTTP stages took and bytes
// an earlier run left are in the summary.
func TestSummaryCountsRetriesAndResume(t *testing.T) {
	const size, seed = 3<<20 + 7, 9
	t.Run("retries", func(t *testing.T) {
		srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
		srv.SetFaults(origin.Faults{FailStatus: http.StatusServiceUnavailable, FailCount: 2})
		out := filepath.Join(t.TempDir(), "out.bin")
		res := runCLI(t, fltArgs("stream", srv.URL(), out, "--json")...)
		fltOK(t, res, out, size, seed)
		s := uxJSON(t, res.stdout)
		if s.Retries != 2 || s.Bytes != size || s.Connections != 1 || s.ResumedBytes != 0 {
			t.Fatalf("summary %+v, want 2 retries of a %d-byte stream", s, int64(size))
		}
		if !strings.Contains(res.stderr, ", 1 connection, 2 retries\n") {
			t.Errorf("summary line: %q", res.stderr)
		}
	})
	t.Run("resume", func(t *testing.T) {
		srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
		srv.SetFaults(origin.Faults{DropAfter: 1 << 20, DropRequests: 1})
		out := filepath.Join(t.TempDir(), "out.bin")
		first := runCLI(t, fltArgs("stream", srv.URL(), out, "--set", "stages.fetch.config.attempts=1", "--json")...)
		if first.code != exitFailed {
			t.Fatalf("first run: exit %d, want 1: %s", first.code, first.stderr)
		}
		if s := uxJSON(t, first.stdout); s.ExitCode != exitFailed || s.Error == "" || s.Output != out {
			t.Fatalf("failure summary %+v", s)
		}
		state, ok := readResState(t, out)
		if !ok || state.claimed() == 0 {
			t.Fatalf("no partial state to resume: %+v", state)
		}
		srv.SetFaults(origin.Faults{})
		res := runCLI(t, fltArgs("stream", srv.URL(), out, "--json")...)
		fltOK(t, res, out, size, seed)
		s := uxJSON(t, res.stdout)
		if s.ResumedBytes != state.claimed() || s.Bytes != size {
			t.Fatalf("summary %+v, want %d bytes resumed of %d", s, state.claimed(), int64(size))
		}
		if !strings.Contains(res.stderr, " resumed\n") {
			t.Errorf("summary line does not mention the resume: %q", res.stderr)
		}
	})
}

// TestTLSOptions: --ca-cert trusts a private CA; without it the download
// fails on the certificate; --insecure skips the check and says so.
func TestTLSOptions(t *testing.T) {
	content := bytes.Repeat([]byte("tls"), 10_000)
	hs := startHeaderServer(t, content, true)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := hs.Certificate()
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	res := runCLI(t, hs.URL+"/f.bin", "-o", filepath.Join(dir, "untrusted"))
	assertFailedCleanly(t, res, exitFailed, filepath.Join(dir, "untrusted"), "certificate")

	res = runCLI(t, hs.URL+"/f.bin", "-o", filepath.Join(dir, "ca"), "--ca-cert", caFile)
	if res.code != 0 {
		t.Fatalf("--ca-cert: exit %d: %s", res.code, res.stderr)
	}
	if strings.Contains(res.stderr, "verification is off") {
		t.Errorf("a warning without --insecure: %s", res.stderr)
	}

	res = runCLI(t, hs.URL+"/f.bin", "-o", filepath.Join(dir, "insecure"), "--insecure")
	if res.code != 0 {
		t.Fatalf("--insecure: exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, `"level":"warn"`) || !strings.Contains(res.stderr, "TLS certificate verification is off") {
		t.Errorf("no warning for --insecure: %s", res.stderr)
	}
	for _, name := range []string{"ca", "insecure"} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, content) {
			t.Errorf("%s: output differs", name)
		}
	}

	res = runCLI(t, hs.URL+"/f.bin", "-o", filepath.Join(dir, "nofile"), "--ca-cert", filepath.Join(dir, "missing.pem"))
	assertFailedCleanly(t, res, exitUsage, filepath.Join(dir, "nofile"), "http.ca_cert", "missing.pem")
}

// TestProxyOption: --proxy (http.proxy) sends every request through the
// proxy. (HTTPS_PROXY from the environment is Go's ProxyFromEnvironment,
// which never proxies 127.0.0.1, so it cannot be tested on loopback.)
func TestProxyOption(t *testing.T) {
	const size, seed = 300_001, 3
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			mu.Lock()
			seen = append(seen, r.In.URL.String())
			mu.Unlock()
			r.Out.URL = r.In.URL // absolute-form: the target itself
		},
		Transport: tr,
	})
	t.Cleanup(proxy.Close)
	out := filepath.Join(t.TempDir(), "out.bin")
	res := runCLI(t, srv.URL(), "-o", out, "--proxy", proxy.URL)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	assertComplete(t, out, size, seed)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || len(seen) != len(srv.Log()) {
		t.Fatalf("the proxy saw %d requests, the origin %d: %v", len(seen), len(srv.Log()), seen)
	}
	for _, u := range seen {
		if u != srv.URL() {
			t.Errorf("proxied %q, want %q", u, srv.URL())
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the bar's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestProgressBarDraws runs the bar a terminal would get over a real ranged
// download, drawn into a buffer: it ends at 100% with one line per
// connection, log lines go through it, and it leaves no goroutine behind
// (TestMain checks). What a terminal shows is in the README.
func TestProgressBarDraws(t *testing.T) {
	const size, seed = 8 << 20, 21
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed, RateLimit: 16 << 20})
	out := filepath.Join(t.TempDir(), "bar.bin")
	var term lockedBuffer
	sink := &logSink{w: &term}
	log := zerolog.New(sink).Hook(sink).Level(zerolog.InfoLevel)
	client := dlflow.NewClient(dlflow.WithLogger(log))
	defer client.CloseIdleConnections()
	var bar *progress.Bar
	req := &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: "ranged"}, Connections: 3,
		Sets: []string{"stages.split.config.piece=512KiB", "stages.progress.config.interval=20ms"},
		Hooks: dlflow.Hooks{Started: func(d *dlflow.Download) {
			bar = progress.Start(&term, d, sink, mpb.WithWidth(160))
			log.Warn().Msg("a line above the bar")
		}}}
	_, err := client.Do(context.Background(), req)
	bar.Finish(err == nil)
	if err != nil {
		t.Fatal(err)
	}
	assertComplete(t, out, size, seed)
	drawn := term.String()
	for _, want := range []string{"bar.bin", "8.0 MiB / 8.0 MiB", "100.0%", "conn 1", "conn 3", "a line above the bar"} {
		if !strings.Contains(drawn, want) {
			t.Errorf("the bar lacks %q:\n%s", want, drawn)
		}
	}
	if strings.Contains(drawn, `"message":"progress"`) {
		t.Errorf("progress events printed through the bar:\n%s", drawn)
	}
	// The log goes to its writer again once the bar is gone.
	log.Warn().Msg("after the bar")
	if !strings.HasSuffix(term.String(), "\"message\":\"after the bar\"}\n") {
		t.Errorf("a log line after the bar went astray:\n%q", term.String())
	}
}

// TestCPUProfile: --cpu-profile writes a pprof CPU profile of the download
// (gzipped protobuf whose string table names the sample type), and a path
// that cannot be created fails the run before any request.
func TestCPUProfile(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 4 << 20, Seed: 7})
	dir := t.TempDir()
	out, prof := filepath.Join(dir, "out.bin"), filepath.Join(dir, "cpu.pprof")
	if res := runCLI(t, srv.URL(), "-o", out, "-q", "--cpu-profile", prof); res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	assertComplete(t, out, 4<<20, 7)
	f, err := os.Open(prof)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("profile is not gzipped: %v", err)
	}
	body, err := io.ReadAll(zr)
	if err != nil || !bytes.Contains(body, []byte("cpu")) || !bytes.Contains(body, []byte("nanoseconds")) {
		t.Fatalf("profile of %d bytes (%v) does not name cpu nanoseconds samples", len(body), err)
	}

	before := srv.Stats().Requests
	other := filepath.Join(dir, "other.bin")
	res := runCLI(t, srv.URL(), "-o", other, "-q", "--cpu-profile", filepath.Join(dir, "no", "such", "dir", "cpu.pprof"))
	assertFailedCleanly(t, res, exitUsage, other, "cpu profile:", "no such file or directory")
	if n := srv.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests after the profile could not be created, want none", n)
	}
}

// headBodyServer answers HEAD with a body, against the protocol, and GET
// with the 16 bytes of content followed by stray bytes; Go's transport then
// prints "Unsolicited response received on idle HTTP channel" through the
// standard logger.
func headBodyServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	const content = "0123456789abcdef"
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for range 8 {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					header := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"v1\"\r\n\r\n", len(content))
					if req.Method == http.MethodHead {
						_, _ = io.WriteString(conn, header+"stray bytes after a HEAD")
						continue
					}
					_, _ = io.WriteString(conn, header+content+"stray bytes after a body")
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/f.bin"
}

// A server that sends a body to a HEAD makes Go's transport print a line
// through the standard logger; the CLI routes it into its own log at debug
// level, so that -q (or JSON logs) leave stderr as promised. The child
// process is the real CLI with the real stderr.
func TestStrayTransportLinesStayInTheLog(t *testing.T) {
	url := headBodyServer(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want func(stderr string) bool
	}{
		{[]string{"-q"}, func(s string) bool { return s == "" }},
		{[]string{"--log-level", "debug", "--log-format", "json", "--no-progress"}, func(s string) bool {
			for line := range strings.Lines(s) {
				if !strings.HasPrefix(line, "{") && !strings.HasPrefix(line, "dlflow: saved") {
					return false
				}
			}
			for line := range strings.Lines(s) {
				if strings.Contains(line, `"level":"debug","from":"go"`) && strings.Contains(line, "Unsolicited response received on idle HTTP channel") {
					return true
				}
			}
			return false
		}},
	} {
		out := filepath.Join(dir, fmt.Sprintf("out%d.bin", len(tc.args)))
		cmd := exec.Command(os.Args[0], append([]string{url, "-o", out}, tc.args...)...)
		cmd.Env = append(os.Environ(), cliEnv+"=1")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v; stderr:\n%s", tc.args, err, stderr.String())
		}
		if data, _ := os.ReadFile(out); string(data) != "0123456789abcdef" {
			t.Fatalf("%v: output %q", tc.args, data)
		}
		if !tc.want(stderr.String()) {
			t.Errorf("%v: stderr:\n%s", tc.args, stderr.String())
		}
	}
}

// What the command line gets wrong is a usage error (exit 2) on one line,
// before any request and with nothing written.
func TestUsageErrorsBeforeAnyRequest(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 5})
	port := srv.URL()[strings.LastIndex(srv.URL(), ":")+1:]
	port = port[:strings.Index(port, "/")]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{srv.URL(), "--connections", "100000"}, "dlflow: --connections: connections must be between 1 and 64, got 100000\n"},
		{[]string{srv.URL(), "-H", "X: a\x01b"}, `dlflow: -H/--header header "X": value contains the control character '\x01'` + "\n"},
		{[]string{srv.URL(), "-H", "Range: bytes=0-9"}, "dlflow: -H/--header: the Range header is the download's own: the stages ask for the ranges they need\n"},
		{[]string{strings.Replace(srv.URL(), port, "99999", 1)}, "port 99999 is not between 1 and 65535\n"},
		{[]string{srv.URL(), "--set", "output=other.bin"}, "dlflow: --set output and --output both set output; give one\n"},
	} {
		dir := t.TempDir()
		out := filepath.Join(dir, "out.bin")
		res := runCLI(t, append(tc.args, "-o", out)...)
		if res.code != exitUsage || !strings.HasSuffix(res.stderr, tc.want) || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line ending %q", tc.args, res.code, res.stderr, tc.want)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("%q: wrote %v", tc.args, names)
		}
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests for command lines that are wrong", n)
	}
}

// --set and DLFLOW_ keys apply to the topology that runs, also when the
// ranged one is picked after the probe; on a file small enough for the
// stream topology, keys for stages it does not have are left out with a
// log line, and --connections says it cannot be honoured.
func TestSetAppliesToPickedTopology(t *testing.T) {
	big := startOrigin(t, origin.Options{Size: 64 << 20, Seed: 8})
	dir := t.TempDir()
	out := filepath.Join(dir, "big.bin")
	t.Setenv("DLFLOW_STAGES__FETCH__WORKERS", "3")
	// max_request: one piece per request, so that the requests show the
	// pieces.
	res := runCLI(t, big.URL(), "-o", out, "--set", "stages.split.config.piece=8MiB",
		"--set", "stages.fetch.config.max_request=8MiB", "--json", "--no-progress")
	if res.code != exitOK {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if got := fileSHA256(t, out); got != origin.SHA256Hex(64<<20, 8) {
		t.Fatalf("sha256 %s", got)
	}
	// Every 8 MiB piece is asked for whole (work stealing may then ask
	// for the rest of a slow one in parts), and no request is larger.
	pieces := map[int64]bool{}
	for _, r := range big.Log() {
		if r.Method == "GET" && r.Range != "" && r.Range != "bytes=0-0" {
			var start, end int64
			if _, err := fmt.Sscanf(r.Range, "bytes=%d-%d", &start, &end); err != nil || end-start+1 > 8<<20 {
				t.Errorf("range %q is more than an 8 MiB piece", r.Range)
			}
			if start%(8<<20) == 0 && end-start+1 == 8<<20 {
				pieces[start] = true
			}
		}
	}
	ranges := len(pieces)
	var sum summary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if ranges != 8 || sum.Connections != 3 || sum.Topology != "(built-in) ranged.yaml" {
		t.Errorf("%d whole 8 MiB pieces asked for, %d connections, topology %q; want 8 pieces of 8 MiB over 3 connections of ranged.yaml", ranges, sum.Connections, sum.Topology)
	}

	small := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 8})
	out = filepath.Join(dir, "small.bin")
	res = runCLI(t, small.URL(), "-o", out, "--set", "stages.split.config.piece=8MiB", "--connections", "8", "--log-level", "info", "--log-format", "json", "--no-progress")
	if res.code != exitOK {
		t.Fatalf("small: exit %d: %s", res.code, res.stderr)
	}
	for _, want := range [][]string{
		{`"level":"info","key":"stages.split.config.piece","from":"--set"`, `"message":"ignored: the topology picked for this download has no such stage"`},
		{`"level":"warn","topology":"(built-in) stream.yaml","problem":"$DLFLOW_STAGES__FETCH__WORKERS: stages.fetch.workers: http.source runs at most 1 worker`, `"message":"the configuration keys for stages do not fit the topology picked for this download; it runs without them"`},
		{`"level":"warn","connections":8`, `"message":"downloading over one connection: the file is smaller than 16 MiB"`},
	} {
		if n := logLines(res.stderr, want...); n != 1 {
			t.Errorf("small: %d log lines with %q, want 1:\n%s", n, want, res.stderr)
		}
	}
	if got := fileSHA256(t, out); got != origin.SHA256Hex(1<<20, 8) {
		t.Fatalf("small: sha256 %s", got)
	}
}

// logLines counts the lines of log that hold every one of parts.
func logLines(log string, parts ...string) int {
	n := 0
	for line := range strings.Lines(log) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// Two processes started half a second apart with one output: the second
// is refused at once (the first holds PATH.tmp), touches nothing, and the
// first ends with the exact bytes. Never exit 0 with wrong bytes, never a
// wrong PATH.
func TestTwoProcessesOneOutput(t *testing.T) {
	const size, seed = 8 << 20, 13
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed, RateLimit: 4 << 20})
	out := filepath.Join(t.TempDir(), "out.bin")
	start := func() (*exec.Cmd, *strings.Builder) {
		cmd := exec.Command(os.Args[0], srv.URL(), "-o", out, "--no-progress")
		cmd.Env = append(os.Environ(), cliEnv+"=1")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stderr
	}
	first, firstErr := start()
	// Wait until the first holds PATH.tmp, within a bound.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(out + ".tmp"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = first.Process.Kill()
			t.Fatal("the first download did not open its PATH.tmp in 20 s")
		}
	}
	second, secondErr := start()
	if err := second.Wait(); second.ProcessState.ExitCode() != exitFailed {
		t.Errorf("second: %v, stderr %q; want exit 1", err, secondErr.String())
	}
	if !strings.Contains(secondErr.String(), "out.bin.tmp is in use by another download of the same output") || strings.Count(secondErr.String(), "\n") != 1 {
		t.Errorf("second: stderr %q", secondErr.String())
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first: %v; stderr:\n%s", err, firstErr.String())
	}
	if got := fileSHA256(t, out); got != origin.SHA256Hex(size, seed) {
		t.Fatalf("sha256 %s after two downloads of one output", got)
	}
}
