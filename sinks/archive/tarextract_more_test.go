//go:build unix

package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/internal/testtar"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks/archive"
)

// extractRunSized is extractRun with the resource's size as the source
// gave it (-1: the server sent no length).
func extractRunSized(t *testing.T, ctx context.Context, data []byte, chunk int, size int64, cfg *archive.TarExtractConfig) error {
	t.Helper()
	g := newRig(t).buildChunked(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), chunk, "tar.extract", cfg, 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		return err
	}
	return run(t, ctx, g, size)
}

func assertNothingLeft(t *testing.T, dir string) {
	t.Helper()
	assertMissing(t, dir)
	if s := siblings(t, dir); len(s) != 0 {
		t.Fatalf("left beside the directory: %v", s)
	}
}

// sparseSize is the logical size of the sparse member: archive/tar
// reads a hole back as zeros, so the CPU time is about 1 s per 16 GiB
// (see copyData); the disk must hold only the data.
const sparseSize = 16 << 30

// A sparse member keeps its holes: the file has its logical size, its
// data at their offsets, zeros between, and takes the disk space of its
// data only, for a file ending in a hole too.
func TestTarExtractSparse(t *testing.T) {
	frags := []testtar.Fragment{
		{Offset: 0, Data: []byte("head of the image")},
		{Offset: 5<<30 + 100, Data: bytes.Repeat([]byte("middle "), 2000)},
		{Offset: 9 << 30, Data: bytes.Repeat([]byte{1}, 8192)},
	}
	data := testtar.SparseTar(t, "disk.img", sparseSize, frags)
	dir := filepath.Join(t.TempDir(), "out")
	if err := extractRun(t, t.Context(), data, 64<<10, extractCfg(dir)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != sparseSize {
		t.Fatalf("size %d, want %d", st.Size(), int64(sparseSize))
	}
	for _, fr := range frags {
		got := make([]byte, len(fr.Data))
		if _, err := f.ReadAt(got, fr.Offset); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, fr.Data) {
			t.Errorf("at %d: %q..., want %q...", fr.Offset, got[:8], fr.Data[:8])
		}
		around := make([]byte, 1)
		for _, at := range []int64{fr.Offset - 1, fr.Offset + int64(len(fr.Data)), sparseSize - 1} {
			if at < 0 {
				continue
			}
			if _, err := f.ReadAt(around, at); err != nil || around[0] != 0 {
				t.Errorf("at %d: %v %v, want a zero", at, around, err)
			}
		}
	}
	if !sparseFS(t, filepath.Dir(dir)) {
		t.Skip("the file system stores no holes: disk use not checked")
	}
	if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
		t.Fatalf("the file takes %d bytes of disk for %d of data", used, 8192+14000+17)
	}
}

// sparseFS reports whether files in dir may have holes: a file of 64 MiB
// with one byte written at its end takes less than 1 MiB.
func sparseFS(t *testing.T, dir string) bool {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.WriteAt([]byte{1}, 64<<20); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks*512 < 1<<20
}

// A tar cut at a member boundary ends like a whole one but for its end
// marker: with no length from the server, that fails the run and leaves
// nothing; with a length (which the source checked), it unpacks.
func TestTarExtractNoEndMarker(t *testing.T) {
	tree := testtar.Tree()
	cut := testtar.TarCut(t, tree[:6]) // up to top/bin/run.sh
	dir := filepath.Join(t.TempDir(), "out")
	err := extractRunSized(t, t.Context(), cut, 4096, -1, extractCfg(dir))
	if err == nil || !strings.Contains(err.Error(), "without its end marker") || !strings.Contains(err.Error(), `"top/bin/run.sh"`) {
		t.Fatalf("err = %v, want no end marker after top/bin/run.sh", err)
	}
	assertNothingLeft(t, dir)
	// The whole archive, told by its marker, with no length either.
	if err := extractRunSized(t, t.Context(), testtar.Tar(t, tree), 4096, -1, extractCfg(dir)); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir, tree)
	dir2 := filepath.Join(t.TempDir(), "out")
	if err := extractRunSized(t, t.Context(), cut, 4096, int64(len(cut)), extractCfg(dir2)); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir2, tree[:6])
}

// deepDepth is how deep the deep members go: deeper than the descriptor
// limit that os.RemoveAll needs one of per level (lowFDLimit sets it to
// deepFDs). 100,000 takes five times as long as this, on a busy machine
// minutes; the time is linear in the depth.
const (
	deepDepth = 20_000
	// cancelDepth is the depth of the cancelled run's members, above deepFDs.
	cancelDepth = 5_000
	deepFDs     = 4096
)

// lowFDLimit lowers the soft limit on open descriptors to deepFDs for the
// test: the same on every machine, and below deepDepth.
func lowFDLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = min(lim.Cur, deepFDs)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
}

