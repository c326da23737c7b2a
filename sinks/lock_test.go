package sinks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// holder is a download that stops halfway, with PATH.tmp open, locked and
// half written, until it is released: the first of two downloads of one
// output.
type holder struct {
	held    chan struct{} // closed once half is on disk
	claim   int64         // bytes on disk then, which its state will claim
	rel     chan struct{}
	release func()     // lets it finish; safe to call more than once
	done    chan error // its run's error
}

func newHolder() *holder {
	h := &holder{held: make(chan struct{}), rel: make(chan struct{}), done: make(chan error, 1)}
	h.release = sync.OnceFunc(func() { close(h.rel) })
	return h
}

// start runs g, whose source is h.source and whose sink writes out, in the
// background against res, and waits until it holds the file.
func (h *holder) start(t *testing.T, g *pipeline.Graph, res *pipeline.Resource, out string) {
	t.Helper()
	go func() { h.done <- runWith(t, g, res, new(bytes.Buffer)) }()
	t.Cleanup(func() {
		h.release() // never leave it waiting, whatever failed
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			t.Error("the first download did not end")
		}
	})
	select {
	case <-h.held:
	case err := <-h.done:
		h.done <- err
		t.Fatalf("the first download ended before it held the file: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the first download did not get halfway in 30s")
	}
	// Its checkpoint (within a second) writes the state; after that it
	// writes nothing while it waits, so a change is the second one's.
	if !waitFor(func() bool { return claimed(out) == h.claim }) {
		t.Fatalf("the first download's state does not claim the %d bytes written", h.claim)
	}
}

// claimed is how many bytes the state beside out claims, or -1.
func claimed(out string) int64 {
	b, err := os.ReadFile(out + ".tmp.state")
	if err != nil {
		return -1
	}
	var st stateFile
	if json.Unmarshal(b, &st) != nil {
		return -1
	}
	var n int64
	for _, r := range st.Ranges {
		n += r[1] - r[0]
	}
	return n
}

// wait releases the download and returns its error.
func (h *holder) wait() error {
	h.release()
	err := <-h.done
	h.done <- err // for the cleanup
	return err
}

// source sends what env.Have says is missing of data, in pieces cut at
// multiples of chunk; after half of them it waits until r's sink wrote
// them, closes h.held, and waits for h.release.
func (h *holder) source(r *rig, data []byte) pipeline.StageFunc {
	return func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		var todo []pipeline.Range
		for _, m := range env.Have.Missing(int64(len(data))) {
			for off := m.Start; off < m.End; {
				end := min((off/chunk+1)*chunk, m.End)
				todo = append(todo, pipeline.Range{Start: off, End: end})
				off = end
			}
		}
		pool := env.Buffers.Pool(chunk)
		var sent int64
		for i, p := range todo {
			if i == len(todo)/2 {
				if !waitFor(func() bool { return r.file.Bytes() == sent }) {
					return errors.New("the sink did not write the first half")
				}
				h.claim = env.Have.Len() + sent
				close(h.held)
				select {
				case <-h.rel:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			c := pool.Get(p.Start)
			c.Data = c.Data[:copy(c.Data, data[p.Start:p.End])]
			if err := edges.Send(ctx, c); err != nil {
				return err
			}
			sent += p.Len()
		}
		return nil
	}
}

// snapshot is what dir holds: each name with its type, mode and, for a
// regular file, its size and sha256.
func snapshot(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			tb.Fatal(err)
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b := readFile(tb, p)
			desc += fmt.Sprintf(" %d %s", len(b), sum(b))
		}
		out[e.Name()] = desc
	}
	return out
}

func assertSameSnapshot(tb testing.TB, before, after map[string]string) {
	tb.Helper()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		tb.Errorf("the refused download changed the directory:\nbefore %v\nafter  %v", before, after)
	}
}

