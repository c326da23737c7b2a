package conformance

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Files the origin serves, by name: their size and seed. slow.bin is
// throttled so that it stays active until the script removes it (64 MiB at
// slowRate bytes per second per connection takes minutes).
var originFiles = map[string]struct {
	size int64
	seed uint64
}{
	"small1.bin": {96<<10 + 7, 1},
	"small2.bin": {128<<10 + 3, 2},
	"small3.bin": {80<<10 + 11, 3},
	"slow.bin":   {64 << 20, 4},
}

const slowRate = 128 << 10

// startOrigin serves originFiles on loopback with ranges (http.ServeContent)
// and 404 for anything else; /seen-header answers the X-Conformance header
// of the last request of small1.bin that had one (addUri's header option). Closed at the end of the test, after the
// daemons (t.Cleanup runs last-registered first).
func startOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	var seen atomic.Value // X-Conformance of the last request of small1.bin
	seen.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/seen-header" {
			_, _ = io.WriteString(w, seen.Load().(string))
			return
		}
		if r.URL.Path == "/small1.bin" && r.Header.Get("X-Conformance") != "" {
			seen.Store(r.Header.Get("X-Conformance"))
		}
		f, ok := originFiles[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		var rs io.ReadSeeker = &content{size: f.size, seed: f.seed}
		if r.URL.Path == "/slow.bin" {
			rs = &throttled{ReadSeeker: rs, done: r.Context().Done()}
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1700000000, 0), rs)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// content is a deterministic file of size bytes made from seed: byte i is
// a function of (seed, i), so any range is the same on every request.
type content struct {
	size, off int64
	seed      uint64
}

func (c *content) Read(p []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	if rest := c.size - c.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	for i := range p {
		x := uint64(c.off+int64(i)) ^ c.seed<<32
		x *= 0x9e3779b97f4a7c15
		p[i] = byte(x >> 56)
	}
	c.off += int64(len(p))
	return len(p), nil
}

func (c *content) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += c.off
	case io.SeekEnd:
		off += c.size
	}
	c.off = off
	return off, nil
}

// throttled reads at most slowRate bytes per second, in 8 KiB pieces; it
// stops (io.ErrUnexpectedEOF) when the request's context ends.
type throttled struct {
	io.ReadSeeker
	done <-chan struct{}
}

func (r *throttled) Read(p []byte) (int, error) {
	const piece = 8 << 10
	if len(p) > piece {
		p = p[:piece]
	}
	select {
	case <-r.done:
		return 0, io.ErrUnexpectedEOF
	case <-time.After(time.Second * piece / slowRate):
	}
	return r.ReadSeeker.Read(p)
}

// checkFiles checks that the files the script completed are in dir/sub with
// the origin's bytes, and that the 404 left no file. (After a checksum
// error aria2c keeps the bad file; dlflow may not: not compared.)
func checkFiles(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"small1.bin", "small2.bin", "small3.bin"} {
		f := originFiles[name]
		want, err := io.ReadAll(&content{size: f.size, seed: f.seed})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "sub", name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, not the origin's %d", name, len(got), len(want))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sub", "missing.bin")); err == nil {
		t.Error("missing.bin exists after a 404")
	}
}
