// Package s3test starts a real S3-compatible server (SeaweedFS's weed) on
// loopback ports for tests, in a temporary directory, and stops it when
// the test ends.
//
// The weed binary is looked up as $WEED, then weed on PATH, then
// $(go env GOPATH)/bin/weed; .ci/run installs it there (InstallHint).
// Without it a test skips, or fails when the environment variable CI is
// set, so that CI never passes by skipping.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/goleak"
)

// InstallHint is how .ci/run installs weed.
const InstallHint = "bash .ci/install-weed (builds github.com/seaweedfs/seaweedfs/weed into $(go env GOPATH)/bin)"

// Server is a running weed with an S3 gateway.
type Server struct {
	// Endpoint is the gateway's URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey and SecretKey are the credentials of its one identity,
	// which may do anything.
	AccessKey, SecretKey string
	Region               string

	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	took    time.Duration
}

// Binary returns the path of weed, or "" when it is not installed.
func Binary() string {
	if p := os.Getenv("WEED"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "weed")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// Start starts a server for t, stopped by t.Cleanup. It skips t when weed
// is not installed, or fails it when CI is set.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := need(t)
	s, err := start(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	t.Logf("weed ready at %s in %v", s.Endpoint, s.took)
	return s
}

var shared struct {
	mu  sync.Mutex
	s   *Server
	dir string
	err error
}

// Shared returns the server of the test binary, started by the first
// call: weed takes seconds to start, so the tests of a package share one,
// each with buckets of its own. The package's TestMain must call
// StopShared after m.Run. It skips or fails t as Start does.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := need(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "s3test")
		if shared.err == nil {
			shared.s, shared.err = start(bin, shared.dir)
		}
		if shared.err == nil {
			t.Logf("weed ready at %s in %v", shared.s.Endpoint, shared.s.took)
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.s
}

// StopShared stops the server Shared started, if any, and removes its
// data.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s != nil {
		shared.s.stop()
		shared.s = nil
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
		shared.dir = ""
	}
}

// IgnoreLeaks is the goleak option for the goroutine that waits for a
// running server's process, which outlives a test that uses Shared.
func IgnoreLeaks() goleak.Option {
	return goleak.IgnoreAnyFunction("github.com/dlflow/dlflow/internal/s3test.(*Server).reap")
}

// need returns the path of weed, or skips (fails with CI set) t.
func need(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("weed (SeaweedFS) is not installed; install it with: %s", InstallHint)
		}
		t.Skipf("weed (SeaweedFS) is not installed; install it with: %s", InstallHint)
	}
	return bin
}

// start runs weed with its data and log in dir and waits until it
// answers; on error it has stopped it.
func start(bin, dir string) (*Server, error) {
	s := &Server{AccessKey: "dlflowtestkey", SecretKey: "dlflowtestsecret", Region: "us-east-1", done: make(chan struct{})}
	conf := filepath.Join(dir, "s3.json")
	identities := fmt.Sprintf(`{"identities":[{"name":"dlflow","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, s.AccessKey, s.SecretKey)
	if err := os.WriteFile(conf, []byte(identities), 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, err
	}
	// The log goes to a file: with an *os.File, exec starts no goroutine
	// to copy it.
	s.logPath = filepath.Join(dir, "weed.log")
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	s.Endpoint = "http://127.0.0.1:" + p(6)
	s.cmd = exec.Command(bin, "server",
		"-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+p(0), "-master.port.grpc="+p(1),
		"-volume.port="+p(2), "-volume.port.grpc="+p(3),
		"-filer.port="+p(4), "-filer.port.grpc="+p(5),
		"-s3", "-s3.port="+p(6), "-s3.port.grpc="+p(7), "-s3.config="+conf,
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
		"-master.volumeSizeLimitMB=64", "-volume.max=0",
	)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start weed: %w", err)
	}
	go s.reap()
	began := time.Now()
	if err := s.waitReady(90 * time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("weed did not get ready: %w\n%s", err, s.Log())
	}
	s.took = time.Since(began).Round(time.Millisecond)
	return s, nil
}

// reap waits for the process to end.
func (s *Server) reap() {
	_ = s.cmd.Wait()
	close(s.done)
}

// stop kills weed: its data is the test's temporary directory, so
// nothing needs a graceful stop, which takes weed seconds.
func (s *Server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// waitReady waits until a bucket can be made and listed, which needs the
// master, a volume server, the filer and the gateway: then removes it.
func (s *Server) waitReady(limit time.Duration) error {
	c, tr, err := s.newClient()
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	var last error
	for i := 0; time.Now().Before(deadline); i++ {
		select {
		case <-s.done:
			return errors.New("weed exited")
		default:
		}
		// A first write waits while weed grows its volumes; a short
		// timeout and another try are quicker than one long wait.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		last = probe(ctx, c)
		cancel()
		if os.Getenv("S3TEST_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "s3test: probe: %v\n", last)
		}
		if last == nil {
			return nil
		}
		time.Sleep(min(time.Duration(i+1)*50*time.Millisecond, 500*time.Millisecond))
	}
	return last
}

func probe(ctx context.Context, c *minio.Core) error {
	const bucket = "dlflow-ready"
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" && minio.ToErrorResponse(err).Code != "BucketAlreadyExists" {
			return err
		}
	}
	if _, err := c.PutObject(ctx, bucket, "x", bytes.NewReader([]byte("x")), 1, "", "", minio.PutObjectOptions{}); err != nil {
		return err
	}
	if err := c.RemoveObject(ctx, bucket, "x", minio.RemoveObjectOptions{}); err != nil {
		return err
	}
	return nil
}

func (s *Server) newClient() (*minio.Core, *http.Transport, error) {
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		return nil, nil, err
	}
	c, err := minio.NewCore(s.Endpoint[len("http://"):], &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: s.Region, Transport: tr,
	})
	return c, tr, err
}

// Client returns a client of the server whose idle connections are
// closed when t ends.
func (s *Server) Client(t testing.TB) *minio.Core {
	t.Helper()
	c, tr, err := s.newClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// Bucket makes a bucket named name.
func (s *Server) Bucket(t testing.TB, name string) {
	t.Helper()
	c, tr, err := s.newClient()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	if err := c.MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
}

// Environ is the AWS_* variables that point a client at the server.
func (s *Server) Environ() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL":      s.Endpoint,
		"AWS_ACCESS_KEY_ID":     s.AccessKey,
		"AWS_SECRET_ACCESS_KEY": s.SecretKey,
		"AWS_REGION":            s.Region,
	}
}

// SetEnv sets Environ for the rest of t (t.Setenv: not in parallel tests).
func (s *Server) SetEnv(t *testing.T) {
	for k, v := range s.Environ() {
		t.Setenv(k, v)
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
}

// Log is the tail of weed's output, for a failing test's message.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// freePorts returns n distinct free loopback ports. They are free when
// asked; weed takes them a moment later, which another process could
// race, so a failure to start names weed's output.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]int, 0, n)
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 { // some weed parts derive a port +10000 when not told
			continue
		}
		out = append(out, port)
	}
	return out, nil
}