// TestFileSinkTwoRunsOneOutput: a second download of an output that a
// first one is writing, in the same process, is refused with a
// *BusyError before its source runs, and changes nothing: not PATH.tmp,
// not its state. The first then completes with exactly its bytes. Without
// the lock the second took the first's PATH.tmp for stale (no state yet)
// and replaced it, or resumed the same file (with a state), and the first
// renamed a file holding the other's bytes and zeros.
func TestFileSinkTwoRunsOneOutput(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		for _, withState := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/state=%v", mode, withState), func(t *testing.T) {
				dir := t.TempDir()
				out := filepath.Join(dir, "out.bin")
				data := payload(16*chunk + 5)
				res := resource(int64(len(data)), `"v1"`)
				if withState {
					r0 := newRig(t)
					g0 := r0.build(t, failAfter(r0, data, []int{0, 1, 2}), "file.sink", fileCfg(out, mode), 1)
					if err := runWith(t, g0, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
						t.Fatal(err)
					}
					readStateFile(t, out) // it is there
				}

				h, ra := newHolder(), newRig(t)
				h.start(t, ra.build(t, h.source(ra, data), "file.sink", fileCfg(out, mode), 1), res, out)
				before := snapshot(t, dir)

				var ran atomic.Bool
				other := payload(len(data) + 1)[1:] // same size, other bytes
				send := sendPieces(other, chunk, pieces(len(other), chunk, 0))
				srcB := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
					ran.Store(true)
					return send(ctx, env, edges)
				}
				gb := newRig(t).build(t, srcB, "file.sink", fileCfg(out, mode), 1)
				err := runWith(t, gb, res, new(bytes.Buffer))
				assertBusy(t, err, out)
				if ran.Load() {
					t.Error("the refused download's source ran")
				}
				assertSameSnapshot(t, before, snapshot(t, dir))

				if err := h.wait(); err != nil {
					t.Fatalf("first download: %v", err)
				}
				if got := readFile(t, out); sum(got) != sum(data) {
					t.Fatalf("output has %d bytes, sha256 %s; want the first download's %d bytes, sha256 %s", len(got), sum(got), len(data), sum(data))
				}
				assertMissing(t, out+".tmp")
				assertMissing(t, out+".tmp.state")
			})
		}
	}
}

func assertBusy(tb testing.TB, err error, out string) {
	tb.Helper()
	var busy *sinks.BusyError
	if !errors.Is(err, sinks.ErrBusy) || !errors.As(err, &busy) || busy.Path != out+".tmp" {
		tb.Fatalf("second download: %v, want a *BusyError for %s.tmp", err, out)
	}
	if want := out + ".tmp is in use by another download of the same output"; !strings.Contains(err.Error(), want) {
		tb.Errorf("error %q, want it to say %q", err, want)
	}
}

// lockChildEnv, when set, makes TestFileSinkLockChild the second download
// of TestFileSinkLockAcrossProcesses: "mode:path".
const lockChildEnv = "DLFLOW_SINKS_LOCK_CHILD"

// TestFileSinkLockAcrossProcesses: the same, with the second download in
// another process (this test binary, run again).
func TestFileSinkLockAcrossProcesses(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.bin")
			data := payload(16 * chunk)
			res := resource(int64(len(data)), `"v1"`)
			h, ra := newHolder(), newRig(t)
			h.start(t, ra.build(t, h.source(ra, data), "file.sink", fileCfg(out, mode), 1), res, out)
			before := snapshot(t, dir)

			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFileSinkLockChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), lockChildEnv+"="+mode+":"+out)
			stdout, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, stdout)
			}
			want := fmt.Sprintf("child result: busy=true path=%s ran=false", out+".tmp")
			if !strings.Contains(string(stdout), want) {
				t.Fatalf("child output lacks %q:\n%s", want, stdout)
			}
			assertSameSnapshot(t, before, snapshot(t, dir))

			if err := h.wait(); err != nil {
				t.Fatalf("first download: %v", err)
			}
			if got := readFile(t, out); sum(got) != sum(data) {
				t.Fatalf("output sha256 %s, want %s", sum(got), sum(data))
			}
		})
	}
}

