package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

const chunk = 64 << 10

func TestFileSinkWritesExactBytes(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		for _, n := range []int{0, 1, 1<<20 + 17} {
			for _, sizeKnown := range []bool{true, false} {
				if mode == sinks.ModePositional && !sizeKnown {
					continue // a positional download always knows its size
				}
				t.Run(fmt.Sprintf("%s/%d/known=%v", mode, n, sizeKnown), func(t *testing.T) {
					data := payload(n)
					out := filepath.Join(t.TempDir(), "out.bin")
					order, workers := pieces(n, chunk, 0), 1
					if mode == sinks.ModePositional {
						order, workers = pieces(n, chunk, uint64(n)+1), 4
					}
					r := newRig(t)
					g := r.build(t, sendPieces(data, chunk, order), "file.sink", fileCfg(out, mode), workers)
					if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
						t.Fatal(err)
					}
					size := int64(n)
					if !sizeKnown {
						size = -1
					}
					if err := run(t, t.Context(), g, size); err != nil {
						t.Fatal(err)
					}
					got := readFile(t, out)
					if len(got) != n || sum(got) != sum(data) {
						t.Fatalf("output has %d bytes, sha256 %s; want %d bytes, sha256 %s", len(got), sum(got), n, sum(data))
					}
					if r.file.Bytes() != int64(n) {
						t.Errorf("Bytes() = %d, want %d", r.file.Bytes(), n)
					}
					assertMissing(t, out+".tmp")
					if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o644&^umask() {
						t.Errorf("output mode: %v %v", st.Mode(), err)
					}
				})
			}
		}
	}
}

func umask() fs.FileMode {
	dir, err := os.MkdirTemp("", "umask")
	if err != nil {
		return 0
	}
	defer os.RemoveAll(dir)
	f, err := os.OpenFile(filepath.Join(dir, "f"), os.O_CREATE|os.O_WRONLY, 0o777)
	if err != nil {
		return 0
	}
	defer f.Close()
	st, _ := f.Stat()
	return 0o777 &^ st.Mode().Perm()
}

func TestFileSinkFsyncAndPreallocateOff(t *testing.T) {
	data := payload(3*chunk + 5)
	out := filepath.Join(t.TempDir(), "out.bin")
	cfg := &sinks.FileConfig{Path: out, Mode: sinks.ModePositional}
	g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 7)), "file.sink", cfg, 2)
	if err := run(t, t.Context(), g, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatalf("output differs: %d bytes, want %d", len(got), len(data))
	}
}

func TestFileSinkRefusesExistingOutput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	old := []byte("precious data\n")
	if err := os.WriteFile(out, old, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	g := r.build(t, sendPieces(payload(100), chunk, pieces(100, chunk, 0)), "file.sink", fileCfg(out, sinks.ModeSequential), 1)

	err := g.Preflight(context.Background(), zerolog.Nop())
	if !errors.Is(err, sinks.ErrOutputExists) {
		t.Fatalf("Preflight: %v, want ErrOutputExists", err)
	}
	var exists *sinks.OutputExistsError
	if !errors.As(err, &exists) || exists.Path != out {
		t.Errorf("Preflight: %v, want an OutputExistsError naming %s", err, out)
	}
	if want := "output " + out + " exists"; !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Preflight: %q, want it to say %q", err, want)
	}

	// Without Preflight, Start refuses before any byte is fetched.
	if err := run(t, t.Context(), g, 100); !errors.Is(err, sinks.ErrOutputExists) {
		t.Fatalf("Run: %v, want ErrOutputExists", err)
	}
	if got := readFile(t, out); !bytes.Equal(got, old) {
		t.Fatalf("existing output changed to %q", got)
	}
	assertMissing(t, out+".tmp")
}

