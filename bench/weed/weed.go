// Package weed runs a real S3-compatible store, SeaweedFS's weed, on
// loopback ports in a directory of its own: the store of `dlflow bench
// --scenario s3`. It stops the process and removes the directory on
// Close. The tests' harness (internal/s3test) starts it through this package.
//
// The binary is looked up as $WEED, then weed on PATH, then
// $(go env GOPATH)/bin/weed, where .ci/install-weed puts it.
package weed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ErrNotInstalled is wrapped by Binary's and Start's error when no weed
// binary is found.
var ErrNotInstalled = errors.New("weed (SeaweedFS) is not installed")

// InstallHint is how .ci/run installs weed.
const InstallHint = "bash .ci/install-weed (builds github.com/seaweedfs/seaweedfs/weed into $(go env GOPATH)/bin)"

// Binary returns the path of weed, or an error wrapping ErrNotInstalled.
func Binary() (string, error) {
	if p := os.Getenv("WEED"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$WEED %s: %w", p, ErrNotInstalled)
		}
		return p, nil
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "weed")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w; install it with: %s", ErrNotInstalled, InstallHint)
}

// Options configure a Server.
type Options struct {
	// Dir holds the store's data and log; it must exist. "" is a new
	// temporary directory, removed by Close.
	Dir string
	// VolumeSizeLimitMB is the size at which weed starts a new volume
	// (default 64): small volumes are compacted quickly by Vacuum.
	VolumeSizeLimitMB int
	// ReadyTimeout bounds the wait until the store answers (default 90s).
	ReadyTimeout time.Duration
}

// Server is a running weed with an S3 gateway. Its methods are safe for
// concurrent use.
type Server struct {
	// Endpoint is the gateway's URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey and SecretKey are the credentials of its one identity,
	// which may do anything; Region is the one to sign for.
	AccessKey, SecretKey, Region string

	master    string // http://127.0.0.1:PORT of the master
	dir       string
	removeDir bool
	logPath   string
	cmd       *exec.Cmd
	done      chan struct{}
	client    *minio.Core
	transport *http.Transport
}

// Start starts weed and returns once a bucket can be made and an object
// put and removed in it; on error nothing is left running.
func Start(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.VolumeSizeLimitMB == 0 {
		opts.VolumeSizeLimitMB = 64
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	s := &Server{AccessKey: "dlflowbenchkey", SecretKey: "dlflowbenchsecret", Region: "us-east-1", dir: opts.Dir, done: make(chan struct{})}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "dlflow-weed-"); err != nil {
			return nil, err
		}
		s.removeDir = true
	}
	if err := s.start(bin, opts); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// start writes the identity, starts the process and waits until it
// answers.
func (s *Server) start(bin string, opts Options) error {
	conf := filepath.Join(s.dir, "s3.json")
	identities := fmt.Sprintf(`{"identities":[{"name":"dlflow","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, s.AccessKey, s.SecretKey)
	if err := os.WriteFile(conf, []byte(identities), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(8)
	if err != nil {
		return err
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	data := filepath.Join(s.dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	// With an *os.File, exec starts no goroutine to copy the output.
	s.logPath = filepath.Join(s.dir, "weed.log")
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	s.Endpoint, s.master = "http://127.0.0.1:"+p(6), "http://127.0.0.1:"+p(0)
	s.cmd = exec.Command(bin, "server",
		"-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+p(0), "-master.port.grpc="+p(1),
		"-volume.port="+p(2), "-volume.port.grpc="+p(3),
		"-filer.port="+p(4), "-filer.port.grpc="+p(5),
		"-s3", "-s3.port="+p(6), "-s3.port.grpc="+p(7), "-s3.config="+conf,
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
		"-master.volumeSizeLimitMB="+strconv.Itoa(opts.VolumeSizeLimitMB), "-volume.max=0",
	)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return fmt.Errorf("start weed: %w", err)
	}
	go s.reap()
	if s.transport, err = minio.DefaultTransport(false); err != nil {
		return err
	}
	s.client, err = minio.NewCore(s.Endpoint[len("http://"):], &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: s.Region, Transport: s.transport,
	})
	if err != nil {
		return err
	}
	if err := s.waitReady(opts.ReadyTimeout); err != nil {
		return fmt.Errorf("weed did not get ready: %w\n%s", err, s.Log())
	}
	// The probe's connections are not kept: a Server shared by tests
	// outlives each test's check for leaked goroutines.
	s.transport.CloseIdleConnections()
	return nil
}

// reap waits for the process to end. It is the one goroutine a running
// Server keeps (tests that share a Server tell goleak about it).
func (s *Server) reap() {
	_ = s.cmd.Wait()
	close(s.done)
}

// Close kills weed (its data is thrown away, so nothing needs weed's
// graceful stop, which takes seconds) and removes the directory Start
// made.
func (s *Server) Close() {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if s.removeDir {
		_ = os.RemoveAll(s.dir)
	}
}

// waitReady waits until a bucket can be made and an object put and
// removed, which needs the master, a volume server, the filer and the
// gateway.
func (s *Server) waitReady(limit time.Duration) error {
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
		last = s.probe(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(min(time.Duration(i+1)*50*time.Millisecond, 500*time.Millisecond))
	}
	return last
}

func (s *Server) probe(ctx context.Context) error {
	const bucket = "dlflow-ready"
	if err := s.MakeBucket(ctx, bucket); err != nil {
		return err
	}
	if _, err := s.client.PutObject(ctx, bucket, "x", bytes.NewReader([]byte("x")), 1, "", "", minio.PutObjectOptions{}); err != nil {
		return err
	}
	return s.client.RemoveObject(ctx, bucket, "x", minio.RemoveObjectOptions{})
}

// MakeBucket makes a bucket, or does nothing when it exists.
func (s *Server) MakeBucket(ctx context.Context, bucket string) error {
	err := s.client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		return nil
	}
	return err
}

// Remove removes an object and every pending multipart upload of its
// key, and does nothing for one that does not exist.
func (s *Server) Remove(ctx context.Context, bucket, key string) error {
	var errs []error
	for u := range s.client.ListIncompleteUploads(ctx, bucket, key, false) {
		if u.Err != nil {
			errs = append(errs, u.Err)
			break
		}
		if u.Key == key {
			errs = append(errs, s.client.AbortMultipartUpload(ctx, bucket, key, u.UploadID))
		}
	}
	errs = append(errs, s.client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}))
	return errors.Join(errs...)
}

// SHA256 reads an object back and returns the hex sha256 of its bytes
// and their count.
func (s *Server) SHA256(ctx context.Context, bucket, key string) (string, int64, error) {
	body, _, _, err := s.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	defer body.Close()
	h := sha256.New()
	n, err := io.Copy(h, body)
	if err != nil {
		return "", n, fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Vacuum asks the master to compact every volume that holds deleted
// bytes, which gives their disk space back: without it, every object
// removed still takes its size on disk.
func (s *Server) Vacuum(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.master+"/vol/vacuum?garbageThreshold=0.0001", nil)
	if err != nil {
		return err
	}
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vacuum: %s", resp.Status)
	}
	return nil
}

// Environ is the AWS_* variables that point a client (dlflow, s5cmd,
// the aws CLI) at the server.
func (s *Server) Environ() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_ENDPOINT_URL_S3=",
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
	}
}

// Log is the tail of weed's output, for an error message.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// DiskBytes is what the store's data takes on disk now.
func (s *Server) DiskBytes() int64 {
	var n int64
	_ = filepath.WalkDir(filepath.Join(s.dir, "data"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
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
