package dlflow_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// startOrigin starts the test origin on 127.0.0.1 for the test.
func startOrigin(t testing.TB, opts origin.Options) *origin.Server {
	t.Helper()
	srv, err := origin.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// noLeaks checks, after every other cleanup of the test, that it left no
// goroutine behind. Call it first.
func noLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// newClient returns a client whose idle connections are closed when the
// test ends.
func newClient(t testing.TB, opts ...dlflow.Option) *dlflow.Client {
	c := dlflow.NewClient(opts...)
	t.Cleanup(c.CloseIdleConnections)
	return c
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

// assertComplete fails the test unless path holds exactly the origin's
// bytes and no .tmp was left behind.
func assertComplete(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("output: %v", err)
	}
	if fi.Size() != size {
		t.Fatalf("output is %d bytes, want %d", fi.Size(), size)
	}
	if got, want := fileSHA256(t, path), origin.SHA256Hex(size, seed); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	for _, leftover := range []string{".tmp", ".tmp.state"} {
		if _, err := os.Lstat(path + leftover); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind: %v", leftover, err)
		}
	}
}

func assertMissing(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists: %v", path, err)
	}
}

// testTimeout bounds every download of the tests.
const testTimeout = 60 * time.Second
