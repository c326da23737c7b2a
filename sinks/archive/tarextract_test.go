package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/internal/testtar"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/sinks/archive"
)

// extractRun sends data in chunks of chunk bytes into a tar.extract sink
// configured by cfg, after its Preflight, and returns the run's error.
func extractRun(t *testing.T, ctx context.Context, data []byte, chunk int, cfg *archive.TarExtractConfig) error {
	t.Helper()
	g := newRig(t).buildChunked(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), chunk, "tar.extract", cfg, 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		return err
	}
	return run(t, ctx, g, int64(len(data)))
}

func extractCfg(dir string) *archive.TarExtractConfig {
	return &archive.TarExtractConfig{Dir: dir, Fsync: true, Specials: archive.SpecialsFail}
}

// entries of dir's parent besides dir: the temporary directory must be
// gone after any run.
func siblings(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if de.Name() != filepath.Base(dir) {
			names = append(names, de.Name())
		}
	}
	return names
}

// The tree comes out byte for byte, with its symlinks, hard link and
// masked modes, whatever the chunk size, and nothing is left beside it.
func TestTarExtractTree(t *testing.T) {
	tree := testtar.Tree()
	data := testtar.Tar(t, tree)
	for _, chunk := range []int{511, 64 << 10} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if err := extractRun(t, t.Context(), data, chunk, extractCfg(dir)); err != nil {
				t.Fatal(err)
			}
			testtar.Check(t, dir, tree)
			if s := siblings(t, dir); len(s) != 0 {
				t.Fatalf("left beside the directory: %v", s)
			}
		})
	}
}

// A zip archive, told by its bytes, is spooled and unpacked with the same
// rules: the tree comes out, and the spool file is gone.
func TestTarExtractZip(t *testing.T) {
	tree := testtar.ZipEntries(testtar.Tree())
	dir := filepath.Join(t.TempDir(), "out")
	if err := extractRun(t, t.Context(), testtar.Zip(t, tree), 4096, extractCfg(dir)); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir, tree)
	if s := siblings(t, dir); len(s) != 0 {
		t.Fatalf("left beside the directory: %v", s)
	}
	for _, h := range testtar.Hostiles() {
		entries := testtar.ZipEntries(h.Entries)
		if len(entries) < len(h.Entries) || h.Name == "fifo" {
			continue // hard links; a FIFO mode is not written by testtar.Zip
		}
		t.Run(h.Name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "a", "b")
			if err := os.MkdirAll(base, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(base, "out")
			err := extractRun(t, t.Context(), testtar.Zip(t, entries), 4096, extractCfg(dir))
			var me *archive.MemberError
			if !errors.As(err, &me) || me.Member != h.Member || !errors.Is(err, archive.ErrUnsafeMember) {
				t.Fatalf("err = %v; want an unsafe member error naming %q", err, h.Member)
			}
			assertMissing(t, dir)
			if s := siblings(t, dir); len(s) != 0 {
				t.Fatalf("left beside the directory: %v", s)
			}
			testtar.Outside(t, base)
		})
	}
}

// Each hostile archive fails with an error naming the member, plants
// nothing outside, and leaves neither DIR nor its temporary sibling.
func TestTarExtractHostile(t *testing.T) {
	for _, h := range testtar.Hostiles() {
		t.Run(h.Name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "a", "b")
			if err := os.MkdirAll(base, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(base, "out")
			err := extractRun(t, t.Context(), testtar.Tar(t, h.Entries), 4096, extractCfg(dir))
			var me *archive.MemberError
			if !errors.As(err, &me) || me.Member != h.Member || !errors.Is(err, archive.ErrUnsafeMember) {
				t.Fatalf("err = %v; want an unsafe member error naming %q", err, h.Member)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("archive member %q: unsafe archive member: ", h.Member)) {
				t.Fatalf("err = %q, want it to name the member", err)
			}
			assertMissing(t, dir)
			if s := siblings(t, dir); len(s) != 0 {
				t.Fatalf("left beside the directory: %v", s)
			}
			testtar.Outside(t, base)
		})
	}
}

// With specials: skip, a device is left out with a warning and the rest
// extracted.
func TestTarExtractSkipSpecials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	cfg := extractCfg(dir)
	cfg.Specials = archive.SpecialsSkip
	entries := []testtar.Entry{{Name: "ok.txt", Mode: 0o644, Body: []byte("fine\n")}, {Name: "null", Type: tar.TypeChar, Mode: 0o666}}
	if err := extractRun(t, t.Context(), testtar.Tar(t, entries), 4096, cfg); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir, entries[:1])
}

// An existing DIR is refused before any byte is read, and kept; with
// overwrite it is replaced, at the end only.
func TestTarExtractExisting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	tree := testtar.Tree()
	data := testtar.Tar(t, tree)
	err := extractRun(t, t.Context(), data, 4096, extractCfg(dir))
	if !errors.Is(err, sinks.ErrOutputExists) {
		t.Fatalf("err = %v, want ErrOutputExists", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old")); err != nil {
		t.Fatalf("the existing directory was touched: %v", err)
	}
	// A failed overwrite keeps the old directory.
	cfg := extractCfg(dir)
	cfg.Overwrite = true
	if err := extractRun(t, t.Context(), data[:len(data)/2], 4096, cfg); err == nil {
		t.Fatal("a truncated archive extracted")
	}
	if _, err := os.Stat(filepath.Join(dir, "old")); err != nil {
		t.Fatalf("a failed overwrite removed the old directory: %v", err)
	}
	if err := extractRun(t, t.Context(), data, 4096, cfg); err != nil {
		t.Fatal(err)
	}
	testtar.Check(t, dir, tree)
	if s := siblings(t, dir); len(s) != 0 {
		t.Fatalf("left beside the directory: %v", s)
	}
}

