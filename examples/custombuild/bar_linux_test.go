//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/dlflow/dlflow/bench/origin"
)

// barBytes matches the whole-file line of the bar: "DONE MiB / 64.0 MiB".
var barBytes = regexp.MustCompile(`(\d+\.\d) MiB / 64\.0 MiB`)

// TestCustomBinaryBarMoves runs the custom binary with throttle-auto.yaml
// and --checksum on a terminal (a pseudo-terminal on its stderr), as a
// user would: the bar it draws shows the byte count growing through the
// download and ending at 64.0 MiB, and the file is whole.
func TestCustomBinaryBarMoves(t *testing.T) {
	exe := customBinary(t)
	const size, seed = 64 << 20, 23
	srv, err := origin.Start(origin.Options{Size: size, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ptmx, tty, err := pty.Open()
	if err != nil && os.Getenv("CI") != "" {
		t.Fatalf("no pseudo-terminal: %v", err)
	} else if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.bin")
	sum := origin.SHA256Hex(size, seed)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// 64 MiB at 32 MiB/s: two seconds, which the bar (redrawn every
	// 150 ms) draws many times.
	cmd := exec.CommandContext(ctx, exe, "-c", filepath.Join("..", "customstage", "throttle-auto.yaml"), srv.URL(), "-o", out,
		"--checksum", "sha256:"+sum, "--set", "stages.limit.config.rate=32MiB")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds it; EOF on ptmx once the child is gone
	drawn := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(ptmx) // ends with EIO when the child exits
		drawn <- b
	}()
	err = cmd.Wait()
	screen := <-drawn
	if err != nil {
		t.Fatalf("%v; terminal:\n%q", err, screen)
	}
	var counts []float64
	for _, m := range barBytes.FindAllSubmatch(screen, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		if len(counts) == 0 || v != counts[len(counts)-1] {
			counts = append(counts, v)
		}
	}
	t.Logf("bar counts (MiB): %v", counts)
	moving := 0
	for i := 1; i < len(counts); i++ {
		if counts[i] < counts[i-1] {
			t.Errorf("the bar went back from %.1f to %.1f MiB", counts[i-1], counts[i])
		}
		if counts[i] < 64 {
			moving++
		}
	}
	if moving < 2 || len(counts) == 0 || counts[len(counts)-1] != 64 {
		t.Errorf("bar counts %v: want it to grow at least twice below 64.0 MiB and end at 64.0; terminal:\n%q", counts, screen)
	}
	if !bytes.Contains(screen, []byte("sha256:"+sum+" verified")) {
		t.Errorf("the summary on the terminal does not say the checksum was verified:\n%q", screen)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(data)); got != sum {
		t.Errorf("output sha256 %s, want %s", got, sum)
	}
}