func TestFileSinkOverwrite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := os.WriteFile(out, []byte("old content that is longer than the new one"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := payload(chunk + 3)
	cfg := fileCfg(out, sinks.ModeSequential)
	cfg.Overwrite = true
	g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", cfg, 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	// Twice: a graph can be run again, and the second run replaces the first
	// run's output.
	for range 2 {
		if err := run(t, t.Context(), g, int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, out); !bytes.Equal(got, data) {
			t.Fatalf("output not replaced: %d bytes, want %d", len(got), len(data))
		}
	}
}

func TestFileSinkNeverReplacesOutputThatAppearsDuringRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	intruder := []byte("written by someone else meanwhile\n")
	data := payload(2 * chunk)
	send := sendPieces(data, chunk, pieces(len(data), chunk, 0))
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		if err := os.WriteFile(out, intruder, 0o644); err != nil {
			return err
		}
		return send(ctx, env, edges)
	}
	g := newRig(t).build(t, src, "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if err := run(t, t.Context(), g, int64(len(data))); !errors.Is(err, sinks.ErrOutputExists) {
		t.Fatalf("Run: %v, want ErrOutputExists", err)
	}
	if got := readFile(t, out); !bytes.Equal(got, intruder) {
		t.Fatalf("output replaced with %d bytes", len(got))
	}
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, data) {
		t.Fatalf(".tmp has %d bytes, want the complete %d", len(got), len(data))
	}
}

func TestFileSinkRefusesSymlinkTmp(t *testing.T) {
	for _, dangling := range []bool{false, true} {
		t.Run(fmt.Sprintf("dangling=%v", dangling), func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.bin")
			target := filepath.Join(t.TempDir(), "secret")
			secret := []byte("do not touch\n")
			if !dangling {
				if err := os.WriteFile(target, secret, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(target, out+".tmp"); err != nil {
				t.Fatal(err)
			}
			g := newRig(t).build(t, sendPieces(payload(10), chunk, pieces(10, chunk, 0)), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
			if err := g.Preflight(context.Background(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("Preflight: %v, want a symlink error", err)
			}
			if err := run(t, t.Context(), g, 10); err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("Run: %v, want a symlink error", err)
			}
			if st, err := os.Lstat(out + ".tmp"); err != nil || st.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("the symlink is gone or changed: %v %v", st, err)
			}
			if dangling {
				assertMissing(t, target)
			} else if got := readFile(t, target); !bytes.Equal(got, secret) {
				t.Errorf("symlink target changed to %q", got)
			}
			assertMissing(t, out)
		})
	}
}

func TestFileSinkReplacesStaleTmp(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := os.WriteFile(out+".tmp", bytes.Repeat([]byte("stale"), 50000), 0o644); err != nil {
		t.Fatal(err)
	}
	data := payload(chunk + 1)
	cfg := fileCfg(out, sinks.ModeSequential)
	cfg.Overwrite = true // a PATH.tmp with no state is replaced only then
	g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", cfg, 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if err := run(t, t.Context(), g, -1); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatalf("output has %d bytes, want %d", len(got), len(data))
	}
	assertMissing(t, out+".tmp")
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(cond func() bool) bool {
	for range 5000 {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

func TestFileSinkSourceFailsMidway(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			data := payload(10*chunk + 9)
			const sent = 3
			r := newRig(t)
			errReset := errors.New("connection reset by peer")
			send := sendPieces(data, chunk, pieces(sent*chunk, chunk, 0))
			src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				if err := send(ctx, env, edges); err != nil {
					return err
				}
				// Fail only once the sink has written what was sent, so the
				// .tmp's content is known.
				if !waitFor(func() bool { return r.file.Bytes() == sent*chunk }) {
					return errors.New("sink did not write what was sent")
				}
				return errReset
			}
			g := r.build(t, src, "file.sink", fileCfg(out, mode), 1)
			if err := run(t, t.Context(), g, int64(len(data))); !errors.Is(err, errReset) {
				t.Fatalf("Run: %v, want the source's error", err)
			}
			assertMissing(t, out)
			got := readFile(t, out+".tmp")
			if mode == sinks.ModeSequential && len(got) != sent*chunk {
				t.Fatalf(".tmp has %d bytes, want exactly the %d received", len(got), sent*chunk)
			}
			if len(got) < sent*chunk || !bytes.Equal(got[:sent*chunk], data[:sent*chunk]) {
				t.Fatalf(".tmp does not start with the %d bytes received", sent*chunk)
			}
		})
	}
}

