// Package testtar builds tar, tar.gz and tar.zst archives for tests of
// extraction, and checks an extracted tree against what went in. It is
// test support: no package outside tests imports it.
package testtar

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Entry is one archive member.
type Entry struct {
	Name string
	Type byte // tar.TypeReg when 0
	Mode int64
	Body []byte
	Link string // symlink or hard link target
}

// ModTime is every member's modification time.
var ModTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// Tree is a tree of every kind of member an archive may safely hold:
// nested directories, an empty file, a file larger than 1 MiB, an
// executable, modes with setuid and group write (which extraction drops),
// a symlink inside the tree, one up a level that stays inside, and a hard
// link.
func Tree() []Entry {
	big := make([]byte, 1<<20+4099)
	_, _ = rand.NewChaCha8([32]byte{'t', 'a', 'r'}).Read(big)
	return []Entry{
		{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		{Name: "top/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "top/readme.txt", Mode: 0o644, Body: []byte("read me\n")},
		{Name: "top/empty", Mode: 0o600},
		{Name: "top/bin/", Type: tar.TypeDir, Mode: 0o750},
		{Name: "top/bin/run.sh", Mode: 0o4777, Body: []byte("#!/bin/sh\necho run\n")},
		{Name: "top/data/nested/deep/big.bin", Mode: 0o664, Body: big},
		{Name: "top/private/", Type: tar.TypeDir, Mode: 0o500},
		{Name: "top/private/key", Mode: 0o400, Body: []byte("secret\n")},
		{Name: "top/link-readme", Type: tar.TypeSymlink, Link: "readme.txt"},
		{Name: "top/data/up", Type: tar.TypeSymlink, Link: "../bin/./run.sh"},
		{Name: "top/hard-readme", Type: tar.TypeLink, Link: "top/readme.txt"},
	}
}

// Tar is the tar archive of entries.
func Tar(tb testing.TB, entries []Entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.Name, Typeflag: typ, Mode: e.Mode, Linkname: e.Link, ModTime: ModTime, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Zip is the zip archive of entries (deflated), with Unix modes; a zip has
// no hard links, so they are left out (see ZipEntries).
func Zip(tb testing.TB, entries []Entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ZipEntries(entries) {
		fh := &zip.FileHeader{Name: e.Name, Method: zip.Deflate, Modified: ModTime}
		mode := fs.FileMode(e.Mode) & 0o777
		body := e.Body
		switch e.Type {
		case tar.TypeDir:
			mode |= fs.ModeDir
		case tar.TypeSymlink:
			mode |= fs.ModeSymlink
			body = []byte(e.Link)
		case tar.TypeChar:
			mode |= fs.ModeDevice | fs.ModeCharDevice
		}
		fh.SetMode(mode)
		w, err := zw.CreateHeader(fh)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// ZipEntries is entries less what a zip cannot hold: hard links.
func ZipEntries(entries []Entry) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Type != tar.TypeLink {
			out = append(out, e)
		}
	}
	return out
}

// Gzip compresses b.
func Gzip(tb testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Zstd compresses b.
func Zstd(tb testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Check asserts that dir holds exactly the tree of entries: each file's
// bytes and mode (less setuid, setgid, sticky, and group and other
// write), each symlink's target (cleaned), each directory, and nothing
// else.
func Check(tb testing.TB, dir string, entries []Entry) {
	tb.Helper()
	want := map[string]bool{".": true}
	for _, e := range entries {
		name := filepath.Clean(filepath.FromSlash(e.Name))
		for p := filepath.Dir(name); p != "."; p = filepath.Dir(p) {
			want[p] = true
		}
		want[name] = true
		full := filepath.Join(dir, name)
		st, err := os.Lstat(full)
		if err != nil {
			tb.Errorf("%s: %v", e.Name, err)
			continue
		}
		perm := fs.FileMode(e.Mode) & 0o777 &^ 0o022
		switch e.Type {
		case tar.TypeDir:
			if !st.IsDir() || name != "." && st.Mode().Perm() != perm|0o700 {
				tb.Errorf("%s: mode %v, want a directory %v", e.Name, st.Mode(), perm|0o700)
			}
		case tar.TypeSymlink:
			got, err := os.Readlink(full)
			if err != nil || got != filepath.FromSlash(filepath.ToSlash(filepath.Clean(e.Link))) {
				tb.Errorf("%s: symlink to %q (%v), want %q", e.Name, got, err, filepath.Clean(e.Link))
			}
		case tar.TypeLink:
			if !os.SameFile(st, lstat(tb, filepath.Join(dir, filepath.FromSlash(e.Link)))) {
				tb.Errorf("%s: not a hard link to %s", e.Name, e.Link)
			}
		default:
			got, err := os.ReadFile(full)
			if err != nil || !bytes.Equal(got, e.Body) {
				tb.Errorf("%s: %d bytes (%v), want its %d bytes", e.Name, len(got), err, len(e.Body))
			}
			if st.Mode() != perm {
				tb.Errorf("%s: mode %v, want %v", e.Name, st.Mode(), perm)
			}
			if !st.ModTime().Equal(ModTime) {
				tb.Errorf("%s: modified %v, want %v", e.Name, st.ModTime(), ModTime)
			}
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !want[rel] {
			tb.Errorf("%s: not in the archive", rel)
		}
		return nil
	})
	if err != nil {
		tb.Error(err)
	}
}

func lstat(tb testing.TB, p string) fs.FileInfo {
	st, err := os.Lstat(p)
	if err != nil {
		tb.Error(err)
	}
	return st
}

// Hostile is a set of archives that must each fail to extract, leaving
// nothing outside the directory: by name, the entries, and the member the
// error must name.
type Hostile struct {
	Name    string
	Entries []Entry
	Member  string
}

// Pwned is the body of every file a hostile archive tries to plant.
var Pwned = []byte("pwned\n")

// Hostiles are archives that try to write outside the directory or make a
// device. Each starts with a harmless file, so that the extraction has
// begun when it meets the hostile member.
func Hostiles() []Hostile {
	ok := Entry{Name: "ok.txt", Mode: 0o644, Body: []byte("fine\n")}
	return []Hostile{
		{"dotdot", []Entry{ok, {Name: "../../pwned.txt", Mode: 0o644, Body: Pwned}}, "../../pwned.txt"},
		{"nested dotdot", []Entry{ok, {Name: "a/b/../../../pwned.txt", Mode: 0o644, Body: Pwned}}, "a/b/../../../pwned.txt"},
		{"absolute", []Entry{ok, {Name: "/tmp/x", Mode: 0o644, Body: Pwned}}, "/tmp/x"},
		{"symlink escape", []Entry{ok, {Name: "evil", Type: tar.TypeSymlink, Link: "../../"}, {Name: "evil/pwned.txt", Mode: 0o644, Body: Pwned}}, "evil"},
		{"symlink inside then through", []Entry{ok, {Name: "sub/", Type: tar.TypeDir, Mode: 0o755}, {Name: "sub/self", Type: tar.TypeSymlink, Link: "."}, {Name: "sub/self/pwned.txt", Mode: 0o644, Body: Pwned}}, "sub/self/pwned.txt"},
		{"absolute symlink", []Entry{ok, {Name: "etc", Type: tar.TypeSymlink, Link: "/etc"}}, "etc"},
		{"hard link out", []Entry{ok, {Name: "passwd", Type: tar.TypeLink, Link: "/etc/passwd"}}, "passwd"},
		{"hard link up", []Entry{ok, {Name: "passwd", Type: tar.TypeLink, Link: "../../etc/passwd"}}, "passwd"},
		{"char device", []Entry{ok, {Name: "null", Type: tar.TypeChar, Mode: 0o666}}, "null"},
		{"fifo", []Entry{ok, {Name: "pipe", Type: tar.TypeFifo, Mode: 0o666}}, "pipe"},
	}
}

// Outside lists what a hostile archive may have planted around dir: the
// files it names, relative to dir's parent and grandparent and at /tmp/x.
// Each must be absent; the caller made dir's parent empty but for dir.
func Outside(tb testing.TB, parent string) {
	tb.Helper()
	for _, p := range []string{filepath.Join(parent, "pwned.txt"), filepath.Join(filepath.Dir(parent), "pwned.txt"), "/tmp/x"} {
		if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, Pwned) {
			tb.Errorf("%s was planted outside the directory", p)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) && p != "/tmp/x" {
			tb.Errorf("%s: %v", p, err)
		}
	}
}

// TarCut is the tar archive of entries without its end marker: what a
// server that cuts the archive at a member boundary sends.
func TarCut(tb testing.TB, entries []Entry) []byte {
	tb.Helper()
	full := Tar(tb, entries)
	return full[:len(full)-endSize(full)]
}

// endSize is the length of the end marker and the zero padding after it
// that tar.Writer puts at the end of data.
func endSize(data []byte) int {
	n := 0
	for n+512 <= len(data) && bytes.Equal(data[len(data)-n-512:len(data)-n], make([]byte, 512)) {
		n += 512
	}
	return n
}

// Deep is a name nested depth directories deep ("d/d/…/d"), and leaf
// below it when leaf is set.
func Deep(depth int, leaf string) string {
	name := strings.Repeat("d/", depth)
	if leaf == "" {
		return name
	}
	return name + leaf
}
