package web_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/daemon/web"
)

// need finds a tool: skipped without it unless CI is set, where it fails.
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found with CI set (.ci/run installs Debian's %s): %v", name, pkg, err)
	}
	t.Skipf("%s not installed (Debian's %s package)", name, pkg)
	return ""
}

// payload is size deterministic bytes.
func payload(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// origin is the loopback server the downloads come from. Its gated files
// send their first gateAt bytes, then hold the response until the gate is
// opened (or the client goes away), so a download is surely active, and
// unfinished, when the page pauses or removes it.
type origin struct {
	*httptest.Server
	files map[string][]byte
	names map[string]string // Content-Disposition filename, per path
	gates map[string]chan struct{}
	held  chan string // the path of a gated response that reached its gate
}

const gateAt = 256 << 10

func newOrigin(t *testing.T) *origin {
	o := &origin{
		files: map[string][]byte{},
		names: map[string]string{},
		gates: map[string]chan struct{}{},
		held:  make(chan string, 16),
	}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	body, ok := o.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if name := o.names[r.URL.Path]; name != "" {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if gate := o.gates[r.URL.Path]; gate != nil {
		w = &gatedWriter{ResponseWriter: w, gate: gate, ctx: r.Context(), left: gateAt,
			held: func() { o.held <- r.URL.Path }}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// gatedWriter writes left bytes, then waits for gate before the rest.
type gatedWriter struct {
	http.ResponseWriter
	gate <-chan struct{}
	ctx  context.Context
	left int
	held func()
	once sync.Once
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	n := 0
	if g.left > 0 {
		k := min(g.left, len(p))
		m, err := g.ResponseWriter.Write(p[:k])
		n, g.left = m, g.left-m
		if err != nil || k == len(p) {
			return n, err
		}
		p = p[k:]
	}
	g.once.Do(func() {
		select {
		case <-g.gate: // open: a resumed request passes straight on
		default:
			g.ResponseWriter.(http.Flusher).Flush()
			g.held()
		}
	})
	select {
	case <-g.gate:
	case <-g.ctx.Done():
		return n, g.ctx.Err()
	}
	m, err := g.ResponseWriter.Write(p)
	return n + m, err
}

// rig is the page's server: web.Handler at / and /jsonrpc (HTTP and
// WebSocket) proxied to a real aria2c, which downloads into dir.
type rig struct {
	url, dir, secret string
}

func newRig(t *testing.T, secret string) *rig {
	aria2c := need(t, "aria2c", "aria2")
	dir := t.TempDir()
	rpc := startAria2(t, aria2c, dir, secret)
	target, err := url.Parse(rpc)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	// httputil.ReverseProxy passes a WebSocket upgrade through.
	mux.Handle("/jsonrpc", &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }})
	front := httptest.NewServer(mux)
	t.Cleanup(front.Close)
	return &rig{url: front.URL, dir: dir, secret: secret}
}

// startAria2 runs aria2c's RPC server on a free loopback port and returns
// its base URL once getVersion answers. The port is picked before aria2c
// binds it, so a taken port is retried on another.
func startAria2(t *testing.T, bin, dir, secret string) string {
	t.Helper()
	for try := 0; try < 3; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ctx, cancel := context.WithCancel(context.Background())
		var logs bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "--no-conf", "--enable-rpc", "--rpc-listen-all=false",
			fmt.Sprint("--rpc-listen-port=", port), "--rpc-secret="+secret, "--dir="+dir,
			"--split=1", "--max-connection-per-server=1", "--auto-file-renaming=false",
			"--console-log-level=warn", "--summary-interval=0")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		if err := waitRPC(base+"/jsonrpc", secret, exited); err != nil {
			cancel()
			<-exited
			t.Logf("aria2c on %d: %v\n%s", port, err, logs.String())
			continue
		}
		t.Cleanup(func() { cancel(); <-exited })
		return base
	}
	t.Fatal("aria2c did not start in 3 tries")
	return ""
}

// waitRPC posts getVersion for at most 30 s, or until the process exits.
func waitRPC(endpoint, secret string, exited <-chan error) error {
	req := `{"jsonrpc":"2.0","id":"v","method":"aria2.getVersion","params":["token:` + secret + `"]}`
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Post(endpoint, "application/json", strings.NewReader(req))
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"version"`)) {
			return nil
		}
	}
	return fmt.Errorf("getVersion did not answer in 30 s")
}

// fileSum is the sha256 of a downloaded file, "" when it is missing.
func (r *rig) fileSum(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		t.Errorf("downloaded file: %v", err)
		return ""
	}
	return sum(b)
}
