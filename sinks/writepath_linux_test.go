package sinks_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dlflow/dlflow/sinks"
)

// TestFileSinkAutoSwitchKeepsBytes: direct: auto changes the way it
// writes mid-stream, here after every window (the chooser is tuned so that
// every window holds the download up and every trial wins), and the bytes
// are exact whichever way each part went, in order and shuffled, in
// aligned and odd chunks. Where the file system has direct I/O, both ways
// wrote part of the file.
func TestFileSinkAutoSwitchKeepsBytes(t *testing.T) {
	defer sinks.TuneChooser(256<<10, 256<<10, 0, true)()
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		for _, chunk := range []int{64 << 10, 100_000} {
			t.Run(fmt.Sprintf("%s/chunk %d", mode, chunk), func(t *testing.T) {
				dir := t.TempDir()
				out := filepath.Join(dir, "out.bin")
				data := payload(24<<20 + 12345)
				order := pieces(len(data), chunk, 0)
				if mode == sinks.ModePositional {
					order = pieces(len(data), chunk, 3)
				}
				r := newRig(t)
				g := r.buildChunked(t, sendPieces(data, chunk, order), chunk, "file.sink", writesCfg(out, mode, sinks.DirectAuto, 4), 1)
				if err := run(t, t.Context(), g, int64(len(data))); err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, out); !bytes.Equal(got, data) {
					t.Fatalf("output has %d bytes, sha256 %s; want %d bytes, sha256 %s", len(got), sum(got), len(data), sum(data))
				}
				if !supportsDirect(dir) {
					t.Logf("%s has no direct I/O; checking the bytes only", dir)
					return
				}
				direct, cached := r.file.DirectBytes(), r.file.CachedBytes()
				t.Logf("%d switches, %d bytes direct, %d through the page cache", r.file.Switches(), direct, cached)
				// Odd chunks are rarely aligned in memory where their aligned
				// blocks start, so little of them can go direct.
				least := int64(1 << 20)
				if chunk%4096 != 0 {
					least = 1
				}
				if r.file.Switches() < 4 || direct < least || cached < least || direct+cached != int64(len(data)) {
					t.Fatalf("%d switches, %d bytes direct, %d through the page cache; want at least 4, and %d or more each way, %d in all",
						r.file.Switches(), direct, cached, least, len(data))
				}
			})
		}
	}
}
