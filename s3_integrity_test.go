package dlflow_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
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

// partHeaders is what a proxy saw of the part uploads.
type partHeaders struct {
	mu          sync.Mutex
	md5, crc32c int // parts (but the probe) that carried Content-MD5, x-amz-checksum-crc32c
	probes      int // requests for the probe part
	signed      int // parts with a signed payload hash instead of UNSIGNED-PAYLOAD
}

// TestS3PartChecksums: the sink asks the store with a probe part whether
// it checks x-amz-checksum-crc32c; weed does, so every part carries
// CRC32C and no MD5. Behind a proxy that takes the probe as a store that
// ignores the checksum would, every part carries Content-MD5 instead.
// Both objects are whole.
func TestS3PartChecksums(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "checksums")
	target, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 2*s3PartSize + 7
	src := startOrigin(t, origin.Options{Size: size, Seed: 12})
	for _, ignores := range []bool{false, true} {
		var seen partHeaders
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.Transport = &http.Transport{}
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			part := r.URL.Query().Get("partNumber")
			if r.Method == http.MethodPut && part != "" {
				seen.mu.Lock()
				switch {
				case part == "10000":
					seen.probes++
				default:
					if r.Header.Get("Content-Md5") != "" {
						seen.md5++
					}
					if r.Header.Get("X-Amz-Checksum-Crc32c") != "" {
						seen.crc32c++
					}
					if r.Header.Get("X-Amz-Content-Sha256") != "UNSIGNED-PAYLOAD" {
						seen.signed++
					}
				}
				seen.mu.Unlock()
				if part == "10000" && ignores {
					_, _ = io.Copy(io.Discard, r.Body)
					w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
					return
				}
			}
			proxy.ServeHTTP(w, r)
		})
		srv := httptest.NewServer(handler)
		t.Setenv("AWS_ENDPOINT_URL", srv.URL)
		key := fmt.Sprintf("sums-%v.bin", ignores)
		_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/" + key})
		srv.Close()
		proxy.Transport.(*http.Transport).CloseIdleConnections()
		if err != nil {
			t.Fatalf("store ignores checksums %v: %v", ignores, err)
		}
		if sum, n, _ := objectSHA256(t, c, b, key); n != size || sum != origin.SHA256Hex(size, 12) {
			t.Fatalf("store ignores checksums %v: object of %d bytes, sha256 %s", ignores, n, sum)
		}
		want := partHeaders{probes: 1, crc32c: 3}
		if ignores {
			want = partHeaders{probes: 1, md5: 3}
		}
		if seen.md5 != want.md5 || seen.crc32c != want.crc32c || seen.probes != 1 || seen.signed != 0 {
			t.Errorf("store ignores checksums %v: parts with MD5 %d, CRC32C %d, signed payload %d, probes %d; want %d, %d, 0, 1",
				ignores, seen.md5, seen.crc32c, seen.signed, seen.probes, want.md5, want.crc32c)
		}
		assertNoObject(t, c, b, key+".dlflow-upload")
	}
}
