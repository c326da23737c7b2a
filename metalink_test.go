package dlflow_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// writeMetalink writes a .meta4 of the origin content (size, seed) with
// urls in order of priority, its sha-256, and the sha-256 of each piece
// of length piece (none when 0).
func writeMetalink(t *testing.T, size int64, seed uint64, piece int64, urls ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n")
	fmt.Fprintf(&b, "<file name=\"../named.bin\">\n<size>%d</size>\n<hash type=\"sha-256\">%s</hash>\n", size, origin.SHA256Hex(size, seed))
	if piece > 0 {
		fmt.Fprintf(&b, "<pieces length=\"%d\" type=\"sha-256\">\n", piece)
		buf := make([]byte, piece)
		for off := int64(0); off < size; off += piece {
			n := min(piece, size-off)
			origin.Fill(buf[:n], off, seed)
			sum := sha256.Sum256(buf[:n])
			fmt.Fprintf(&b, "<hash>%s</hash>\n", hex.EncodeToString(sum[:]))
		}
		b.WriteString("</pieces>\n")
	}
	for i, u := range urls {
		fmt.Fprintf(&b, "<url priority=\"%d\" location=\"de\">%s</url>\n", i+1, u)
	}
	b.WriteString("</file>\n</metalink>\n")
	path := filepath.Join(t.TempDir(), "f.meta4")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMetalinkLyingMirror: a source that serves other bytes of the same
// size under the same validators is caught piece by piece: its bad pieces
// never reach the output, it is dropped, and the others fetch them, with
// no second download.
func TestMetalinkLyingMirror(t *testing.T) {
	for _, liarFirst := range []bool{true, false} {
		t.Run(fmt.Sprint("liar primary=", liarFirst), func(t *testing.T) {
			noLeaks(t)
			good := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
			liar := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed + 1, ETag: fmt.Sprintf(`"%x-%x"`, mirSize, mirSeed)})
			urls := []string{good.URL(), liar.URL()}
			if liarFirst {
				urls = []string{liar.URL(), good.URL()}
			}
			meta := writeMetalink(t, mirSize, mirSeed, 256<<10, urls...)
			dir := t.TempDir()
			logOpt, log := withLog(zerolog.WarnLevel)
			req := mirRequest("", "")
			req.Metalink, req.Dir = meta, dir
			res, err := do(t, req, logOpt)
			out := filepath.Join(dir, "named.bin") // the metalink's name, made safe
			fltOK(t, res, err, out, mirSize, mirSeed)
			if liar.Stats().BytesServed == 0 {
				t.Fatal("the liar served nothing: the test proves nothing")
			}
			li := 1
			if liarFirst {
				li = 0
			}
			if d := res.Sources[li]; d.Bytes != 0 || !strings.Contains(d.Dropped, "fails its sha256 digest") {
				t.Fatalf("liar: %+v, want dropped for a piece, no bytes", d)
			}
			if res.Sources[1-li].Bytes != mirSize {
				t.Fatalf("the good source delivered %d bytes, want %d", res.Sources[1-li].Bytes, int64(mirSize))
			}
			if contains(log.String(), "failed verification") {
				t.Fatalf("the file was downloaded a second time:\n%s", log)
			}
			if !strings.HasPrefix(res.Checksum, "sha256:") {
				t.Fatalf("the metalink's hash was not verified: %q", res.Checksum)
			}
		})
	}
}

// TestMetalinkOnlyLiar: when the only source serves bad pieces, the
// download fails cleanly at the first one.
func TestMetalinkOnlyLiar(t *testing.T) {
	noLeaks(t)
	liar := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed + 1})
	meta := writeMetalink(t, mirSize, mirSeed, 1<<20, liar.URL())
	out := fltOut(t)
	req := mirRequest("", out)
	req.Metalink = meta
	res, err := do(t, req)
	// Whichever piece a reader finishes first fails.
	fltFailed(t, res, err, out, liar.URL()+" does not serve the same file: piece ", "fails its sha256 digest")
}

func TestMetalinkSizeDiffers(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	meta := writeMetalink(t, mirSize+1, mirSeed, 0, a.URL())
	out := fltOut(t)
	req := mirRequest("", out)
	req.Metalink = meta
	res, err := do(t, req)
	fltFailed(t, res, err, out, fmt.Sprintf("has %d bytes; the metalink says %d", mirSize, mirSize+1))
}

