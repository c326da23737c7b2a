// Package s3test starts a real S3-compatible server (SeaweedFS's weed) on
// loopback ports for tests, in a temporary directory, and stops it when
// the test ends. It is bench/weed, the bench's store, with what tests
// need on top: skipping without weed, a server shared by a test binary,
// clients closed with the test.
//
// The weed binary is looked up as bench/weed.Binary does: $WEED, then
// weed on PATH, then $(go env GOPATH)/bin/weed; .ci/run installs it there
// (InstallHint). Without it a test skips, or fails when the environment
// variable CI is set, so that CI never passes by skipping.
package s3test

import (
	"context"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/weed"
)

// InstallHint is how .ci/run installs weed.
const InstallHint = weed.InstallHint

// Server is a running weed with an S3 gateway: Endpoint, AccessKey,
// SecretKey and Region come from the weed.Server it embeds.
type Server struct {
	*weed.Server
	took time.Duration
}

// Start starts a server for t, stopped by t.Cleanup. It skips t when weed
// is not installed, or fails it when CI is set.
func Start(t testing.TB) *Server {
	t.Helper()
	need(t)
	s, err := start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	t.Logf("weed ready at %s in %v", s.Endpoint, s.took)
	return s
}

var shared struct {
	mu  sync.Mutex
	s   *Server
	err error
}

// Shared returns the server of the test binary, started by the first
// call: weed takes seconds to start, so the tests of a package share one,
// each with buckets of its own. The package's TestMain must call
// StopShared after m.Run. It skips or fails t as Start does.
func Shared(t testing.TB) *Server {
	t.Helper()
	need(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.s, shared.err = start("") // weed makes the directory and removes it on Close
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
		shared.s.Close()
		shared.s = nil
	}
}

// IgnoreLeaks is the goleak option for the goroutine that waits for a
// running server's process, which outlives a test that uses Shared.
func IgnoreLeaks() goleak.Option {
	return goleak.IgnoreAnyFunction("github.com/dlflow/dlflow/bench/weed.(*Server).reap")
}

// need skips t (fails it with CI set) when weed is not installed.
func need(t testing.TB) {
	t.Helper()
	if _, err := weed.Binary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// start runs weed with its data and log in dir ("" for a directory of its
// own) and waits until it answers; on error nothing is left running.
func start(dir string) (*Server, error) {
	began := time.Now()
	s, err := weed.Start(weed.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	return &Server{Server: s, took: time.Since(began).Round(time.Millisecond)}, nil
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
