package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dlflow/dlflow/internal/testfs"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// directCfg is the file sink's config with direct I/O forced on or off,
// and the default gather and writes in flight.
func directCfg(path, mode, direct string) *sinks.FileConfig {
	return writesCfg(path, mode, direct, 4)
}

// TestFileSinkDirect writes through O_DIRECT with chunks that are aligned,
// cut at odd sizes, out of order and in unaligned memory, and checks the
// bytes. Where the file system supports direct I/O, it also checks that
// the aligned blocks really bypassed the page cache: mincore finds them not
// resident, while the same file written with direct: never is. direct:
// auto starts with the page cache, or direct for chunks that fill a direct
// write (gather) on their own, and a file shorter than its first window
// never tries the other way.
func TestFileSinkDirect(t *testing.T) {
	const big = 256 << 10
	cases := []struct {
		name         string
		mode, direct string
		chunk, n     int
		skew         int  // the chunk's bytes start this far into its buffer
		uncached     bool // most pages must have bypassed the page cache
		workers      int
		unknownSize  bool // no Content-Length: no preallocation, the file grows
	}{
		{name: "sequential aligned", mode: sinks.ModeSequential, direct: sinks.DirectAlways, chunk: big, n: 4<<20 + 4097, uncached: true},
		{name: "sequential aligned, size unknown", mode: sinks.ModeSequential, direct: sinks.DirectAlways, chunk: big, n: 3<<20 + 100, uncached: true, unknownSize: true},
		{name: "sequential auto, network chunks", mode: sinks.ModeSequential, direct: sinks.DirectAuto, chunk: big, n: 4 << 20},
		{name: "sequential auto, large chunks", mode: sinks.ModeSequential, direct: sinks.DirectAuto, chunk: 1 << 20, n: 6<<20 + 5, uncached: true},
		{name: "sequential odd chunks", mode: sinks.ModeSequential, direct: sinks.DirectAlways, chunk: 100_000, n: 3<<20 + 1},
		{name: "sequential unaligned memory", mode: sinks.ModeSequential, direct: sinks.DirectAlways, chunk: big, n: 1<<20 + 3, skew: 1},
		{name: "positional shuffled", mode: sinks.ModePositional, direct: sinks.DirectAlways, chunk: big, n: 4<<20 + 511, uncached: true, workers: 2},
		{name: "positional odd chunks", mode: sinks.ModePositional, direct: sinks.DirectAlways, chunk: 70_000, n: 2<<20 + 9, workers: 3},
		{name: "positional auto", mode: sinks.ModePositional, direct: sinks.DirectAuto, chunk: big, n: 4 << 20},
		{name: "sequential never", mode: sinks.ModeSequential, direct: sinks.DirectNever, chunk: big, n: 4 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.bin")
			data := payload(tc.n)
			order := pieces(tc.n, tc.chunk, 0)
			if tc.mode == sinks.ModePositional {
				order = pieces(tc.n, tc.chunk, uint64(tc.n))
			}
			g := newRig(t).buildChunked(t, sendSkewed(data, tc.chunk, tc.skew, order), tc.chunk+tc.skew, "file.sink",
				directCfg(out, tc.mode, tc.direct), max(tc.workers, 1))
			size := int64(tc.n)
			if tc.unknownSize {
				size = -1
			}
			if err := run(t, t.Context(), g, size); err != nil {
				t.Fatal(err)
			}
			// Before reading the file back, which brings it into the cache.
			if supportsDirect(dir) {
				resident, pages := residentPages(t, out)
				t.Logf("%d of %d pages in the page cache", resident, pages)
				switch {
				case tc.uncached && resident > 2:
					t.Errorf("%d of %d pages in the page cache, want at most the tail's: the writes did not go direct", resident, pages)
				case tc.direct != sinks.DirectAlways && !tc.uncached && resident < pages*9/10:
					t.Errorf("only %d of %d pages in the page cache for writes through it", resident, pages)
				}
			} else {
				t.Logf("%s has no direct I/O; checking the bytes only", dir)
			}
			if got := readFile(t, out); !bytes.Equal(got, data) {
				t.Fatalf("output has %d bytes, sha256 %s; want %d bytes, sha256 %s", len(got), sum(got), len(data), sum(data))
			}
		})
	}
}

