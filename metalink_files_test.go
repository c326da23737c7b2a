package dlflow_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// mlFile is one file of a Metalink written by the tests: the origin's
// content (size, seed) under name, at url.
type mlFile struct {
	name string
	size int64
	seed uint64
	url  string
}

// pieceHashes are the sha-256 of the pieces of length piece of the
// origin's content.
func pieceHashes(size int64, seed uint64, piece int64) []string {
	var out []string
	buf := make([]byte, piece)
	for off := int64(0); off < size; off += piece {
		n := min(piece, size-off)
		origin.Fill(buf[:n], off, seed)
		sum := sha256.Sum256(buf[:n])
		out = append(out, hex.EncodeToString(sum[:]))
	}
	return out
}

// writeMetalinkV3 writes a Metalink 3.0 document (as aria2c reads it) of
// files, each with its sha256, piece hashes of 1 MiB and its URL, plus
// an ftp URL of higher preference that must be left out.
func writeMetalinkV3(t *testing.T, files ...mlFile) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metalink version=\"3.0\" xmlns=\"http://www.metalinker.org/\">\n<files>\n")
	for _, f := range files {
		fmt.Fprintf(&b, "<file name=%q>\n<size>%d</size>\n<verification>\n<hash type=\"sha256\">%s</hash>\n", f.name, f.size, origin.SHA256Hex(f.size, f.seed))
		b.WriteString("<pieces length=\"1048576\" type=\"sha256\">\n")
		for i, h := range pieceHashes(f.size, f.seed, 1<<20) {
			fmt.Fprintf(&b, "<hash piece=\"%d\">%s</hash>\n", i, h)
		}
		fmt.Fprintf(&b, "</pieces>\n</verification>\n<resources>\n<url type=\"ftp\" preference=\"100\">ftp://127.0.0.1:1/%s</url>\n<url type=\"http\" preference=\"90\">%s</url>\n</resources>\n</file>\n", f.name, f.url)
	}
	b.WriteString("</files>\n</metalink>\n")
	return writeTemp(t, "f.metalink", b.String())
}

// writeMeta4 writes an RFC 5854 document of files, each with its sha-256
// and its URL.
func writeMeta4(t *testing.T, files ...mlFile) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n")
	for _, f := range files {
		fmt.Fprintf(&b, "<file name=%q>\n<size>%d</size>\n<hash type=\"sha-256\">%s</hash>\n<url priority=\"1\">%s</url>\n</file>\n", f.name, f.size, origin.SHA256Hex(f.size, f.seed), f.url)
	}
	b.WriteString("</metalink>\n")
	return writeTemp(t, "f.meta4", b.String())
}

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// metalinkBatch downloads the files of the Metalink meta that selected
// picks (nil: all) into dir with MetalinkRequests and Batch, and returns
// the files written, by name.
func metalinkBatch(t *testing.T, meta, dir string, selected []int) map[string]*dlflow.Result {
	t.Helper()
	c := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	reqs, err := c.MetalinkRequests(ctx, meta, &dlflow.Request{Dir: dir}, selected)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dlflow.Request, len(reqs))
	for _, r := range reqs {
		ch <- r
	}
	close(ch)
	got := map[string]*dlflow.Result{}
	for r := range c.Batch(ctx, 2, ch) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Request.Label, r.Err)
		}
		got[filepath.Base(r.Result.Path)] = r.Result
	}
	return got
}

// A Metalink 3.0 file (aria2c's format) downloads: its http URL, its
// name, its sha256 and its piece hashes are used (not its ftp URL). Two
// files download as a batch into a directory that did not exist, and a
// selection (--select-file 2) fetches the second alone.
func TestMetalinkV3Files(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: 3<<20 + 17, Seed: 51})
	b := startOrigin(t, origin.Options{Size: 1<<20 - 5, Seed: 52})
	files := []mlFile{{"a.bin", 3<<20 + 17, 51, a.URL()}, {"b.bin", 1<<20 - 5, 52, b.URL()}}
	meta := writeMetalinkV3(t, files...)

	dir := filepath.Join(t.TempDir(), "new")
	got := metalinkBatch(t, meta, dir, nil)
	for _, f := range files {
		res := got[f.name]
		if res == nil {
			t.Fatalf("%s not downloaded: %v", f.name, got)
		}
		assertComplete(t, filepath.Join(dir, f.name), f.size, f.seed)
		if res.Checksum != "sha256:"+origin.SHA256Hex(f.size, f.seed) {
			t.Errorf("%s: checksum %q, want the metalink's sha256 verified", f.name, res.Checksum)
		}
	}

	dir2 := t.TempDir()
	got = metalinkBatch(t, meta, dir2, []int{2})
	if len(got) != 1 || got["b.bin"] == nil {
		t.Fatalf("select 2: %v", got)
	}
	assertComplete(t, filepath.Join(dir2, "b.bin"), files[1].size, files[1].seed)
	assertMissing(t, filepath.Join(dir2, "a.bin"))

	// One request may pick a file; without a pick, two files are refused.
	res, err := do(t, &dlflow.Request{Metalink: meta, MetalinkFile: 1, Dir: filepath.Join(t.TempDir(), "one")})
	fltOK(t, res, err, filepath.Join(filepath.Dir(res.Path), "a.bin"), files[0].size, files[0].seed)
	_, err = do(t, &dlflow.Request{Metalink: meta, Dir: t.TempDir()})
	var fe *dlflow.MetalinkFilesError
	if !errors.As(err, &fe) || fe.Files != 2 {
		t.Fatalf("err = %v, want a *MetalinkFilesError of 2 files", err)
	}
}