// TestFileSinkLockChild is the second download of
// TestFileSinkLockAcrossProcesses; it does nothing unless run by it.
func TestFileSinkLockChild(t *testing.T) {
	arg := os.Getenv(lockChildEnv)
	if arg == "" {
		t.Skip("run by TestFileSinkLockAcrossProcesses")
	}
	mode, out, _ := strings.Cut(arg, ":")
	var ran atomic.Bool
	data := payload(16 * chunk)
	send := sendPieces(data, chunk, pieces(len(data), chunk, 0))
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		ran.Store(true)
		return send(ctx, env, edges)
	}
	g := newRig(t).build(t, src, "file.sink", fileCfg(out, mode), 1)
	err := runWith(t, g, resource(int64(len(data)), `"v1"`), new(bytes.Buffer))
	var busy *sinks.BusyError
	path := ""
	if errors.As(err, &busy) {
		path = busy.Path
	}
	fmt.Printf("child result: busy=%v path=%s ran=%v err=%v\n", errors.Is(err, sinks.ErrBusy), path, ran.Load(), err)
}

// TestFileSinkTmpReplacedIsNotRenamed: a PATH.tmp that another program
// replaced during the download is not renamed to PATH, nor described by a
// state, nor removed: only the file this run wrote (by descriptor) is
// acted on.
func TestFileSinkTmpReplacedIsNotRenamed(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fail=%v", mode, fail), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out.bin")
				data := payload(3*chunk + 7)
				intruder := []byte("another program's file\n")
				r := newRig(t)
				send := sendPieces(data, chunk, pieces(len(data), chunk, 0))
				src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
					if err := send(ctx, env, edges); err != nil {
						return err
					}
					if !waitFor(func() bool { return r.file.Bytes() == int64(len(data)) }) {
						return errors.New("the sink did not write what was sent")
					}
					if err := os.Rename(out+".tmp", out+".moved"); err != nil {
						return err
					}
					if err := os.WriteFile(out+".tmp", intruder, 0o644); err != nil {
						return err
					}
					if fail {
						return errCut
					}
					return nil
				}
				g := r.build(t, src, "file.sink", fileCfg(out, mode), 1)
				err := runWith(t, g, resource(int64(len(data)), `"v1"`), new(bytes.Buffer))
				if fail {
					if !errors.Is(err, errCut) {
						t.Fatalf("Run: %v, want the source's error", err)
					}
				} else if want := out + ".tmp is no longer the file this download wrote"; err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Run: %v, want %q", err, want)
				}
				assertMissing(t, out)
				assertMissing(t, out+".tmp.state")
				if got := readFile(t, out+".tmp"); !bytes.Equal(got, intruder) {
					t.Fatalf("the replacement at .tmp changed to %d bytes", len(got))
				}
				if got := readFile(t, out+".moved"); !bytes.Equal(got, data) {
					t.Fatalf("the file the sink wrote has %d bytes, want the %d sent", len(got), len(data))
				}
			})
		}
	}
}

// TestFileSinkBusyKeepsTheInode: refused runs, several and with several
// workers, leave PATH.tmp the very file the first download holds (a
// snapshot of names and bytes would miss a file removed and made again).
func TestFileSinkBusyKeepsTheInode(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(8 * chunk)
	res := resource(int64(len(data)), `"v1"`)
	h, ra := newHolder(), newRig(t)
	h.start(t, ra.build(t, h.source(ra, data), "file.sink", fileCfg(out, sinks.ModePositional), 1), res, out)
	st1, err := os.Lstat(out + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", fileCfg(out, sinks.ModePositional), 2)
		assertBusy(t, runWith(t, g, res, new(bytes.Buffer)), out)
	}
	st2, err := os.Lstat(out + ".tmp")
	if err != nil || !os.SameFile(st1, st2) || !st2.Mode().IsRegular() {
		t.Fatalf("PATH.tmp is another file after refused runs: %v", err)
	}
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); sum(got) != sum(data) {
		t.Fatal("output differs")
	}
}