// TestFileSinkDirectWithoutSupport: on a file system without direct I/O
// (tmpfs), direct: always writes through the page cache instead of failing.
func TestFileSinkDirectWithoutSupport(t *testing.T) {
	dir := testfs.Mount(t, "tmpfs", "size=16m")
	if supportsDirect(dir) {
		t.Skipf("%s supports direct I/O here", dir)
	}
	out := filepath.Join(dir, "out.bin")
	data := payload(2<<20 + 5)
	g := newRig(t).buildChunked(t, sendSkewed(data, 256<<10, 0, pieces(len(data), 256<<10, 0)), 256<<10, "file.sink",
		directCfg(out, sinks.ModeSequential, sinks.DirectAlways), 1)
	if err := run(t, t.Context(), g, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatalf("output differs: %d bytes, want %d", len(got), len(data))
	}
}

// TestFileSinkDirectDiskFull fills a small ext4 file system through direct
// writes, four in flight: the run fails with ENOSPC naming PATH.tmp, and in
// sequential mode PATH.tmp is exactly a prefix of the data, whatever the
// short write cut, and the state claims exactly that prefix. Writes in
// flight race for the last free blocks, so a later write may succeed where
// an earlier one failed: its bytes, beyond the failure, are cut off with
// the rest (the log says when a run saw that).
func TestFileSinkDirectDiskFull(t *testing.T) {
	dir := testfs.MountExt4(t, 8<<20)
	if !supportsDirect(dir) {
		t.Skipf("%s has no direct I/O", dir)
	}
	for attempt := range 3 {
		out := filepath.Join(dir, fmt.Sprintf("out%d.bin", attempt))
		data := payload(16 << 20)
		cfg := directCfg(out, sinks.ModeSequential, sinks.DirectAlways)
		cfg.Preallocate = false // the writes, not fallocate, must hit the full disk
		r := newRig(t)
		g := r.buildChunked(t, sendSkewed(data, 256<<10, 0, pieces(len(data), 256<<10, 0)), 256<<10, "file.sink", cfg, 1)
		err := runWith(t, g, resource(int64(len(data)), `"v1"`), new(bytes.Buffer))
		if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), out+".tmp") {
			t.Fatalf("Run: %v, want ENOSPC naming %s.tmp", err, out)
		}
		assertMissing(t, out)
		got := readFile(t, out+".tmp")
		if len(got) == 0 || len(got) >= len(data) || !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf(".tmp has %d bytes, want a non-empty proper prefix of the %d sent", len(got), len(data))
		}
		if st := readStateFile(t, out); len(st.Ranges) != 1 || st.Ranges[0] != [2]int64{0, int64(len(got))} {
			t.Fatalf("state claims %v, want [[0 %d]]", st.Ranges, len(got))
		}
		t.Logf(".tmp kept %d bytes; the run wrote %d", len(got), r.file.Bytes())
		if err := os.Remove(out + ".tmp"); err != nil {
			t.Fatal(err)
		}
		if r.file.Bytes() > int64(len(got)) {
			break // a write beyond the failure succeeded, and was cut off
		}
	}
}