func TestFileSinkIncomplete(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			data := payload(2*chunk + 50)
			g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", fileCfg(out, mode), 1)
			err := run(t, t.Context(), g, int64(len(data))+100)
			want := fmt.Sprintf("incomplete: wrote %d of %d bytes", len(data), len(data)+100)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run: %v, want %q", err, want)
			}
			assertMissing(t, out)
			if got := readFile(t, out+".tmp"); !bytes.Equal(got[:len(data)], data) {
				t.Fatal(".tmp does not hold the bytes received")
			}
		})
	}
}

func TestFileSinkRejectsOutOfOrderChunk(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(4 * chunk)
	g := newRig(t).build(t, sendPieces(data, chunk, []int{0, 2, 1, 3}), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	err := run(t, t.Context(), g, int64(len(data)))
	if err == nil || !strings.Contains(err.Error(), "out-of-order") {
		t.Fatalf("Run: %v, want an out-of-order error", err)
	}
	assertMissing(t, out)
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, data[:chunk]) {
		t.Fatalf(".tmp has %d bytes, want the %d in order", len(got), chunk)
	}
}

func TestFileSinkRejectsChunkPastSize(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(2 * chunk)
	g := newRig(t).build(t, sendPieces(data, chunk, []int{1, 0}), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	err := run(t, t.Context(), g, chunk+10)
	if err == nil || !strings.Contains(err.Error(), "past the resource size") {
		t.Fatalf("Run: %v, want a past-the-size error", err)
	}
	assertMissing(t, out)
}

// Build refuses a second worker in sequential mode, naming the key and the
// way out, before anything is created.
func TestFileSinkSequentialTakesOneWorker(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	r := newRig(t)
	_, err := pipeline.Build(r.reg, []pipeline.Node{
		{ID: "src", Type: "test.source", Config: &srcConfig{Run: sendPieces(payload(chunk), chunk, []int{0})}},
		{ID: "out", Type: "file.sink", Inputs: []string{"src"}, Workers: 2, Config: fileCfg(out, sinks.ModeSequential)},
	})
	var we *pipeline.WiringError
	if !errors.As(err, &we) || we.Key != "workers" || !strings.Contains(err.Error(), "set mode: positional") {
		t.Fatalf("Build: %v, want a wiring error about workers", err)
	}
	assertMissing(t, out)
	assertMissing(t, out+".tmp")
}

func TestFileSinkCancel(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			data := payload(8 * chunk)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			send := sendPieces(data, chunk, pieces(4*chunk, chunk, 0))
			src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				if err := send(ctx, env, edges); err != nil {
					return err
				}
				cancel()
				<-ctx.Done()
				return ctx.Err()
			}
			workers := 1
			if mode == sinks.ModePositional {
				workers = 2
			}
			g := newRig(t).build(t, src, "file.sink", fileCfg(out, mode), workers)
			if err := run(t, ctx, g, int64(len(data))); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v, want context.Canceled", err)
			}
			assertMissing(t, out)
			if _, err := os.Stat(out + ".tmp"); err != nil {
				t.Fatalf("no .tmp kept: %v", err)
			}
		})
	}
}

func TestFileSinkPreflightMissingDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "no", "such", "dir", "out.bin")
	g := newRig(t).build(t, sendPieces(nil, chunk, nil), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	err := g.Preflight(context.Background(), zerolog.Nop())
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Dir(out)) {
		t.Fatalf("Preflight: %v, want a not-exist error naming the directory", err)
	}
}

func TestFileSinkPreflightReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permission bits do not stop root from writing (the missing-directory test covers a directory that cannot be written)")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	out := filepath.Join(dir, "out.bin")
	g := newRig(t).build(t, sendPieces(nil, chunk, nil), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	err := g.Preflight(context.Background(), zerolog.Nop())
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("Preflight: %v, want a not-writable error", err)
	}
}