// A tar cut short fails naming the last member, and leaves nothing.
func TestTarExtractTruncated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	data := testtar.Tar(t, testtar.Tree())
	err := extractRun(t, t.Context(), data[:len(data)/2], 4096, extractCfg(dir))
	if err == nil || !strings.Contains(err.Error(), `archive member "top/data/nested/deep/big.bin"`) {
		t.Fatalf("err = %v, want the cut member named", err)
	}
	assertMissing(t, dir)
	if s := siblings(t, dir); len(s) != 0 {
		t.Fatalf("left beside the directory: %v", s)
	}
	err = extractRun(t, t.Context(), []byte(strings.Repeat("not a tar ", 100)), 4096, extractCfg(dir))
	if err == nil || !strings.Contains(err.Error(), "not a tar archive") {
		t.Fatalf("err = %v, want not a tar archive", err)
	}
}

// max_size stops an archive whose files add up to more.
func TestTarExtractMaxSize(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	cfg := extractCfg(dir)
	cfg.MaxSize = 1 << 20
	err := extractRun(t, t.Context(), testtar.Tar(t, testtar.Tree()), 4096, cfg)
	if err == nil || !strings.Contains(err.Error(), "more than max_size (1MiB)") {
		t.Fatalf("err = %v, want max_size", err)
	}
	assertMissing(t, dir)
}

// Cancelled mid-archive, the run ends, every buffer comes back (run
// checks), and the temporary directory is removed.
func TestTarExtractCancel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	data := testtar.Tar(t, testtar.Tree())
	ctx, cancel := context.WithCancel(t.Context())
	sent := 0
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(4096)
		for off := 0; off < len(data)/2; off += 4096 {
			c := pool.Get(int64(off))
			c.Data = c.Data[:copy(c.Data, data[off:])]
			if err := edges.Send(ctx, c); err != nil {
				return err
			}
			sent++
		}
		cancel() // half the archive is sent: cancel, and wait for it
		<-ctx.Done()
		return ctx.Err()
	}
	g := newRig(t).buildChunked(t, src, 4096, "tar.extract", extractCfg(dir), 1)
	if err := run(t, ctx, g, int64(len(data))); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	if sent == 0 {
		t.Fatal("nothing sent")
	}
	assertMissing(t, dir)
	if s := siblings(t, dir); len(s) != 0 {
		t.Fatalf("left beside the directory: %v", s)
	}
}

// A parent that does not exist or DIR that is a file fails Preflight.
func TestTarExtractPreflight(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir       string
		overwrite bool
		want      string
	}{
		{filepath.Join(tmp, "nope", "out"), false, "output directory"},
		{file, false, "exists"},
		{file, true, "is not a directory; it is not replaced"},
	} {
		cfg := extractCfg(tc.dir)
		cfg.Overwrite = tc.overwrite
		g := newRig(t).build(t, sendPieces(nil, 1, nil), "tar.extract", cfg, 1)
		if err := g.Preflight(context.Background(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Preflight = %v, want %q", tc.dir, err, tc.want)
		}
	}
}

// A directory that names no new directory is refused when the graph is
// built.
func TestTarExtractDirName(t *testing.T) {
	for _, dir := range []string{".", "..", "/", "a/.."} {
		_, err := pipeline.Build(newRig(t).reg, []pipeline.Node{
			{ID: "src", Type: "test.source", Config: &srcConfig{Run: sendPieces(nil, 1, nil)}},
			{ID: "out", Type: "tar.extract", Inputs: []string{"src"}, Config: extractCfg(dir)},
		})
		if err == nil || !strings.Contains(err.Error(), "names no new directory") {
			t.Errorf("dir %q: %v", dir, err)
		}
	}
}

// ExampleTarExtract unpacks a tar stream into a directory that appears
// only once the whole archive is in.
func ExampleTarExtract() {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "hello/world.txt", Mode: 0o644, Size: 3})
	_, _ = tw.Write([]byte("hi\n"))
	_ = tw.Close()
	data := buf.Bytes()
	reg := pipeline.NewRegistry()
	_ = archive.Register(reg)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "archive.source", Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				c := env.Buffers.Pool(len(data)).Get(0)
				copy(c.Data, data)
				return edges.Send(ctx, c)
			}), nil
		},
	})
	parent, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(parent)
	dir := filepath.Join(parent, "out")
	g, _ := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "archive.source"},
		{ID: "unpack", Type: "tar.extract", Inputs: []string{"src"}, Config: &archive.TarExtractConfig{Dir: dir, Fsync: true, Specials: archive.SpecialsFail}},
	})
	err := g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: int64(len(data))}, Log: zerolog.Nop()})
	b, _ := os.ReadFile(filepath.Join(dir, "hello", "world.txt"))
	fmt.Printf("run: %v; hello/world.txt: %s", err, b)
	// Output:
	// run: <nil>; hello/world.txt: hi
}