// TestFileSinkGatherBound: gathering queued chunks into writes in flight
// stays within the memory bound, which counts them (run checks the peak).
func TestFileSinkGatherBound(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	const c = 64 << 10
	cfg := directCfg(out, sinks.ModeSequential, sinks.DirectAlways)
	g := newRig(t).buildChunked(t, sendSkewed(payload(4<<20), c, 0, pieces(4<<20, c, 0)), c, "file.sink", cfg, 1)
	for _, s := range g.Stages() {
		if s.Type == "file.sink" && s.HoldsPerReplica != int64(cfg.Writes)*int64(cfg.Gather) {
			t.Fatalf("the sink holds %v in the bound, want %v (%d writes in flight of %v)", pipeline.ByteSize(s.HoldsPerReplica), cfg.Gather*pipeline.ByteSize(cfg.Writes), cfg.Writes, cfg.Gather)
		}
	}
	if err := run(t, t.Context(), g, 4<<20); err != nil {
		t.Fatal(err)
	}
}

// sendSkewed sends the listed chunk-sized pieces of data, each in a pooled
// buffer whose bytes start skew bytes in (so they are misaligned in memory
// for skew > 0).
func sendSkewed(data []byte, chunk, skew int, order []int) pipeline.StageFunc {
	return func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(chunk + skew)
		for _, i := range order {
			off := i * chunk
			c := pool.Get(int64(off))
			n := copy(c.Data[skew:], data[off:min(off+chunk, len(data))])
			c.Data = c.Data[skew : skew+n]
			if err := edges.Send(ctx, c); err != nil {
				return err
			}
		}
		return nil
	}
}

// supportsDirect reports whether the file system at dir takes O_DIRECT.
func supportsDirect(dir string) bool {
	f, err := os.CreateTemp(dir, "direct-probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	f.Close()
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, f.Name(), 0, unix.STATX_DIOALIGN, &st) != nil || st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_offset_align == 0 {
		return false
	}
	d, err := os.OpenFile(f.Name(), os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return false
	}
	d.Close()
	return true
}

// residentPages counts the pages of path that are in the page cache.
func residentPages(tb testing.TB, path string) (resident, pages int) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		tb.Fatalf("stat %s: %v, size %d", path, err, st.Size())
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	// x/sys has no wrapper for mincore(2).
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		tb.Fatalf("mincore %s: %v", path, errno)
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, len(vec)
}

// TestFileSinkDirectWritesFull: a source far faster than the disk (each
// write takes 50 ms more), and a queue of 2 chunks in front of the sink
// (what the graph gives it beside its writes in flight). While a write is
// in flight the next one waits for its chunks to fill gather bytes (8
// chunks here): a disk that takes so many writes a second goes at gather
// bytes a write only if they are full. Without the wait, each write took
// the 3 chunks at hand: 85 writes instead of 32.
func TestFileSinkDirectWritesFull(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	if !supportsDirect(filepath.Dir(out)) {
		t.Skip("the file system does not take O_DIRECT")
	}
	defer sinks.SlowDisk(50 * time.Millisecond)()
	const c, size = 256 << 10, 64 << 20
	data := payload(size)
	r := newRig(t)
	cfg := writesCfg(out, sinks.ModeSequential, sinks.DirectAlways, 3)
	cfg.Gather = 2 << 20
	g := r.buildChunked(t, sendPieces(data, c, pieces(size, c, 0)), c, "file.sink", cfg, 1)
	for _, s := range g.Stages() {
		if s.Type == "file.sink" && s.Queue != 2 {
			t.Fatalf("the sink's queue is %d chunks, want 2", s.Queue)
		}
	}
	if err := run(t, t.Context(), g, size); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatalf("output has %d bytes, sha256 %s; want %d bytes, sha256 %s", len(got), sum(got), len(data), sum(data))
	}
	// 32 full writes of 2 MiB. A write made while none was in flight may
	// be short: the first, and any after the source did not get the CPU
	// for as long as the writes took (-race on a loaded machine).
	full := int64(size / cfg.Gather)
	if n := r.file.DirectWrites(); n > full*3/2 {
		t.Errorf("%d direct writes for %d MiB, want about %d of %v", n, size>>20, full, cfg.Gather)
	}
}
