package dlflow_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/internal/testtar"
	"github.com/dlflow/dlflow/sinks/archive"       // tar.extract: the extract topologies
	_ "github.com/dlflow/dlflow/stages/decompress" // decompress: the extract topologies
)

// archiveServer serves data at /NAME with ranges and an ETag, and counts
// the requests. stall, when set, makes each answer stop after half the
// body and wait for it to close.
func archiveServer(t *testing.T, name string, data []byte, stall chan struct{}) (url string, requests *atomic.Int64) {
	requests = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("ETag", `"archive-1"`)
		if stall != nil {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:len(data)/2])
			http.NewResponseController(w).Flush()
			select {
			case <-stall:
			case <-r.Context().Done():
			}
			return
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + name, requests
}

// extractDir is DIR in a fresh parent, with the grandparent empty too, so
// that what a hostile archive plants around it is seen.
func extractDir(t *testing.T) string {
	base := filepath.Join(t.TempDir(), "a", "b")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "out")
}

// assertNothingBeside fails when DIR's parent holds anything but DIR: the
// temporary directory of an extraction must be gone.
func assertNothingBeside(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if de.Name() != filepath.Base(dir) {
			t.Errorf("left beside %s: %s", dir, de.Name())
		}
	}
}

type archiveFormat struct {
	name string
	pack func(testing.TB, []byte) []byte
}

var archiveFormats = []archiveFormat{
	{"tar", func(_ testing.TB, b []byte) []byte { return b }},
	{"tar.gz", testtar.Gzip},
	{"tar.zst", testtar.Zstd},
}

// Each format unpacks into DIR byte for byte, over one stream (the
// automatic topology, for an archive under 16 MiB) and over ranges put
// back in order (the extract topology, three connections, 256 KiB
// pieces), with the archive's checksum verified on the way. The name
// lies: every archive is served as .tar.gz, the bytes decide.
func TestExtract(t *testing.T) {
	noLeaks(t)
	tree := testtar.Tree()
	for _, f := range archiveFormats {
		data := f.pack(t, testtar.Tar(t, tree))
		sum := sha256.Sum256(data)
		url, _ := archiveServer(t, "archive.tar.gz", data, nil)
		for _, topo := range []string{"", "extract"} {
			t.Run(f.name+"/"+cmpOr(topo, "auto"), func(t *testing.T) {
				dir := extractDir(t)
				req := &dlflow.Request{URL: url, Extract: dir, Checksum: "sha256:" + hex.EncodeToString(sum[:])}
				if topo != "" {
					req.Topology, req.Connections = dlflow.Topology{Name: topo}, 3
					req.Sets = []string{"stages.split.config.piece=256KiB"}
				}
				res, err := newClient(t).Do(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				if res.Path != dir || res.Bytes != int64(len(data)) {
					t.Errorf("result path %s, %d bytes; want %s, %d", res.Path, res.Bytes, dir, len(data))
				}
				if want := "(built-in) " + cmpOr(topo, "extract-stream") + ".yaml"; res.Topology != want {
					t.Errorf("topology %s, want %s", res.Topology, want)
				}
				testtar.Check(t, dir, tree)
				assertNothingBeside(t, dir)
			})
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// A wrong checksum fails the run after the archive is unpacked: DIR does
// not appear and the temporary directory is removed.
func TestExtractChecksumMismatch(t *testing.T) {
	data := testtar.Gzip(t, testtar.Tar(t, testtar.Tree()))
	url, _ := archiveServer(t, "a.tgz", data, nil)
	dir := extractDir(t)
	_, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: url, Extract: dir, Checksum: "sha256:" + strings.Repeat("0", 64)})
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("err = %v, want a mismatch", err)
	}
	assertMissing(t, dir)
	assertNothingBeside(t, dir)
}

// Hostile archives fail naming the member, plant nothing outside DIR, and
// leave no DIR and no temporary directory.
func TestExtractHostile(t *testing.T) {
	for _, h := range testtar.Hostiles() {
		t.Run(h.Name, func(t *testing.T) {
			url, _ := archiveServer(t, "evil.tar.gz", testtar.Gzip(t, testtar.Tar(t, h.Entries)), nil)
			dir := extractDir(t)
			_, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: url, Extract: dir})
			var me *archive.MemberError
			if !errors.As(err, &me) || me.Member != h.Member || !errors.Is(err, archive.ErrUnsafeMember) {
				t.Fatalf("err = %v; want an unsafe member error naming %q", err, h.Member)
			}
			assertMissing(t, dir)
			assertNothingBeside(t, dir)
			testtar.Outside(t, filepath.Dir(dir))
		})
	}
}

