package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// extractOptions are a bench of the extract scenario on a small generated
// tree: 300 files and 4 of 64 KiB in 5 directories, 309 members.
func extractOptions(t *testing.T) Options {
	o := testOptions(t)
	o.Scenarios, o.Tree, o.TreeFiles, o.TreeLarge = []Scenario{ScenarioExtract}, TreeGenerated, 300, 64<<10
	return o
}

// wantPipes are the labels of the pipes whose tools are installed.
func wantPipes() []string {
	var out []string
	for _, p := range pipes {
		if !slices.ContainsFunc(p.needs, func(tool string) bool { return !installed(tool) }) {
			out = append(out, p.label)
		}
	}
	return out
}

// TestRunExtractScenario: dlflow unpacks the tree's .tar.gz and .tar.zst
// (dlflow picks the topology), and each installed pipe unpacks its
// format's; every tree is checked against the source's manifest, and each
// dlflow cell has its speed against every pipe of its format.
func TestRunExtractScenario(t *testing.T) {
	o := extractOptions(t)
	o.Compare, o.Tools = true, []string{"pipe"}
	res := run(t, o)
	want := append([]string{"auto .tar.gz", "auto .tar.zst"}, wantPipes()...)
	if got := labels(res.Cells); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	if got := res.Servers[ScenarioExtract]; !strings.HasPrefix(got, "built-in origin on 127.0.0.1: generated tree, 300 files and 4 of 0.1MiB, 309 members, served as .tar.gz ") {
		t.Errorf("server %q", got)
	}
	src := generatedTree(300, 64<<10)
	var files int
	var bytes int64
	_ = src.each(func(e treeEntry, _ io.Reader) error {
		if e.Mode.IsRegular() {
			files, bytes = files+1, bytes+e.Size
		}
		return nil
	})
	if files != 304 || bytes < 300<<10 {
		t.Fatalf("the generated tree has %d files of %d bytes", files, bytes)
	}
	for _, c := range res.Cells {
		if !c.Verified || c.SHA256 != "ok" || c.Runs != 1 || c.Bytes != bytes || c.Scenario != ScenarioExtract {
			t.Errorf("%s: %+v", c.Label, c)
		}
		var pipesOf []string
		for _, p := range res.Cells {
			if p.Tool == "pipe" && p.Format == c.Format {
				pipesOf = append(pipesOf, p.Label)
			}
		}
		var vs []string
		for _, r := range c.VsPipes {
			vs = append(vs, r.Pipe)
			if r.Speed <= 0 {
				t.Errorf("%s: speed %v against %s", c.Label, r.Speed, r.Pipe)
			}
		}
		switch {
		case c.Tool == "dlflow" && !strings.HasSuffix(c.Label, "."+c.Format):
			t.Errorf("%s: format %q", c.Label, c.Format)
		case c.Tool == "dlflow" && !slices.Equal(vs, pipesOf):
			t.Errorf("%s: speeds against %q, want %q", c.Label, vs, pipesOf)
		case c.Tool == "pipe" && (len(c.VsPipes) != 0 || !c.Durable || !strings.Contains(strings.Join(c.Command, " "), "&& sync")):
			t.Errorf("%s: %+v", c.Label, c)
		}
	}
	var table strings.Builder
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if len(wantPipes()) > 0 && (!strings.Contains(table.String(), "speed vs pipe") || !strings.Contains(table.String(), "each pipe ends with sync")) {
		t.Errorf("table without the speeds against the pipes:\n%s", table.String())
	}
}

