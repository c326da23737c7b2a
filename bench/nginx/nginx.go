// Package nginx runs a real nginx on loopback to serve a directory: the
// production-grade origin of `dlflow bench --origin nginx` and of the
// integration tests.
package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is wrapped by Start's error when no nginx binary is found.
var ErrNotInstalled = errors.New("nginx not installed")

// startTimeout bounds how long Start waits for nginx to accept connections.
const startTimeout = 5 * time.Second

// stopTimeout bounds how long Close waits after SIGTERM before SIGKILL.
const stopTimeout = 5 * time.Second

// Options configures a Server.
type Options struct {
	// Root is the directory to serve (the document root).
	Root string
	// MaxRanges sets the max_ranges directive; nil leaves nginx's default
	// (unlimited). 0 makes nginx ignore Range (always 200).
	MaxRanges *int
	// LimitRate sets limit_rate (nginx applies it per request), e.g. "25m"; empty means
	// none.
	LimitRate string
	// Extra is inserted verbatim inside the server{} block.
	Extra string
}

// Server is a running nginx process.
type Server struct {
	dir      string
	addr     string
	cmd      *exec.Cmd
	output   *syncBuffer
	exited   chan struct{} // closed when cmd.Wait returns
	waitErr  error
	closeErr error
	once     sync.Once
}

// Binary returns the path of the nginx binary, or an error wrapping
// ErrNotInstalled.
func Binary() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("nginx: %w (apt-get install nginx)", ErrNotInstalled)
}

// Start writes a configuration into a new temporary directory and starts
// nginx (daemon off, master_process off) listening on a free 127.0.0.1 port.
// It returns once the port accepts connections.
func Start(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("nginx: root %q is not a directory", opts.Root)
	}
	// The free port is found by binding and releasing it, so another process
	// may grab it in between: retry a few times.
	const attempts = 3
	for i := 1; ; i++ {
		s, err := start(bin, root, opts)
		if err == nil || i == attempts || !strings.Contains(err.Error(), "Address already in use") {
			return s, err
		}
	}
}

func start(bin, root string, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dlflow-nginx-")
	if err != nil {
		return nil, err
	}
	// nginx opens <prefix>/logs/error.log before reading the configuration.
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(config(dir, root, addr, opts)), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{dir: dir, addr: addr, output: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "-p", dir, "-c", conf)
	s.cmd.Dir = dir
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	setSysProcAttr(s.cmd)
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("nginx: start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// waitReady polls (bounded by startTimeout) until nginx accepts connections.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("nginx: nginx exited during startup (%v): %s", s.waitErr, s.diagnostics())
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("nginx: nginx not accepting connections on %s after %v: %s", s.addr, startTimeout, s.diagnostics())
}

func (s *Server) diagnostics() string {
	elog, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
	return strings.TrimSpace(s.output.String() + "\n" + string(elog))
}

func config(dir, root, addr string, opts Options) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	q := func(path string) string { return strconv.Quote(path) }
	p("daemon off;")
	p("master_process off;")
	p("worker_processes 1;")
	if os.Geteuid() == 0 {
		p("user root;")
	}
	p("pid %s;", q(filepath.Join(dir, "nginx.pid")))
	p("error_log %s warn;", q(filepath.Join(dir, "error.log")))
	p("events { worker_connections 1024; }")
	p("http {")
	p("  log_format dl '$remote_addr:$remote_port \"$request\" $status $body_bytes_sent \"$http_range\" \"$http_if_range\"';")
	p("  access_log %s dl;", q(filepath.Join(dir, "access.log")))
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		p("  %s_temp_path %s;", t, q(filepath.Join(dir, t+"_temp")))
	}
	p("  default_type application/octet-stream;")
	p("  sendfile on;")
	p("  tcp_nopush on;")
	p("  keepalive_timeout 65;")
	p("  keepalive_requests 10000;")
	p("  server {")
	p("    listen %s;", addr)
	p("    server_name localhost;")
	p("    root %s;", q(root))
	if opts.MaxRanges != nil {
		p("    max_ranges %d;", *opts.MaxRanges)
	}
	if opts.LimitRate != "" {
		p("    limit_rate %s;", opts.LimitRate)
	}
	if opts.Extra != "" {
		p("    %s", opts.Extra)
	}
	p("    location / { }")
	p("  }")
	p("}")
	return b.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// BaseURL returns "http://127.0.0.1:PORT"; a file at Root/x is served at
// BaseURL()+"/x".
func (s *Server) BaseURL() string { return "http://" + s.addr }

// Addr returns the listening address "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.addr }

// AccessLog returns the access log so far, one line per request:
// `addr:port "REQUEST" status body_bytes "Range" "If-Range"`.
func (s *Server) AccessLog() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "access.log"))
	return string(b), err
}

// Close stops nginx (SIGTERM, then SIGKILL after a bounded wait), waits for
// it to exit and removes the temporary directory. It is idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.closeErr = fmt.Errorf("nginx: nginx did not stop within %v; killed", stopTimeout)
		}
		if err := os.RemoveAll(s.dir); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// syncBuffer is a bytes.Buffer safe for concurrent use, capped at 64 KiB.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