// A truncated .tar.gz (the server's whole file is cut) fails as such and
// leaves nothing.
func TestExtractTruncatedGzip(t *testing.T) {
	data := testtar.Gzip(t, testtar.Tar(t, testtar.Tree()))
	url, _ := archiveServer(t, "cut.tar.gz", data[:len(data)*3/4], nil)
	dir := extractDir(t)
	_, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: url, Extract: dir})
	if err == nil || !strings.Contains(err.Error(), "gzip stream truncated") {
		t.Fatalf("err = %v, want gzip stream truncated", err)
	}
	assertMissing(t, dir)
	assertNothingBeside(t, dir)
}

// An existing DIR is refused before any request; Extract excludes Path.
func TestExtractRefused(t *testing.T) {
	url, requests := archiveServer(t, "a.tar", testtar.Tar(t, testtar.Tree()), nil)
	dir := extractDir(t)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: url, Extract: dir})
	if !errors.Is(err, dlflow.ErrOutputExists) || requests.Load() != 0 {
		t.Fatalf("err = %v after %d requests; want ErrOutputExists before any", err, requests.Load())
	}
	for _, req := range []*dlflow.Request{{URL: url, Extract: dir, Path: "x"}, {URL: url, Extract: dir, Writer: io.Discard}} {
		_, err = newClient(t).Do(t.Context(), req)
		var re *dlflow.RequestError
		if !errors.As(err, &re) || re.Field != "Extract" {
			t.Fatalf("err = %v, want a RequestError on Extract", err)
		}
	}
	// With Overwrite the old directory is replaced by the archive's.
	if _, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: url, Extract: dir, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir, testtar.Tree())
}

// Cancelled mid-archive: no goroutine left, no DIR, no temporary
// directory.
func TestExtractCancel(t *testing.T) {
	noLeaks(t)
	stall := make(chan struct{})
	defer close(stall)
	data := testtar.Zstd(t, testtar.Tar(t, testtar.Tree()))
	url, _ := archiveServer(t, "a.tar.zst", data, stall)
	dir := extractDir(t)
	c := newClient(t)
	d := c.Start(t.Context(), &dlflow.Request{URL: url, Extract: dir})
	// Wait (bounded) until the half of the archive sent is unpacked in
	// part: a file of the tree is in the temporary directory.
	deadline := time.Now().Add(10 * time.Second)
	for !tmpHolds(t, dir, "readme.txt") {
		if time.Now().After(deadline) {
			t.Fatal("nothing unpacked within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.Cancel()
	_, err := d.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	assertMissing(t, dir)
	assertNothingBeside(t, dir)
}

// tmpHolds reports whether a temporary directory beside dir holds a file
// named name.
func tmpHolds(t *testing.T, dir, name string) bool {
	found := false
	des, _ := os.ReadDir(filepath.Dir(dir))
	for _, de := range des {
		filepath.WalkDir(filepath.Join(filepath.Dir(dir), de.Name()), func(p string, d os.DirEntry, err error) error {
			found = found || err == nil && d.Name() == name
			return nil
		})
	}
	return found
}

// A zip (served as .tar.gz: the bytes decide) is spooled next to DIR and
// unpacked with the same rules; the spool is gone afterwards.
func TestExtractZip(t *testing.T) {
	noLeaks(t)
	tree := testtar.ZipEntries(testtar.Tree())
	url, _ := archiveServer(t, "lies.tar.gz", testtar.Zip(t, tree), nil)
	dir := extractDir(t)
	if _, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: url, Extract: dir}); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir, tree)
	assertNothingBeside(t, dir)
}

// An archive of 16 MiB or more from a server with ranges takes the ranged
// extract topology, over several connections.
func TestExtractLargePicksRanged(t *testing.T) {
	big := randomBytes(17<<20, 9)
	tree := []testtar.Entry{{Name: "big.bin", Mode: 0o644, Body: big}}
	data := testtar.Zstd(t, testtar.Tar(t, tree))
	url, _ := archiveServer(t, "big.tar.zst", data, nil)
	dir := extractDir(t)
	res, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: url, Extract: dir, Connections: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.Topology != "(built-in) extract.yaml" || res.Connections < 2 {
		t.Errorf("topology %s over %d connections, want extract.yaml over several", res.Topology, res.Connections)
	}
	testtar.Check(t, dir, tree)
}