// A .meta4 with two files downloads both, byte for byte.
func TestMetalinkTwoFilesMeta4(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: 2<<20 + 1, Seed: 53})
	b := startOrigin(t, origin.Options{Size: 700_001, Seed: 54})
	files := []mlFile{{"one.bin", 2<<20 + 1, 53, a.URL()}, {"two.bin", 700_001, 54, b.URL()}}
	dir := t.TempDir()
	got := metalinkBatch(t, writeMeta4(t, files...), dir, nil)
	if len(got) != 2 {
		t.Fatalf("%d files, want 2", len(got))
	}
	for _, f := range files {
		assertComplete(t, filepath.Join(dir, f.name), f.size, f.seed)
	}
}

// A checksum mismatch against a Metalink's hash says the Metalink is
// where the expected digest came from.
func TestMetalinkChecksumSource(t *testing.T) {
	noLeaks(t)
	a := startOrigin(t, origin.Options{Size: 100_000, Seed: 55})
	meta := writeMeta4(t, mlFile{"x.bin", 100_000, 56, a.URL()}) // the hash of other bytes of that size
	out := fltOut(t)
	res, err := do(t, &dlflow.Request{Metalink: meta, Path: out})
	var ce *dlflow.ChecksumError
	if !errors.As(err, &ce) || ce.Source != "the metalink" || !strings.Contains(err.Error(), "(from the metalink)") {
		t.Fatalf("err = %v, want a checksum mismatch from the metalink", err)
	}
	fltFailed(t, res, err, out, "mismatch")
}

func TestParseFileSelection(t *testing.T) {
	for spec, want := range map[string][]int{"1": {1}, "1,3-4": {1, 3, 4}, "4-5, 2,4": {2, 4, 5}} {
		got, err := dlflow.ParseFileSelection(spec)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v, %v; want %v", spec, got, err, want)
		}
	}
	for _, spec := range []string{"", "0", "3-1", "a", "1,", "1-99999999", "-2"} {
		if got, err := dlflow.ParseFileSelection(spec); err == nil {
			t.Errorf("%q: %v, want an error", spec, got)
		}
	}
}

// aria2c, given the same Metalink files against the same origins, writes
// the same bytes. Skipped without aria2c, unless CI is set (.ci/run
// installs it): then it fails.
func TestMetalinkSameAsAria2c(t *testing.T) {
	aria, err := exec.LookPath("aria2c")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set and aria2c is missing: .ci/run installs it")
		}
		t.Skip("no aria2c")
	}
	a := startOrigin(t, origin.Options{Size: 3<<20 + 17, Seed: 57})
	b := startOrigin(t, origin.Options{Size: 1<<20 - 5, Seed: 58})
	files := []mlFile{{"a.bin", 3<<20 + 17, 57, a.URL()}, {"b.bin", 1<<20 - 5, 58, b.URL()}}
	for _, meta := range []string{writeMetalinkV3(t, files...), writeMeta4(t, files...)} {
		t.Run(filepath.Ext(meta), func(t *testing.T) {
			ours, theirs := t.TempDir(), t.TempDir()
			metalinkBatch(t, meta, ours, nil)
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, aria, "--metalink-file="+meta, "--dir="+theirs, "--no-conf", "--quiet",
				"--file-allocation=none", "--auto-file-renaming=false", "--check-certificate=false")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("aria2c: %v\n%s", err, out)
			}
			for _, f := range files {
				mine, err := os.ReadFile(filepath.Join(ours, f.name))
				if err != nil {
					t.Fatal(err)
				}
				its, err := os.ReadFile(filepath.Join(theirs, f.name))
				if err != nil {
					t.Fatalf("aria2c wrote no %s: %v", f.name, err)
				}
				if !slices.Equal(mine, its) || int64(len(mine)) != f.size {
					t.Fatalf("%s: dlflow wrote %d bytes, aria2c %d, not the same", f.name, len(mine), len(its))
				}
			}
		})
	}
}
