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
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
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

	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedBuffer
}

// Binary returns the path of weed, or "" when it is not installed.
func Binary() string {
	if p := os.Getenv("WEED"); p != "" {
		return p
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
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("weed (SeaweedFS) is not installed; install it with: %s", InstallHint)
		}
		t.Skipf("weed (SeaweedFS) is not installed; install it with: %s", InstallHint)
	}
	dir := t.TempDir()
	s := &Server{AccessKey: "dlflowtestkey", SecretKey: "dlflowtestsecret", Region: "us-east-1", done: make(chan struct{}), out: &lockedBuffer{}}
	conf := filepath.Join(dir, "s3.json")
	identities := fmt.Sprintf(`{"identities":[{"name":"dlflow","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, s.AccessKey, s.SecretKey)
	if err := os.WriteFile(conf, []byte(identities), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 8)
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Endpoint = "http://127.0.0.1:" + p(6)
	s.cmd = exec.Command(bin, "server",
		"-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+p(0), "-master.port.grpc="+p(1),
		"-volume.port="+p(2), "-volume.port.grpc="+p(3),
		"-filer.port="+p(4), "-filer.port.grpc="+p(5),
		"-s3", "-s3.port="+p(6), "-s3.port.grpc="+p(7), "-s3.config="+conf,
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-master.volumeSizeLimitMB=64", "-volume.max=0",
	)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start weed: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.stop)
	if err := s.waitReady(90 * time.Second); err != nil {
		t.Fatalf("weed did not get ready: %v\n%s", err, s.out.tail(4000))
	}
	return s
}

// stop ends weed: SIGTERM, then SIGKILL after 10 seconds.
func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
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
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last = probe(ctx, c)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(min(time.Duration(i+1)*100*time.Millisecond, time.Second))
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
func (s *Server) Log() string { return s.out.tail(8000) }

// freePorts returns n distinct free loopback ports. They are free when
// asked; weed takes them a moment later, which another process could
// race, so a test that fails to start weed names its output.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
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
			t.Fatal(err)
		}
		ls = append(ls, l)
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 { // some weed parts derive a port +10000 when not told
			continue
		}
		out = append(out, port)
	}
	return out
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
