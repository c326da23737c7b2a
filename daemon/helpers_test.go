package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const secret = "s3cret-for-tests"

// rpcClient calls a daemon's /jsonrpc over HTTP POST.
type rpcClient struct {
	http *http.Client
	url  string
	tok  string
}

type rpcErr struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// call sends method with the token first; it fails the test on a
// transport error, and returns the result or the error object.
func (c *rpcClient) call(t testing.TB, method string, params ...any) (json.RawMessage, *rpcErr) {
	t.Helper()
	if c.tok != "" {
		params = append([]any{"token:" + c.tok}, params...)
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "t", "method": method, "params": params})
	resp, err := c.http.Post(c.url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcErr         `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v in %q", method, err, b)
	}
	return r.Result, r.Error
}

// must is call that fails the test on an error answer, decoding the
// result into out (when not nil).
func (c *rpcClient) must(t testing.TB, out any, method string, params ...any) {
	t.Helper()
	res, e := c.call(t, method, params...)
	if e != nil {
		t.Fatalf("%s: error %d %s", method, e.Code, e.Message)
	}
	if out != nil {
		if err := json.Unmarshal(res, out); err != nil {
			t.Fatalf("%s: %v in %s", method, err, res)
		}
	}
}

type status struct {
	GID             string `json:"gid"`
	Status          string `json:"status"`
	TotalLength     string `json:"totalLength"`
	CompletedLength string `json:"completedLength"`
	ErrorCode       string `json:"errorCode"`
	ErrorMessage    string `json:"errorMessage"`
	Files           []struct {
		Path string `json:"path"`
	} `json:"files"`
}

func (c *rpcClient) status(t testing.TB, gid string) status {
	t.Helper()
	var s status
	c.must(t, &s, "aria2.tellStatus", gid)
	return s
}

// waitFor polls cond every 20 ms until it holds, failing after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for range int(timeout / (20 * time.Millisecond)) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !cond() {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// dlflowBinary builds the release binary once for the package's tests.
func dlflowBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "dlflow-daemon-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "dlflow")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/dlflow/dlflow/cmd/run").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// proc is a dlflow daemon running as a subprocess, on a unix socket.
type proc struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	client *rpcClient
}

// startDaemon runs `dlflow daemon` with args after --listen and --secret,
// and waits until it answers.
func startDaemon(t *testing.T, sock string, args ...string) *proc {
	t.Helper()
	bin := dlflowBinary(t)
	all := append([]string{"daemon", "--listen", "unix:" + sock, "--secret", secret, "--log-level", "warn"}, args...)
	cmd := exec.Command(bin, all...)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out, client: unixClient(sock)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for range 2000 {
		if _, err := p.client.http.Post(p.client.url, "application/json", bytes.NewReader([]byte("{}"))); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("the daemon did not answer: %s", out)
	return nil
}

// kill9 kills the daemon with SIGKILL: nothing of it runs after.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
}

func unixClient(sock string) *rpcClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &rpcClient{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, url: "http://daemon/jsonrpc", tok: secret}
}
