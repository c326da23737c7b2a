//go:build unix

package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/rs/zerolog"
)

// TestFileSinkRefusesFIFO: a FIFO at PATH.tmp.state, PATH.tmp.state.new
// or PATH.tmp is nothing the sink wrote: the run is refused at once with
// an error naming it, and nothing is removed or changed. Without
// O_NONBLOCK and the file type check, open(2) of the state blocked until a
// writer came: a download hung forever.
func TestFileSinkRefusesFIFO(t *testing.T) {
	for _, at := range []string{".tmp.state", ".tmp.state.new", ".tmp"} {
		t.Run(at, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.bin")
			data := payload(4 * chunk)
			res := resource(int64(len(data)), `"v1"`)
			if at != ".tmp" {
				r := newRig(t)
				g := r.build(t, failAfter(r, data, []int{0, 1}), "file.sink", fileCfg(out, sinks.ModePositional), 1)
				if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
					t.Fatal(err)
				}
				os.Remove(out + at)
			}
			fifo := out + at
			if err := unix.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)

			var sent []pipeline.Range
			g := newRig(t).build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, sinks.ModePositional), 1)
			done := make(chan error, 1)
			go func() { done <- runWith(t, g, res, new(bytes.Buffer)) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				// Let the stuck open(2) return, then fail.
				if f, oerr := os.OpenFile(fifo, os.O_RDWR, 0); oerr == nil {
					f.Close()
				}
				<-done
				t.Fatalf("the run blocked on the FIFO at %s for 10s", at)
			}
			want := fifo + " exists and is not a regular file (a named pipe)"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run: %v, want %q", err, want)
			}
			if len(sent) != 0 {
				t.Errorf("the refused run fetched %v", sent)
			}
			assertSameSnapshot(t, before, snapshot(t, dir))
			assertMissing(t, out)
		})
	}
}

// TestFileSinkNeverReplacesLinkToDevice: an output that is a symlink to a
// device or a pipe, as /dev/stdout is, is refused in Preflight even with
// overwrite, and the link stays. Without the check the run's rename
// replaced the link with a regular file (it did so to /dev/stdout).
func TestFileSinkNeverReplacesLinkToDevice(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// /proc/self/fd/0 is a link to whatever the test's stdin is (a
	// regular file or /dev/null under go test): /dev/stdout's kind.
	for _, target := range []string{os.DevNull, fifo, "/proc/self/fd/0"} {
		if _, err := os.Stat(target); err != nil {
			continue // no /proc on this system
		}
		out := filepath.Join(dir, "out-"+strings.ReplaceAll(target, "/", "_"))
		if err := os.Symlink(target, out); err != nil {
			t.Fatal(err)
		}
		cfg := fileCfg(out, sinks.ModeSequential)
		cfg.Overwrite = true
		g := newRig(t).build(t, sendPieces(nil, chunk, nil), "file.sink", cfg, 1)
		err := g.Preflight(context.Background(), zerolog.Nop())
		want := "output " + out + " is a link to something that is not a regular file; it is never replaced"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Preflight of a link to %s: %v, want %q", target, err, want)
		}
		if got, err := os.Readlink(out); err != nil || got != target {
			t.Fatalf("the link now reads %q, %v; want it left pointing to %s", got, err, target)
		}
		if _, err := os.Lstat(out + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s.tmp: %v; want nothing created", out, err)
		}
	}
}
