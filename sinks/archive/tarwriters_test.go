package archive_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/internal/testtar"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks/archive"
)

// An archive whose order matters, unpacked by the writer pool and by the
// reading goroutine alone, comes out the same: a name given twice keeps
// its last bytes, a hard link finds the file a writer made, a symlink
// replaces a writer's file, members of 100 directories that have no
// members of their own (more than the directories held open) land in
// them, and a member too large for the pool is written beside them.
func TestTarExtractWriters(t *testing.T) {
	var entries []testtar.Entry
	want := map[string][]byte{}
	for i := range 300 {
		name := fmt.Sprintf("p%d/q/f%d", i%100, i)
		body := bytes.Repeat([]byte{byte(i)}, i*37)
		entries = append(entries, testtar.Entry{Name: name, Mode: 0o644, Body: body})
		want[name] = body
	}
	big := bytes.Repeat([]byte("big!"), 300<<10/4)
	entries = append(entries,
		testtar.Entry{Name: "d/a", Mode: 0o644, Body: []byte("first")},
		testtar.Entry{Name: "d/big", Mode: 0o600, Body: big},
		testtar.Entry{Name: "d/a", Mode: 0o755, Body: []byte("second, longer")},
		testtar.Entry{Name: "d/b", Mode: 0o644, Body: []byte("linked")},
		testtar.Entry{Name: "d/c", Type: tar.TypeLink, Link: "d/b"},
		testtar.Entry{Name: "d/s", Mode: 0o644, Body: []byte("replaced by a symlink")},
		testtar.Entry{Name: "d/s", Type: tar.TypeSymlink, Link: "a"},
	)
	want["d/a"], want["d/big"], want["d/b"] = []byte("second, longer"), big, []byte("linked")
	data := testtar.Tar(t, entries)
	for _, writers := range []int{0, 4} {
		t.Run(fmt.Sprint(writers), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			cfg := extractCfg(dir)
			cfg.Writers = writers
			if err := extractRun(t, t.Context(), data, 511, cfg); err != nil {
				t.Fatal(err)
			}
			for name, body := range want {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("%s: got %d bytes (err %v), want %d", name, len(got), err, len(body))
				}
				st, err := os.Stat(filepath.Join(dir, name))
				if err != nil || !st.ModTime().Equal(testtar.ModTime) {
					t.Fatalf("%s: mtime %v (err %v), want %v", name, st.ModTime(), err, testtar.ModTime)
				}
			}
			if st, _ := os.Stat(filepath.Join(dir, "d/a")); st.Mode().Perm() != 0o755 {
				t.Errorf("d/a: mode %v, want the last member's 0755", st.Mode().Perm())
			}
			b, _ := os.Stat(filepath.Join(dir, "d/b"))
			c, err := os.Stat(filepath.Join(dir, "d/c"))
			if err != nil || !os.SameFile(b, c) {
				t.Errorf("d/c is not a hard link to d/b (err %v)", err)
			}
			if target, err := os.Readlink(filepath.Join(dir, "d/s")); err != nil || target != "a" {
				t.Errorf("d/s: symlink to %q (err %v), want a", target, err)
			}
			files := 0
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					files++
				}
				return err
			})
			if files != len(want)+1 { // d/c is d/b's second name
				t.Errorf("%d files, want %d", files, len(want)+1)
			}
		})
	}
}

// writers is bounded: each holds buffers (writerMemory).
func TestTarExtractWritersConfig(t *testing.T) {
	cfg := extractCfg(filepath.Join(t.TempDir(), "out"))
	cfg.Writers = archive.DefaultWriters * 100
	_, err := pipeline.Build(newRig(t).reg, []pipeline.Node{
		{ID: "src", Type: "test.source", Config: &srcConfig{}},
		{ID: "out", Type: "tar.extract", Inputs: []string{"src"}, Config: cfg},
	})
	if err == nil || !strings.Contains(err.Error(), "writers must be from 0 to 64") {
		t.Fatalf("writers 400: got %v", err)
	}
}