// TestFileSinkPreflightProbesOnce: a Preflight that finds PATH.tmp (an
// earlier run's) checks the directory with a probe file of its own; for
// outputs in one directory, checked one after the other as a batch does,
// that is one probe file, not one each.
func TestFileSinkPreflightProbesOnce(t *testing.T) {
	probes, restore := sinks.CountProbes()
	defer restore()
	dir, other := t.TempDir(), t.TempDir()
	for i, d := range []string{dir, dir, dir, other} {
		out := filepath.Join(d, fmt.Sprintf("out%d.bin", i))
		if err := os.WriteFile(out+".tmp", []byte("earlier"), 0o644); err != nil {
			t.Fatal(err)
		}
		g := newRig(t).build(t, sendPieces(nil, chunk, nil), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
		if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
			t.Fatalf("Preflight %s: %v", out, err)
		}
		g.Release(zerolog.Nop())
		if got, err := os.ReadFile(out + ".tmp"); err != nil || string(got) != "earlier" {
			t.Fatalf("%s.tmp: %q, %v; want the earlier run's left alone", out, got, err)
		}
	}
	if got, gotOther := probes(dir), probes(other); got != 1 || gotOther != 1 {
		t.Errorf("%d probe files for three outputs in one directory and %d in another, want 1 and 1", got, gotOther)
	}
}

// TestFileSinkPreflightReserves: Preflight makes PATH.tmp, empty and
// locked (another download of the output is busy); the run of another
// graph for the same output takes it over and completes; Release then
// has nothing to do. Without a run, Release removes it.
func TestFileSinkPreflightReserves(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	data := payload(3*chunk + 5)
	pre := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := pre.Preflight(context.Background(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out + ".tmp"); err != nil || fi.Size() != 0 {
		t.Fatalf("after Preflight: %v, %v; want an empty PATH.tmp", fi, err)
	}
	// Another process's download of the same output: it finds the lock.
	// (A second open file description in this process stands for it.)
	other := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", fileCfg(filepath.Join(dir, "out.bin"), sinks.ModeSequential), 1)
	sinks.HideReservations(func() {
		var busy *sinks.BusyError
		if err := run(t, t.Context(), other, int64(len(data))); !errors.As(err, &busy) {
			t.Errorf("a second download while the first holds PATH.tmp: %v, want a BusyError", err)
		}
	})
	g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := run(t, t.Context(), g, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	pre.Release(zerolog.Nop())
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("output: %d bytes, %v; want the %d sent", len(got), err, len(data))
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Errorf("directory holds %v, want the output alone", names)
	}

	// No run: Release removes the empty file it made.
	out2 := filepath.Join(dir, "never.bin")
	pre = newRig(t).build(t, sendPieces(nil, chunk, nil), "file.sink", fileCfg(out2, sinks.ModeSequential), 1)
	if err := pre.Preflight(context.Background(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	pre.Release(zerolog.Nop())
	if _, err := os.Lstat(out2 + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Release without a run: %v, want no PATH.tmp", err)
	}
}

func TestFileSinkPreflightOutputIsDir(t *testing.T) {
	out := t.TempDir()
	cfg := fileCfg(out, sinks.ModeSequential)
	cfg.Overwrite = true
	g := newRig(t).build(t, sendPieces(nil, chunk, nil), "file.sink", cfg, 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("Preflight: %v, want an is-a-directory error", err)
	}
}

// TestFileSinkPreflightLeavesNothing: Preflight and Release leave nothing
// in the directory, probe file included.
func TestFileSinkPreflightLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	g := newRig(t).build(t, sendPieces(nil, chunk, nil), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	g.Release(zerolog.Nop())
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Preflight and Release left %v", ents)
	}
}

func TestFileConfigValidation(t *testing.T) {
	r := newRig(t)
	src := &srcConfig{Run: sendPieces(nil, chunk, nil)}
	for _, tc := range []struct {
		name    string
		cfg     *sinks.FileConfig
		workers int // of the source; more than 1 loses the order
		want    string
	}{
		{"empty path", &sinks.FileConfig{Mode: sinks.ModeSequential}, 1, "path is required (set the top-level output)"},
		{"bad mode", &sinks.FileConfig{Path: "x", Mode: "random"}, 1, `mode must be "sequential" or "positional", got "random"`},
		{"unordered into sequential", &sinks.FileConfig{Path: "x", Mode: sinks.ModeSequential}, 2, "reorder"},
		{"unordered into positional", &sinks.FileConfig{Path: "x", Mode: sinks.ModePositional}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pipeline.Build(r.reg, []pipeline.Node{
				{ID: "src", Type: "test.source", Workers: tc.workers, Config: src},
				{ID: "out", Type: "file.sink", Inputs: []string{"src"}, Config: tc.cfg},
			})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFileSinkDefaults(t *testing.T) {
	cfg, ok := newRig(t).reg.NewConfig("file.sink")
	if !ok {
		t.Fatal("file.sink not registered")
	}
	got := *cfg.(*sinks.FileConfig)
	want := sinks.FileConfig{Mode: sinks.ModeSequential, Fsync: true, Preallocate: true, Resume: true, Direct: sinks.DirectAuto, Gather: 1 << 20, Writes: 3}
	if got != want {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
}

// ExampleFileSink writes a small download to out.txt through the file sink.
func ExampleFileSink() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "out.txt")

	reg := pipeline.NewRegistry()
	_ = sinks.Register(reg)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "hello.source",
		Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				c := env.Buffers.Pool(64).Get(0)
				c.Data = c.Data[:copy(c.Data, "hello, world\n")]
				return edges.Send(ctx, c)
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "hello.source"},
		{ID: "write", Type: "file.sink", Inputs: []string{"src"},
			Config: &sinks.FileConfig{Path: out, Mode: sinks.ModeSequential, Fsync: true}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		fmt.Println(err)
		return
	}
	err = g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 13}, Log: zerolog.Nop()})
	fmt.Println("run:", err)
	b, _ := os.ReadFile(out)
	fmt.Printf("%s", b)
	_, err = os.Stat(out + ".tmp")
	fmt.Println(".tmp left:", err == nil)

	// A second run refuses to replace the output.
	fmt.Println(g.Preflight(context.Background(), zerolog.Nop()) != nil)
	// Output:
	// run: <nil>
	// hello, world
	// .tmp left: false
	// true
}

