package dlflow_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// flipReader changes one byte of a body as it passes, at offset at.
type flipReader struct {
	r       io.ReadCloser
	off, at int64
	flipped *atomic.Int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0x40
		f.flipped.Add(1)
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

// TestS3CorruptedPartRefused: a proxy between the sink and weed changes
// one byte of part 2 on the way. The part's Content-MD5 is a signed
// header of an unsigned payload: the store refuses the part, the run
// fails and leaves nothing (no object, no state, no pending upload),
// where an upload whose bytes were not bound to its signature would
// complete with the wrong byte.
func TestS3CorruptedPartRefused(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "corrupt")
	target, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	var flipped atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	direct := proxy.Director
	proxy.Director = func(r *http.Request) {
		direct(r)
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" && r.Body != nil {
			r.Body = &flipReader{r: r.Body, at: 12345, flipped: &flipped}
		}
	}
	proxy.Transport = &http.Transport{}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	defer proxy.Transport.(*http.Transport).CloseIdleConnections()
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)

	const size = 3*s3PartSize + 1
	src := startOrigin(t, origin.Options{Size: size, Seed: 11})
	key := "corrupt.bin"
	_, err = uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/" + key})
	if err == nil || !strings.Contains(err.Error(), "upload part 2") {
		t.Fatalf("upload through a proxy that changes part 2: %v, want the part refused", err)
	}
	if flipped.Load() == 0 {
		t.Fatal("the proxy changed no byte: the test tested nothing")
	}
	assertNothingLeft(t, c, b, key)
}
