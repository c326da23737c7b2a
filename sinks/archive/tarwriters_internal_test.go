package archive

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// openDirs makes the directories names under a new temporary directory
// and holds each open as the dir cache would.
func openDirs(t *testing.T, names ...string) (string, map[string]*dirRoot) {
	t.Helper()
	base := t.TempDir()
	dirs := map[string]*dirRoot{}
	for _, n := range names {
		if err := os.Mkdir(filepath.Join(base, n), 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := os.OpenRoot(filepath.Join(base, n))
		if err != nil {
			t.Fatal(err)
		}
		fd, err := openDirFD(r) // nil where the system has no faster way
		if err != nil {
			t.Fatal(err)
		}
		d := &dirRoot{root: r, fd: fd}
		t.Cleanup(func() { d.close(nil) })
		dirs[n] = d
	}
	return base, dirs
}

// submitOne queues the one-byte file dir/base, as submitFile does.
func submitOne(w *writers, d *dirRoot, dir, base string) error {
	j := fileJob{dir: d, base: base, name: dir + "/" + base, member: "m-" + dir + "/" + base, mode: 0o644, buf: w.buffer(1)}
	j.buf[0] = base[0]
	j.data = j.buf[:1]
	d.refs.Add(1)
	if err := w.submit(j); err != nil {
		d.refs.Add(-1)
		return err
	}
	return nil
}

// TestWritersDirectoryAffinity: a directory's files go to the writer that
// has its queued files, and a directory with none to the writer with the
// fewest jobs; each is written, and nothing is left held.
func TestWritersDirectoryAffinity(t *testing.T) {
	base, dirs := openDirs(t, "a", "b", "c", "d", "e")
	gate := make(chan struct{})
	var mu sync.Mutex
	got := map[string]int{}
	writeHook = func(k int, name string) {
		mu.Lock()
		got[name] = k
		mu.Unlock()
		<-gate // every writer holds its first job until all are queued
	}
	defer func() { writeHook = nil }()
	w := newWriters(t.Context(), 4)
	for _, f := range []string{"a/1", "a/2", "a/3", "b/1", "c/1", "d/1", "e/1", "b/2", "a/4"} {
		dir, name := filepath.Split(f)
		dir = filepath.Clean(dir)
		if err := submitOne(w, dirs[dir], dir, name); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	// Loads when each was queued: a 3 jobs on writer 0; b, c, d one each
	// on 1, 2, 3; e to the first of the least loaded, 1; b/2 after b/1,
	// a/4 after a/3.
	want := map[string]int{"a/1": 0, "a/2": 0, "a/3": 0, "a/4": 0, "b/1": 1, "b/2": 1, "c/1": 2, "d/1": 3, "e/1": 1}
	for name, k := range want {
		if got[name] != k {
			t.Errorf("%s: writer %d, want %d (all: %v)", name, got[name], k, got)
		}
		data, err := os.ReadFile(filepath.Join(base, name))
		if err != nil || string(data) != filepath.Base(name) {
			t.Errorf("%s: %q, %v", name, data, err)
		}
	}
	if len(got) != len(want) || len(w.dirs) != 0 || len(w.pending) != 0 || len(w.slots) != 0 {
		t.Errorf("%d written, left: %d directories, %d names, %d slots", len(got), len(w.dirs), len(w.pending), len(w.slots))
	}
	for n, d := range dirs {
		if r := d.refs.Load(); r != 0 {
			t.Errorf("%s: %d refs left", n, r)
		}
	}
}

// TestWritersFailure: a file that cannot be made fails the pool with a
// *MemberError naming its member; every submit after it returns that
// error and gives its slot and buffer back, so that more of them than the
// pool has slots do not block; nothing after the failure is written.
func TestWritersFailure(t *testing.T) {
	base, dirs := openDirs(t, "a")
	if err := os.WriteFile(filepath.Join(base, "a", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWriters(t.Context(), 2)
	if err := submitOne(w, dirs["a"], "a", "x"); err != nil {
		t.Fatal(err)
	}
	err := w.settleAll()
	var me *MemberError
	if !errors.As(err, &me) || me.Member != "m-a/x" || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("settleAll: %v, want the member m-a/x existing", err)
	}
	for i := range 2 * cap(w.slots) {
		if err := submitOne(w, dirs["a"], "a", "y"); !errors.As(err, &me) || me.Member != "m-a/x" {
			t.Fatalf("submit %d after the failure: %v", i, err)
		}
	}
	if err := w.close(); !errors.As(err, &me) || me.Member != "m-a/x" {
		t.Fatalf("close: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "a", "y")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a/y was written after the failure: %v", err)
	}
	if w.small.made > w.small.capacity || w.large.made != 0 || len(w.slots) != 0 || dirs["a"].refs.Load() != 0 {
		t.Errorf("%d small buffers made of %d, %d large, %d slots held, %d refs", w.small.made, w.small.capacity, w.large.made, len(w.slots), dirs["a"].refs.Load())
	}
}

// TestWritersCancelled: jobs queued after the context ends are dropped,
// and the pool reports the cancellation; its goroutines end (goleak, in
// TestMain).
func TestWritersCancelled(t *testing.T) {
	base, dirs := openDirs(t, "a", "b")
	ctx, cancel := context.WithCancel(t.Context())
	gate := make(chan struct{})
	writeHook = func(int, string) { <-gate }
	defer func() { writeHook = nil }()
	w := newWriters(ctx, 2)
	if err := submitOne(w, dirs["a"], "a", "1"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"2", "3"} {
		if err := submitOne(w, dirs["b"], "b", f); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	close(gate)
	if err := w.close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("close: %v, want the cancellation", err)
	}
	for _, f := range []string{"b/2", "b/3"} {
		// b/2 may have passed its check of ctx before the cancel; b/3
		// was queued behind it on the same writer, but is checked after.
		if _, err := os.Lstat(filepath.Join(base, f)); f == "b/3" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was written after the cancel: %v", f, err)
		}
	}
}
