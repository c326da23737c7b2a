package dlflow_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/internal/testtar"
	"github.com/dlflow/dlflow/stages/decompress"
)

// lengthlessServer serves data with no Content-Length: chunked, or
// (closeDelimited) as an HTTP/1.0-style body that ends when the server
// closes the connection. Neither says where the file ends.
func lengthlessServer(t *testing.T, data []byte, closeDelimited bool) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !closeDelimited {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush() // chunked from here on
			w.Write(data)
			return
		}
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/x-tar\r\n\r\n")
		bw.Write(data)
		bw.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/archive.tar"
}

// A plain tar cut at a member boundary by a server that sends no length
// fails, with no DIR and nothing beside it: only the end marker tells a
// whole archive then, and the whole one unpacks.
func TestExtractCutWithoutLength(t *testing.T) {
	noLeaks(t)
	tree := testtar.Tree()
	cut := testtar.TarCut(t, tree[:6])
	for _, closeDelimited := range []bool{false, true} {
		name := map[bool]string{false: "chunked", true: "close-delimited"}[closeDelimited]
		t.Run(name, func(t *testing.T) {
			dir := extractDir(t)
			_, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: lengthlessServer(t, cut, closeDelimited), Extract: dir})
			if err == nil || !strings.Contains(err.Error(), "without its end marker") {
				t.Fatalf("err = %v, want the missing end marker", err)
			}
			assertMissing(t, dir)
			assertNothingBeside(t, dir)

			whole := testtar.Tar(t, tree)
			if _, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: lengthlessServer(t, whole, closeDelimited), Extract: dir}); err != nil {
				t.Fatal(err)
			}
			testtar.Check(t, dir, tree)
		})
	}
}

// bombTar is a tar of one file of n zero bytes.
func bombTar(t *testing.T, n int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(tw)
	zero := make([]byte, 64<<10)
	for i := 0; i < n; i += len(zero) {
		bw.Write(zero[:min(len(zero), n-i)])
	}
	bw.Flush()
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A decompression bomb (gzip and zstd of 48 MiB of zeros, over 1000
// times smaller) fails once past ratio_after (lowered to 4 MiB for the
// test; the default is 1 GiB), naming the setting that lifts the limit,
// and leaves nothing; with max_ratio 0 it unpacks.
func TestExtractBomb(t *testing.T) {
	noLeaks(t)
	raw := bombTar(t, 48<<20)
	for _, f := range archiveFormats[1:] {
		t.Run(f.name, func(t *testing.T) {
			data := f.pack(t, raw)
			if len(data)*1000 > len(raw) {
				t.Fatalf("%d bytes compress to %d: not a bomb", len(raw), len(data))
			}
			url, _ := archiveServer(t, "bomb."+f.name, data, nil)
			dir := extractDir(t)
			req := &dlflow.Request{URL: url, Extract: dir, Sets: []string{"stages.decode.config.ratio_after=4MiB"}}
			_, err := newClient(t).Do(t.Context(), req)
			if !errors.Is(err, decompress.ErrRatio) || !strings.Contains(err.Error(), "stages.decode.config.max_ratio") {
				t.Fatalf("err = %v, want ErrRatio naming stages.decode.config.max_ratio", err)
			}
			assertMissing(t, dir)
			assertNothingBeside(t, dir)

			req.Sets = append(req.Sets, "stages.decode.config.max_ratio=0")
			res, err := newClient(t).Do(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != int64(len(data)) {
				t.Errorf("%d bytes downloaded, want %d", res.Bytes, len(data))
			}
		})
	}
}
