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

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/rs/zerolog"
)

// TestFileSinkLongNames: an output name of 255-MaxSuffix bytes works,
// companion files included (a failed run writes PATH.tmp.state through
// PATH.tmp.state.new); one byte more is refused by Preflight, and by
// Resume without Preflight, before any I/O, with an error that says why.
// Without the check every run of a 242 to 255-byte name failed with "file
// name too long" on the state, after fetching.
func TestFileSinkLongNames(t *testing.T) {
	if sinks.MaxSuffix != len(".tmp.state.new") {
		t.Fatalf("MaxSuffix = %d, want len(\".tmp.state.new\")", sinks.MaxSuffix)
	}
	data := payload(3 * chunk)
	res := resource(int64(len(data)), `"v1"`)

	dir := t.TempDir()
	out := filepath.Join(dir, strings.Repeat("n", 255-sinks.MaxSuffix))
	r := newRig(t)
	g := r.build(t, failAfter(r, data, []int{0}), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := g.Preflight(context.Background(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatalf("Run: %v, want the source's error", err)
	}
	if st := readStateFile(t, out); len(st.Ranges) != 1 {
		t.Fatalf("state ranges %v, want the one written", st.Ranges)
	}
	var sent []pipeline.Range
	g = newRig(t).build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatal("output differs")
	}

	dir = t.TempDir()
	for _, n := range []int{256 - sinks.MaxSuffix, 255} {
		out := filepath.Join(dir, strings.Repeat("l", n))
		g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
		want := fmt.Sprintf("output name is too long: %d bytes, and %d with the \".tmp.state.new\" the sink adds for its partial download, past the limit of 255 bytes for a file name; use a name of at most 241 bytes", n, n+14)
		if err := g.Preflight(context.Background(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Preflight of a %d-byte name: %v, want %q", n, err, want)
		}
		if err := runWith(t, g, res, new(bytes.Buffer)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run of a %d-byte name: %v, want %q", n, err, want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("a refused %d-byte name left %v", n, ents)
		}
	}
}

// failStartConfig configures test.failstart, a source whose Start fails.
type failStartConfig struct{}

var errStart = errors.New("start failed")

var failStartDef = pipeline.Def[failStartConfig]{
	Type:     "test.failstart",
	Summary:  "a source whose Start fails",
	Produces: pipeline.OrderedBytes,
	New:      func(failStartConfig) (pipeline.Stage, error) { return failStart{}, nil },
	Memory:   func(failStartConfig) pipeline.Memory { return pipeline.Memory{} },
}

type failStart struct{}

func (failStart) Start(context.Context, *pipeline.Env) error { return errStart }
func (failStart) Run(context.Context, *pipeline.Env, pipeline.IO) error {
	return errors.New("Run after a failed Start")
}

// TestFileSinkNothingReceivedNothingKept: a run that fails before any
// byte is written, whether another stage's Start fails (after the sink's
// Resume made PATH.tmp) or the first request does, leaves neither PATH.tmp
// nor a state when this run made PATH.tmp, or emptied a stale one to
// start over; a resumed PATH.tmp is kept as it was, with its state.
func TestFileSinkNothingReceivedNothingKept(t *testing.T) {
	data := payload(4 * chunk)
	res := resource(int64(len(data)), `"v1"`)
	failFirst := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error { return errCut }
	for _, tc := range []struct {
		name   string
		before string // "" nothing, "stale": a PATH.tmp with an unreadable state, "partial": a resumable one
		start  bool   // a Start fails, rather than the first request
		kept   bool
	}{
		{"new/start fails", "", true, false},
		{"new/first request fails", "", false, false},
		{"stale/start fails", "stale", true, false},
		{"stale/first request fails", "stale", false, false},
		{"resumed/start fails", "partial", true, true},
		{"resumed/first request fails", "partial", false, true},
	} {
		for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				dir := t.TempDir()
				out := filepath.Join(dir, "out.bin")
				switch tc.before {
				case "stale":
					if err := os.WriteFile(out+".tmp", []byte("stale"), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(out+".tmp.state", []byte("{"), 0o600); err != nil {
						t.Fatal(err)
					}
				case "partial":
					r := newRig(t)
					g := r.build(t, failAfter(r, data, []int{0, 1}), "file.sink", fileCfg(out, mode), 1)
					if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
						t.Fatal(err)
					}
				}
				before := snapshot(t, dir)
				r := newRig(t)
				var g *pipeline.Graph
				want := errCut
				if tc.start {
					if err := pipeline.Register(r.reg, failStartDef); err != nil {
						t.Fatal(err)
					}
					var err error
					g, err = pipeline.Build(r.reg, []pipeline.Node{
						{ID: "src", Type: "test.failstart", Config: &failStartConfig{}},
						{ID: "out", Type: "file.sink", Inputs: []string{"src"}, Config: fileCfg(out, mode)},
					})
					if err != nil {
						t.Fatal(err)
					}
					want = errStart
				} else {
					g = r.build(t, failFirst, "file.sink", fileCfg(out, mode), 1)
				}
				if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, want) {
					t.Fatalf("Run: %v, want %v", err, want)
				}
				if tc.kept {
					assertSameSnapshot(t, before, snapshot(t, dir))
					return
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("the failed run left %v", ents)
				}
			})
		}
	}
}

// TestFileSinkStartsOverInPlace: starting over empties the stale PATH.tmp
// itself, the file Resume locked, rather than removing it and making a new
// one that another download could lock in between.
func TestFileSinkStartsOverInPlace(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := os.WriteFile(out+".tmp", bytes.Repeat([]byte("stale"), 50000), 0o644); err != nil {
		t.Fatal(err)
	}
	// Held open, so that its inode number cannot be reused by a new file.
	staleFile, err := os.Open(out + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	defer staleFile.Close()
	data := payload(3 * chunk)
	r := newRig(t)
	cfg := fileCfg(out, sinks.ModeSequential)
	cfg.Overwrite = true // a PATH.tmp with no state is replaced only then
	g := r.build(t, failAfter(r, data, []int{0}), "file.sink", cfg, 1)
	var logs bytes.Buffer
	if err := runWith(t, g, resource(int64(len(data)), `"v1"`), &logs); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	stale, err := staleFile.Stat()
	if err != nil {
		t.Fatal(err)
	}
	now, err := os.Lstat(out + ".tmp")
	if err != nil || !os.SameFile(stale, now) {
		t.Fatalf("PATH.tmp is not the stale file emptied in place (%v)", err)
	}
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, data[:chunk]) {
		t.Fatalf("PATH.tmp has %d bytes, want the %d written", len(got), chunk)
	}
	if !logged(&logs, "warn", "the partial download has no resume state beside it, so its bytes cannot be trusted; starting over") {
		t.Errorf("starting over is not logged:\n%s", logs.String())
	}
}