// A member below 100,000 directories: the run fails on its cut data, in
// bounded time, with a message of bounded length that shows the name
// shortened, and removes the whole temporary tree.
func TestTarExtractDeepFails(t *testing.T) {
	lowFDLimit(t)
	name := testtar.Deep(deepDepth, "file")
	full := testtar.Tar(t, []testtar.Entry{{Name: name, Mode: 0o644, Body: bytes.Repeat([]byte("x"), 4096)}})
	cut := full[:len(full)-1024-2048] // within the file's data
	dir := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	err := extractRun(t, t.Context(), cut, 64<<10, extractCfg(dir))
	t.Logf("failed in %v", time.Since(start))
	var me *archive.MemberError
	if !errors.As(err, &me) || me.Member != name {
		t.Fatalf("err = %.300v, want the deep member named", err)
	}
	if msg := err.Error(); len(msg) > 1000 || !strings.Contains(msg, "d/d/…d/d/") {
		t.Fatalf("message of %d bytes, want under 1000 with the name shortened: %.300s", len(msg), msg)
	}
	assertNothingLeft(t, dir)
}

// A directory member 100,000 deep unpacks, in time linear in its depth,
// and the tree it makes can be removed.
func TestTarExtractDeepDir(t *testing.T) {
	lowFDLimit(t)
	tree := []testtar.Entry{{Name: testtar.Deep(deepDepth, ""), Type: tar.TypeDir, Mode: 0o755}, {Name: "after.txt", Mode: 0o644, Body: []byte("after\n")}}
	dir := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	if err := extractRun(t, t.Context(), testtar.Tar(t, tree), 64<<10, extractCfg(dir)); err != nil {
		t.Fatalf("%.300v", err)
	}
	t.Logf("extracted in %v", time.Since(start))
	if b, err := os.ReadFile(filepath.Join(dir, "after.txt")); err != nil || string(b) != "after\n" {
		t.Fatalf("after.txt: %q, %v", b, err)
	}
	if err := archive.RemoveTree(dir); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, dir)
}

// Cancelled while it unpacks a deep member, the run returns soon and
// leaves nothing.
func TestTarExtractDeepCancel(t *testing.T) {
	lowFDLimit(t)
	var entries []testtar.Entry
	for i := range 20 {
		entries = append(entries, testtar.Entry{Name: testtar.Deep(cancelDepth, string(rune('a'+i))), Mode: 0o644, Body: []byte("x")})
	}
	data := testtar.Tar(t, entries)
	dir := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithCancel(t.Context())
	var cancelled atomic.Int64
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(64 << 10)
		for off := 0; off < len(data); off += 64 << 10 {
			c := pool.Get(int64(off))
			c.Data = c.Data[:copy(c.Data, data[off:])]
			if err := edges.Send(ctx, c); err != nil {
				return err
			}
		}
		// Cancel once the deep directories are being made (bounded wait).
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".out.tmp-*", "d", "d")); len(m) > 0 {
				break
			}
		}
		cancelled.Store(time.Now().UnixNano())
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	g := newRig(t).buildChunked(t, src, 64<<10, "tar.extract", extractCfg(dir), 1)
	err := run(t, ctx, g, int64(len(data)))
	took := time.Since(time.Unix(0, cancelled.Load()))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %.300v, want canceled", err)
	}
	t.Logf("returned %v after the cancel", took)
	if took > 5*time.Second {
		t.Fatalf("returned %v after the cancel, want under 5s", took)
	}
	assertNothingLeft(t, dir)
}

// With overwrite, DIR is swapped for the new tree: a watcher that looks
// at DIR all along never finds it missing, and the old tree is gone.
func TestTarExtractOverwriteSwap(t *testing.T) {
	tree := testtar.Tree()
	data := testtar.Tar(t, tree)
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	var missing, looks atomic.Int64
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := os.Lstat(dir); err != nil {
				missing.Add(1)
			}
			looks.Add(1)
		}
	}()
	cfg := extractCfg(dir)
	cfg.Overwrite, cfg.Fsync = true, false
	for range 20 {
		if err := extractRun(t, t.Context(), data, 64<<10, cfg); err != nil {
			close(done)
			t.Fatal(err)
		}
	}
	close(done)
	<-watched
	if missing.Load() != 0 {
		t.Fatalf("DIR was missing %d times of %d looks", missing.Load(), looks.Load())
	}
	testtar.Check(t, dir, tree)
	if s := siblings(t, dir); len(s) != 0 {
		t.Fatalf("left beside the directory: %v", s)
	}
}

// What killed runs left next to DIR (a temporary tree, a zip spool, a
// tree moved aside) is removed by the next run on DIR; what a live run
// holds (locked), and what is too young to tell, stays.
func TestTarExtractCollectsLeftovers(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	old := time.Now().Add(-time.Hour)
	mk := func(name string, isDir bool) string {
		p := filepath.Join(parent, name)
		if isDir {
			if err := os.MkdirAll(filepath.Join(p, "a", "b"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, "a", "b", "f"), []byte("partial"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, []byte("PK\x03\x04spool"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dead := []string{mk(".out.tmp-111", true), mk(".out.zip-222", false), mk(".out.tmp-333.old", true)}
	live := mk(".out.tmp-444", true)
	lock, err := archive.LockLeftover(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	young := filepath.Join(parent, ".out.tmp-555")
	if err := os.Mkdir(young, 0o755); err != nil {
		t.Fatal(err)
	}
	other := mk(".other.tmp-666", true) // another DIR's

	tree := testtar.Tree()
	if err := extractRun(t, t.Context(), testtar.Tar(t, tree), 64<<10, extractCfg(dir)); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir, tree)
	for _, p := range dead {
		assertMissing(t, p)
	}
	for _, p := range []string{live, young, other} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}
}