// TestRunExtractCorrupted: a dlflow whose extracted tree differs from the
// source's by one byte appended to one file fails its cells, naming the
// file, with the sha256 column "failed".
func TestRunExtractCorrupted(t *testing.T) {
	o := extractOptions(t)
	script := filepath.Join(t.TempDir(), "corrupt.sh")
	body := fmt.Sprintf(`#!/bin/sh
%q "$@" || exit
prev=
for a in "$@"; do
	[ "$prev" = --extract ] && dir=$a
	prev=$a
done
printf x >> "$dir/tree/d000/f00001.txt"
`, o.Executable)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	o.Executable = script
	res := run(t, o)
	if got, want := labels(res.Cells), []string{"auto .tar.gz", "auto .tar.zst"}; !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	for _, c := range res.Cells {
		if c.Verified || c.SHA256 != "failed" || c.Runs != 0 || !strings.HasPrefix(c.Error, "tree mismatch at tree/d000/f00001.txt: got file -rw-r--r--, ") {
			t.Errorf("%s: verified %v, sha256 %q, %d runs, error %q", c.Label, c.Verified, c.SHA256, c.Runs, c.Error)
		}
	}
	if !res.Failed() {
		t.Error("the bench did not fail")
	}
}

// TestVerifyTree: the check of a tree finds a file whose content differs
// at the same size, a changed mode, a missing file, an extra one and a
// symlink that points elsewhere.
func TestVerifyTree(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("a/one.txt", "one", 0o644)
	write("a/b/two.txt", "two", 0o755)
	write("a-c.txt", "three", 0o644)
	if err := os.Symlink("one.txt", filepath.Join(dir, "a/link")); err != nil {
		t.Fatal(err)
	}
	want, err := readManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{}
	for _, e := range want {
		paths = append(paths, e.Path)
	}
	if w := []string{"a", "a-c.txt", "a/b", "a/b/two.txt", "a/link", "a/one.txt"}; !slices.Equal(paths, w) {
		t.Fatalf("manifest paths %q, want %q", paths, w)
	}
	if n, err := verifyTree(dir, want); err != nil || n != 11 {
		t.Fatalf("the same tree: %d bytes, %v", n, err)
	}
	for _, tc := range []struct {
		name    string
		change  func() error
		undo    func() error
		message string
	}{
		{"content", func() error { return os.WriteFile(filepath.Join(dir, "a/one.txt"), []byte("ONE"), 0o644) },
			func() error { return os.WriteFile(filepath.Join(dir, "a/one.txt"), []byte("one"), 0o644) },
			"tree mismatch at a/one.txt: got file -rw-r--r--, 3 bytes, sha256 "},
		{"mode", func() error { return os.Chmod(filepath.Join(dir, "a/b/two.txt"), 0o644) },
			func() error { return os.Chmod(filepath.Join(dir, "a/b/two.txt"), 0o755) },
			"tree mismatch at a/b/two.txt: got file -rw-r--r--"},
		{"missing", func() error { return os.Rename(filepath.Join(dir, "a-c.txt"), filepath.Join(dir, "z.txt")) },
			func() error { return os.Rename(filepath.Join(dir, "z.txt"), filepath.Join(dir, "a-c.txt")) },
			"tree mismatch at a-c.txt: got nothing, want file -rw-r--r--, 5 bytes"},
		{"symlink", func() error {
			return errors.Join(os.Remove(filepath.Join(dir, "a/link")), os.Symlink("b", filepath.Join(dir, "a/link")))
		}, func() error {
			return errors.Join(os.Remove(filepath.Join(dir, "a/link")), os.Symlink("one.txt", filepath.Join(dir, "a/link")))
		}, `tree mismatch at a/link: got symlink to "b", want symlink to "one.txt"`},
	} {
		if err := tc.change(); err != nil {
			t.Fatal(err)
		}
		_, err := verifyTree(dir, want)
		if err == nil || !strings.HasPrefix(err.Error(), tc.message) || !isTreeMismatch(err) {
			t.Errorf("%s: %v, want %q...", tc.name, err, tc.message)
		}
		if err := tc.undo(); err != nil {
			t.Fatal(err)
		}
	}
	write("a/b/extra", "", 0o644)
	if _, err := verifyTree(dir, want); err == nil || err.Error() != "tree mismatch at a/b/extra: got file -rw-r--r--, 0 bytes, sha256 e3b0c44298fc1c14, want nothing" {
		t.Errorf("an extra file: %v", err)
	}
}