func BenchmarkFileSinkSequential(b *testing.B) {
	const total, piece = 256 << 20, 256 << 10
	data := payload(piece)
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(piece)
		for off := 0; off < total; off += piece {
			c := pool.Get(int64(off))
			copy(c.Data, data)
			if err := edges.Send(ctx, c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			out := filepath.Join(b.TempDir(), "out.bin")
			cfg := &sinks.FileConfig{Path: out, Mode: sinks.ModeSequential, Fsync: fsync, Preallocate: true}
			g := newRig(b).build(b, src, "file.sink", cfg, 1)
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				if err := run(b, b.Context(), g, total); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.Remove(out); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// TestFileSinkKeepsForeignTmp: a PATH.tmp that holds bytes and has no
// state beside it is not dlflow's: without Overwrite the run fails with a
// *ForeignTmpError naming it, before any byte is fetched, and the file
// keeps its bytes. An empty one is taken.
func TestFileSinkKeepsForeignTmp(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	mine := []byte("the user's own file")
	if err := os.WriteFile(out+".tmp", mine, 0o644); err != nil {
		t.Fatal(err)
	}
	data := payload(chunk + 1)
	var sent []pipeline.Range
	g := newRig(t).build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	err := runWith(t, g, resource(int64(len(data)), `"v1"`), new(bytes.Buffer))
	var fe *sinks.ForeignTmpError
	if !errors.As(err, &fe) || fe.Path != out+".tmp" || !errors.Is(err, sinks.ErrForeignTmp) {
		t.Fatalf("Run: %v, want a ForeignTmpError for %s", err, out+".tmp")
	}
	if len(sent) != 0 {
		t.Errorf("sent %v for a refused run", sent)
	}
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, mine) {
		t.Fatalf("PATH.tmp now holds %q", got)
	}
	assertMissing(t, out)
	assertMissing(t, out+".tmp.state")

	if err := os.Truncate(out+".tmp", 0); err != nil {
		t.Fatal(err)
	}
	g = newRig(t).build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	if err := runWith(t, g, resource(int64(len(data)), `"v1"`), new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatal("output differs from the data")
	}
}
