package cmd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatchMemoryFlat: a list of 20,000 downloads, each of which fails
// fast (404), runs in a live heap that does not grow with the list. The
// batch kept a map entry for each line, and the library one for each
// output, each holding the line's whole request: about 1.5 KB a line,
// 30 MiB here (1.34 GB for a million lines). The heap may grow by 8 MiB,
// what the running downloads take, whatever the length. The server and
// stderr keep nothing per line either, so the heap is dlflow's.
func TestBatchMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 20,000 downloads")
	}
	const lines = 20_000
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	listPath := filepath.Join(dir, "list.txt")
	f, err := os.Create(listPath)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range lines {
		fmt.Fprintf(w, "%s/f%07d f%07d\n", srv.URL, i, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.GC() // what is live, not the garbage of the last cycle
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var stderr lineCounter
	code := run(ctx, []string{"-i", listPath, "--dir", filepath.Join(dir, "out"), "--jobs", "8", "-q"}, bytes.NewReader(nil), new(bytes.Buffer), &stderr)
	took := time.Since(start)
	close(stop)
	<-sampled
	if code != exitFailed {
		t.Fatalf("exit %d, want %d; last line of stderr: %q", code, exitFailed, stderr.last)
	}
	if n := stderr.notFound; n != lines {
		t.Errorf("%d lines of stderr say 404, want %d; last %q", n, lines, stderr.last)
	}
	if n := served.Load(); n < lines {
		t.Errorf("%d requests, want at least %d", n, lines)
	}
	grew := int64(peak.Load()) - int64(before.HeapAlloc)
	t.Logf("%d downloads in %v; the live heap grew by %.1f MiB at most", lines, took.Round(time.Millisecond), float64(grew)/(1<<20))
	if grew > 8<<20 {
		t.Errorf("the live heap grew by %d MiB over a list of %d lines", grew>>20, lines)
	}
}

// lineCounter counts the lines written to it that report a 404, and
// keeps the last line only.
type lineCounter struct {
	mu       sync.Mutex
	notFound int
	last     string
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for line := range bytes.Lines(p) {
		if bytes.Contains(line, []byte("http 404 Not Found from ")) {
			c.notFound++
		}
		c.last = string(line)
	}
	return len(p), nil
}
