package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	update = flag.Bool("update", false, "write testdata/aria2.golden.json from a run against aria2c")
	binary = flag.String("dlflow", "", "a dlflow binary to test instead of one built from this checkout")
)

const goldenPath = "testdata/aria2.golden.json"

// golden is what testdata/aria2.golden.json holds: the normalized output of
// script.js against aria2c, and which aria2c it was.
type golden struct {
	Aria2c string `json:"aria2c"`
	Output output `json:"output"`
}

// need fails the test under CI (where .ci/run installs everything) and
// skips it elsewhere.
func need(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and %s is missing: .ci/run installs it", what)
	}
	t.Skipf("%s is missing (skipped because CI is unset)", what)
}

// TestConformance runs script.js through the npm package aria2 against
// aria2c --enable-rpc and against dlflow daemon, and compares the answers'
// shapes, the status transitions and the notifications (compare_test.go).
// Without aria2c (outside CI) dlflow is compared with the golden file.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two daemons and a node script")
	}
	if _, err := exec.LookPath("node"); err != nil {
		need(t, "node (apt-get install nodejs)")
	}
	if _, err := os.Stat("node_modules/aria2/package.json"); err != nil {
		need(t, "the npm package aria2 (npm ci in daemon/conformance)")
	}
	origin := startOrigin(t)

	var ref output
	var refName string
	t.Run("aria2c", func(t *testing.T) {
		ref, refName = runAria2c(t, origin.URL)
	})
	if ref.Steps == nil {
		g := readGolden(t)
		ref, refName = g.Output, "golden ("+g.Aria2c+")"
	}
	t.Run("dlflow", func(t *testing.T) {
		bin := buildDlflow(t)
		dir := t.TempDir()
		port := freePort(t)
		secret := "conformance-secret"
		startDaemon(t, bin, "daemon", "--dir", dir, "--listen", "127.0.0.1:"+port, "--secret", secret)
		waitListening(t, port)
		got := runScript(t, port, secret, origin.URL)
		checkFiles(t, dir)
		if diffs := compare(ref, got); len(diffs) > 0 {
			t.Errorf("dlflow daemon answers differ from %s (%d differences):\n%s",
				refName, len(diffs), strings.Join(diffs, "\n"))
		}
	})
}

// runAria2c runs the script against aria2c and checks or updates the
// golden file. It returns an empty output when aria2c is missing outside CI.
func runAria2c(t *testing.T, originURL string) (output, string) {
	bin, err := exec.LookPath("aria2c")
	if err != nil {
		if *update {
			t.Fatal("-update needs aria2c")
		}
		need(t, "aria2c (apt-get install aria2)")
	}
	version := aria2cVersion(t, bin)
	t.Logf("reference: %s", version)
	dir, state := t.TempDir(), t.TempDir()
	port := freePort(t)
	secret := "conformance-secret"
	startDaemon(t, bin, "--enable-rpc", "--rpc-listen-port="+port, "--rpc-secret="+secret,
		"--dir="+dir, "--rpc-listen-all=false", "--no-conf", "--daemon=false",
		"--save-session="+filepath.Join(state, "session"), "--file-allocation=none",
		"--console-log-level=warn", "--summary-interval=0")
	waitListening(t, port)
	out := runScript(t, port, secret, originURL)
	checkFiles(t, dir)

	if *update {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // keep "a > 0" readable in a diff
		enc.SetIndent("", "  ")
		if err := enc.Encode(golden{Aria2c: version, Output: out}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenPath)
		return out, version
	}
	// The golden file must say what this aria2c says, unless it was made
	// with another version (Debian's may move from 1.36 to 1.37).
	if g := readGolden(t); g.Aria2c == version {
		if diffs := compare(g.Output, out); len(diffs) > 0 {
			t.Errorf("%s no longer matches %s (run go test -run TestConformance -update):\n%s",
				version, goldenPath, strings.Join(diffs, "\n"))
		}
	} else {
		t.Logf("%s was made with %q, this is %q: not compared", goldenPath, g.Aria2c, version)
	}
	return out, version
}

func aria2cVersion(t *testing.T, bin string) string {
	b, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("aria2c --version: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

func readGolden(t *testing.T) golden {
	t.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("no reference: %v", err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", goldenPath, err)
	}
	return g
}

// buildDlflow builds the release binary (or takes -dlflow's) and skips the
// test when it has no daemon command yet (issue 21 lands it; until then
// only aria2c runs).
func buildDlflow(t *testing.T) string {
	t.Helper()
	bin := *binary
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "dlflow")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/run")
		cmd.Dir = "../.."
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/run: %v\n%s", err, b)
		}
	}
	// Before the daemon command, "daemon" is taken for a URL and --help
	// prints get's usage: the daemon's names --listen.
	b, err := exec.Command(bin, "daemon", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "--listen") {
		t.Skipf("dlflow daemon --help: %v, no --listen in its usage (no daemon command yet)", err)
	}
	return bin
}

// startDaemon starts bin with args; it is killed and waited for at the end
// of the test, and its output is logged if the test failed.
func startDaemon(t *testing.T, bin string, args ...string) {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), logs.String())
		}
	})
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// waitListening waits (at most 10 s, 200 tries) until port accepts.
func waitListening(t *testing.T, port string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on 127.0.0.1:%s after 10 s", port)
}

// runScript runs script.js (at most 4 minutes) and decodes its output.
func runScript(t *testing.T, port, secret, originURL string) output {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", "script.js", "--port", port, "--secret", secret, "--origin", originURL)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("script.js did not end in 4 minutes; stderr:\n%s", stderr.String())
	}
	if err != nil {
		t.Fatalf("script.js: %v; stderr:\n%s", err, stderr.String())
	}
	var out output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("script.js output: %v\n%s", err, stdout.String())
	}
	if len(out.Steps) == 0 {
		t.Fatalf("script.js output has no steps:\n%s", stdout.String())
	}
	t.Logf("script.js: %d steps, %d checks; the errors it was answered:\n%s",
		len(out.Steps), len(out.Checks), stderr.String())
	return out
}
