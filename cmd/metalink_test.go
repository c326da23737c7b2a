package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
)

// writeTwoFileMetalink writes a Metalink of two files of the origins a
// and b (sizes and seeds as given), in the 3.0 format (aria2c's) or RFC
// 5854's.
func writeTwoFileMetalink(t *testing.T, v3 bool, a, b *origin.Server, sizes [2]int64, seeds [2]uint64) string {
	t.Helper()
	var doc strings.Builder
	urls := [2]string{a.URL(), b.URL()}
	if v3 {
		doc.WriteString(`<metalink version="3.0" xmlns="http://www.metalinker.org/"><files>`)
		for i := range 2 {
			fmt.Fprintf(&doc, `<file name="f%d.bin"><size>%d</size><verification><hash type="sha256">%s</hash></verification><resources><url type="http" preference="100">%s</url></resources></file>`,
				i+1, sizes[i], origin.SHA256Hex(sizes[i], seeds[i]), urls[i])
		}
		doc.WriteString(`</files></metalink>`)
	} else {
		doc.WriteString(`<metalink xmlns="urn:ietf:params:xml:ns:metalink">`)
		for i := range 2 {
			fmt.Fprintf(&doc, `<file name="f%d.bin"><size>%d</size><hash type="sha-256">%s</hash><url priority="1">%s</url></file>`,
				i+1, sizes[i], origin.SHA256Hex(sizes[i], seeds[i]), urls[i])
		}
		doc.WriteString(`</metalink>`)
	}
	path := filepath.Join(t.TempDir(), "two.meta4")
	if err := os.WriteFile(path, []byte(doc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// dlflow --metalink F --dir D downloads every file of a Metalink (3.0 or
// RFC 5854) into D, created if missing; --select-file picks some; without
// --dir, a Metalink of two files is a usage error that says what to do.
func TestCLIMetalinkFiles(t *testing.T) {
	sizes, seeds := [2]int64{1<<20 + 3, 300_007}, [2]uint64{61, 62}
	a := startOrigin(t, origin.Options{Size: sizes[0], Seed: seeds[0]})
	b := startOrigin(t, origin.Options{Size: sizes[1], Seed: seeds[1]})
	for _, v3 := range []bool{true, false} {
		t.Run(fmt.Sprint("v3=", v3), func(t *testing.T) {
			meta := writeTwoFileMetalink(t, v3, a, b, sizes, seeds)
			dir := filepath.Join(t.TempDir(), "new", "d")
			res := runCLI(t, "--metalink", meta, "--dir", dir)
			if res.code != 0 || !strings.Contains(res.stderr, "2 downloaded, 0 failed") {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			for i := range 2 {
				out := filepath.Join(dir, fmt.Sprintf("f%d.bin", i+1))
				if got := fileSHA256(t, out); got != origin.SHA256Hex(sizes[i], seeds[i]) {
					t.Fatalf("%s: sha256 %s", out, got)
				}
			}

			dir = t.TempDir()
			res = runCLI(t, "--metalink", meta, "--dir", dir, "--select-file", "2")
			if res.code != 0 || !strings.Contains(res.stderr, "1 downloaded, 0 failed") {
				t.Fatalf("--select-file 2: exit %d: %s", res.code, res.stderr)
			}
			if got := fileSHA256(t, filepath.Join(dir, "f2.bin")); got != origin.SHA256Hex(sizes[1], seeds[1]) {
				t.Fatalf("f2.bin: sha256 %s", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "f1.bin")); !os.IsNotExist(err) {
				t.Fatalf("f1.bin was not selected: %v", err)
			}

			res = runCLI(t, "--metalink", meta, "-o", filepath.Join(t.TempDir(), "x"))
			if res.code != 2 || !strings.Contains(res.stderr, "lists 2 files: give --dir DIR to download them all, or --select-file") {
				t.Fatalf("two files, one output: exit %d: %s", res.code, res.stderr)
			}
			res = runCLI(t, "--metalink", meta, "--dir", t.TempDir(), "--select-file", "3")
			if res.code != 2 || !strings.Contains(res.stderr, "there is no file 3") {
				t.Fatalf("--select-file 3: exit %d: %s", res.code, res.stderr)
			}
			res = runCLI(t, "--metalink", meta, "--dir", t.TempDir(), "--select-file", "0-1")
			if res.code != 2 || !strings.Contains(res.stderr, "select-file") {
				t.Fatalf("--select-file 0-1: exit %d: %s", res.code, res.stderr)
			}
		})
	}
}

// Two files of a Metalink with one name: the second is refused before it
// writes anything, and the line says which file has the name.
func TestCLIMetalinkSameName(t *testing.T) {
	a := startOrigin(t, origin.Options{Size: 100_003, Seed: 63})
	doc := `<metalink xmlns="urn:ietf:params:xml:ns:metalink">`
	for range 2 {
		doc += fmt.Sprintf(`<file name="same.bin"><size>100003</size><hash type="sha-256">%s</hash><url>%s</url></file>`, origin.SHA256Hex(100_003, 63), a.URL())
	}
	meta := filepath.Join(t.TempDir(), "same.meta4")
	if err := os.WriteFile(meta, []byte(doc+`</metalink>`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	res := runCLI(t, "--metalink", meta, "--dir", dir, "--jobs", "1")
	// While file 1 runs, file 2 clashes on its claim; once file 1 is done
	// (--jobs 1: always), file 2 finds it on disk. Either way it fails,
	// naming the file, and file 1's bytes stay.
	want := "same.bin is already the output of file 1 of the metalink, of the same name"
	exists := "same.bin exists; pass --overwrite"
	if res.code != 1 || !strings.Contains(res.stderr, want) && !strings.Contains(res.stderr, exists) || !strings.Contains(res.stderr, "1 downloaded, 1 failed") {
		t.Fatalf("exit %d, want 1 and %q or %q:\n%s", res.code, want, exists, res.stderr)
	}
	if got := fileSHA256(t, filepath.Join(dir, "same.bin")); got != origin.SHA256Hex(100_003, 63) {
		t.Fatalf("sha256 %s", got)
	}
}