func TestMetalinkRequestErrors(t *testing.T) {
	noLeaks(t)
	bad := filepath.Join(t.TempDir(), "bad.meta4")
	if err := os.WriteFile(bad, []byte("<metalink><file name=\"x\"><url>ftp://x/</url></file></metalink>"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{bad, "no http or https URL"},
		{filepath.Join(t.TempDir(), "missing.meta4"), "no such file"},
	} {
		res, err := do(t, &dlflow.Request{Metalink: tt.path, Path: fltOut(t)})
		var re *dlflow.RequestError
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &re) || re.Field != "Metalink" {
			t.Fatalf("%s: %v (%+v), want a RequestError on Metalink saying %q", tt.path, err, res, tt.want)
		}
	}
}

// TestMetalinkFromURL: --metalink takes a URL; the file named in it is
// fetched from its URLs, checked against its hash.
func TestMetalinkFromURL(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	b := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	data, err := os.ReadFile(writeMetalink(t, mirSize, mirSeed, 1<<20, a.URL(), b.URL()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/metalink4+xml")
		w.Write(data)
	}))
	defer srv.Close()
	out := fltOut(t)
	req := mirRequest("", out)
	req.Metalink = srv.URL + "/f.meta4"
	res, err := do(t, req)
	fltOK(t, res, err, out, mirSize, mirSeed)
	got := sourceBytes(t, res.Sources, 2)
	if got[0]+got[1] != mirSize || got[1] == 0 {
		t.Fatalf("sources delivered %v, want both some", got)
	}
	if res.URL != a.URL() {
		t.Fatalf("primary %q, want the first by priority %q", res.URL, a.URL())
	}
}

// TestMetalinkPiecesAcrossRanges: pieces of 700 KiB over ranges of 1 MiB:
// a reader asks for the whole pieces its range touches, verifies them and
// sends on only its range's bytes; every byte once, a liar still caught.
func TestMetalinkPiecesAcrossRanges(t *testing.T) {
	noLeaks(t)
	good := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed})
	liar := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed + 1, ETag: fmt.Sprintf(`"%x-%x"`, mirSize, mirSeed)})
	meta := writeMetalink(t, mirSize, mirSeed, 700<<10, good.URL(), liar.URL())
	out := fltOut(t)
	req := mirRequest("", out)
	req.Metalink = meta
	req.Sets = append(req.Sets, "stages.split.config.piece=1MiB")
	res, err := do(t, req)
	fltOK(t, res, err, out, mirSize, mirSeed)
	if liar.Stats().BytesServed == 0 {
		t.Fatal("the liar served nothing: the test proves nothing")
	}
	got := sourceBytes(t, res.Sources, 2)
	if got[0] != mirSize || got[1] != 0 || !strings.Contains(res.Sources[1].Dropped, "fails its sha256 digest") {
		t.Fatalf("sources %+v, want every byte from the good one and the liar dropped", res.Sources)
	}
}

// TestMetalinkTrickled: a Metalink URL whose server sends its headers and
// then a byte every 100ms fails the download at MetalinkTimeout, with an
// error that says so, rather than being read for ever; nothing is left.
func TestMetalinkTrickled(t *testing.T) {
	noLeaks(t)
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/metalink4+xml")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for range 600 { // a minute at most
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			w.Write([]byte(" "))
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	defer close(stop)
	out := fltOut(t)
	req := mirRequest("", out)
	req.Metalink = srv.URL + "/f.meta4"
	req.MetalinkTimeout = time.Second
	start := time.Now()
	res, err := do(t, req)
	took := time.Since(start)
	fltFailed(t, res, err, out, "metalink", "not read within 1s")
	if took > 20*time.Second {
		t.Errorf("failed after %v, want about the 1s timeout", took)
	}
}

// TestRequestDuringMetalink: Request and Progress may be read from another
// goroutine while a Metalink download runs (go test -race reported the
// Metalink's replacing the request under Request); Request is the
// caller's own, the Metalink's sources not filled in.
func TestRequestDuringMetalink(t *testing.T) {
	noLeaks(t)
	good := startOrigin(t, origin.Options{Size: mirSize, Seed: mirSeed, RateLimit: 16 << 20})
	meta := writeMetalink(t, mirSize, mirSeed, 0, good.URL())
	req := &dlflow.Request{Metalink: meta, Dir: t.TempDir()}
	d := dlflow.NewClient().Start(t.Context(), req)
	reads := 0
	for done := false; !done; reads++ {
		select {
		case <-d.Done():
			done = true
		case <-time.After(time.Millisecond):
		}
		if got := d.Request(); got != req || got.URL != "" || len(got.Mirrors) != 0 {
			t.Fatalf("Request() = %+v, want the caller's", got)
		}
		_ = d.Progress()
	}
	if _, err := d.Wait(); err != nil {
		t.Fatal(err)
	}
	if reads < 2 {
		t.Fatalf("read %d times: the test proves nothing", reads)
	}
}
