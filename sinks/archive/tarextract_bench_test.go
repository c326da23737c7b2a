package archive_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dlflow/dlflow/internal/testtar"
)

// BenchmarkTarExtract unpacks 32 members of 1 MiB that are not sparse
// (half of each zeros): the path every ordinary member takes.
func BenchmarkTarExtract(b *testing.B) {
	var entries []testtar.Entry
	body := append(bytes.Repeat([]byte("data"), 128<<10), make([]byte, 512<<10)...)
	for i := range 32 {
		entries = append(entries, testtar.Entry{Name: fmt.Sprintf("d%d/f%d", i%4, i), Mode: 0o644, Body: body})
	}
	data := testtar.Tar(b, entries)
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		cfg := extractCfg(filepath.Join(b.TempDir(), "out"))
		cfg.Fsync = false
		g := newRig(b).buildChunked(b, sendPieces(data, 256<<10, pieces(len(data), 256<<10, 0)), 256<<10, "tar.extract", cfg, 1)
		if err := run(b, b.Context(), g, int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}
