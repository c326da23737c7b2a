package cmd

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// The bench tests run the bench subcommand on a tiny file: they check the
// structure of what it prints, never its timings. Each download is a child
// process (this test binary, as the CLI).

func benchExample(name string) string { return filepath.Join("..", "examples", name) }

// benchEnv keeps the race runtime from sleeping a second at each child's
// exit.
func benchEnv(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

func TestBenchJSON(t *testing.T) {
	benchEnv(t)
	res := runCLI(t, "bench", "--size", "2MiB", "--runs", "1", "--json",
		"-c", benchExample("stream.yaml"), "-c", benchExample("ranged-ordered.yaml"),
		"--connections", "2,4", "--piece", "512KiB")
	if res.code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	var cells []benchCell
	if err := json.Unmarshal([]byte(res.stdout), &cells); err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, res.stdout)
	}
	var labels []string
	for _, c := range cells {
		labels = append(labels, c.Label)
	}
	// stream has no readers or splitter: one cell; ranged-ordered: one per
	// connection count.
	want := []string{"stream", "ranged-ordered c=2 piece=512KiB", "ranged-ordered c=4 piece=512KiB"}
	if !slices.Equal(labels, want) {
		t.Fatalf("cells %q, want %q", labels, want)
	}
	for _, c := range cells {
		if c.Scenario != "plain" || c.Origin != "go" || c.Tool != "dlflow" || c.Runs != 1 || c.Bytes != 2<<20 {
			t.Errorf("%s: %+v", c.Label, c)
		}
		if !c.Verified || c.SHA256 != "ok" || c.Error != "" {
			t.Errorf("%s: sha256 %q ok=%v error %q", c.Label, c.SHA256, c.Verified, c.Error)
		}
		if len(c.Seconds) != 1 || c.MedianMBps <= 0 || c.MinMBps > c.MedianMBps || c.MaxMBps < c.MedianMBps || c.PeakRSS <= 0 || c.MemoryBound <= 0 {
			t.Errorf("%s: measurements %+v", c.Label, c)
		}
		if c.Bottleneck == "" || len(c.Stages) == 0 {
			t.Errorf("%s: no per-stage metrics", c.Label)
		}
		var sent int64
		for _, s := range c.Stages {
			if s.Stage == "fetch" {
				sent = s.BytesSent
			}
		}
		if sent != 2<<20 {
			t.Errorf("%s: fetch sent %d bytes, want %d", c.Label, sent, 2<<20)
		}
	}
	if cells[1].Connections != 2 || cells[2].Connections != 4 || cells[1].Piece != 512<<10 {
		t.Errorf("matrix: %+v / %+v", cells[1], cells[2])
	}
	if cells[1].MemoryBound == cells[0].MemoryBound {
		t.Errorf("the memory bound does not depend on the topology: %d", cells[0].MemoryBound)
	}
}

func TestBenchTableScenariosAndPlot(t *testing.T) {
	benchEnv(t)
	plot := filepath.Join(t.TempDir(), "bench.svg")
	res := runCLI(t, "bench", "--size", "1MiB", "--runs", "2",
		"-c", benchExample("stream.yaml"), "-c", benchExample("ranged.yaml"), "--connections", "2",
		"--scenario", "plain,latency", "--scenario", "slowconn", "--latency", "1ms",
		"--trickle", "4MiB", "--slow-request", "1", "--plot", plot)
	if res.code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	for _, want := range []string{
		"scenario plain: built-in origin on 127.0.0.1, 1MiB generated; 2 run(s) per cell",
		"scenario latency: built-in origin on 127.0.0.1, 1MiB generated, 1ms before each response",
		"scenario slowconn: built-in origin on 127.0.0.1, 1MiB generated, GET #1 trickles at 4MiB/s",
		"cell", "MB/s median (min-max)", "peak RSS", "buffer bound", "bottleneck",
		"input queue fill", "send blocked",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, res.stdout)
		}
	}
	rows := 0
	for _, line := range strings.Split(res.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "stream" || f[0] == "ranged") && strings.Contains(line, " ok ") {
			rows++
		}
	}
	if rows != 6 { // two cells in each of three scenarios
		t.Errorf("%d verified rows, want 6:\n%s", rows, res.stdout)
	}

	data, err := os.ReadFile(plot)
	if err != nil {
		t.Fatal(err)
	}
	var svg struct {
		XMLName xml.Name
		Rects   []struct{} `xml:"rect"`
		Texts   []string   `xml:"text"`
	}
	if err := xml.Unmarshal(data, &svg); err != nil {
		t.Fatalf("plot is not XML: %v", err)
	}
	if svg.XMLName.Local != "svg" || len(svg.Rects) != 1+6 { // background + a bar per cell
		t.Errorf("plot: <%s> with %d rects, want <svg> with 7", svg.XMLName.Local, len(svg.Rects))
	}
	for _, want := range []string{"scenario slowconn", "ranged c=2", "stream"} {
		if !slices.Contains(svg.Texts, want) {
			t.Errorf("plot lacks the label %q", want)
		}
	}
}

func TestBenchExternalURL(t *testing.T) {
	benchEnv(t)
	const size = 1<<20 + 5
	srv := startOrigin(t, origin.Options{Size: size, Seed: 9})
	args := []string{"bench", "--url", srv.URL(), "--runs", "1", "-c", benchExample("stream.yaml"), "--json"}

	res := runCLI(t, args...)
	var cells []benchCell
	if err := json.Unmarshal([]byte(res.stdout), &cells); res.code != exitOK || err != nil || len(cells) != 1 {
		t.Fatalf("exit %d, %v\nstdout: %s\nstderr: %s", res.code, err, res.stdout, res.stderr)
	}
	if c := cells[0]; c.SHA256 != "unverified" || c.Verified || c.Origin != "external" || c.Bytes != size {
		t.Errorf("without --sha256: %+v", c)
	}

	res = runCLI(t, append(args, "--sha256", origin.SHA256Hex(size, 9))...)
	if err := json.Unmarshal([]byte(res.stdout), &cells); res.code != exitOK || err != nil || !cells[0].Verified {
		t.Fatalf("with the right sha256: exit %d, %v, %+v", res.code, err, cells)
	}

	res = runCLI(t, append(args, "--sha256", strings.Repeat("0", 64))...)
	if err := json.Unmarshal([]byte(res.stdout), &cells); res.code != exitFailed || err != nil || cells[0].Verified || cells[0].SHA256 != "failed" {
		t.Fatalf("with a wrong sha256: exit %d, %v, %+v", res.code, err, cells)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "fast"},
		{"--connections", "0"},
		{"--piece", "big"},
		{"--origin", "apache"},
		{"--origin", "nginx", "--scenario", "slowconn"},
		{"--sha256", strings.Repeat("0", 64)},
		{"--url", "http://127.0.0.1:1/x", "--scenario", "latency"},
		{"--runs", "0"},
		{"--vary", "stages.write.config.fsync"},
		{"--vary", "=true,false"},
		{"--set", "fsync"},
		{"-c", benchExample("stream.yaml"), "--set", "stages.write.config.fsnc=false"},
		{"extra"},
	} {
		res := runCLI(t, append([]string{"bench"}, args...)...)
		if res.code != exitUsage || !strings.HasPrefix(res.stderr, "dlflow: ") || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("bench %q: exit %d, stderr %q; want exit 2 and one line", args, res.code, res.stderr)
		}
	}
}

func TestBenchCompareWithReferenceTools(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	benchEnv(t)
	// A partial output left by an interrupted bench in --dir: every run
	// must start from scratch anyway.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "out.bin"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "bench", "--size", "1MiB", "--runs", "2", "-c", benchExample("stream.yaml"), "--compare", "--json", "--dir", dir)
	if res.code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	var cells []benchCell
	if err := json.Unmarshal([]byte(res.stdout), &cells); err != nil {
		t.Fatal(err)
	}
	// curl, aria2c and axel are optional: a reference row appears only when
	// the tool is installed, and is then verified like any other.
	tools := map[string]bool{}
	for _, c := range cells[1:] {
		tools[c.Tool] = true
		if !slices.Contains([]string{"curl", "aria2c", "axel"}, c.Tool) || !c.Verified || c.Runs != 2 || c.Bytes != 1<<20 || len(c.Stages) != 0 || c.MemoryBound != 0 {
			t.Errorf("reference row %+v", c)
		}
		if c.Tool != "curl" && (c.Connections != 8 || c.Label != fmt.Sprintf("%s c=8", c.Tool)) {
			t.Errorf("%s: connections %d, label %q; want the default 8", c.Tool, c.Connections, c.Label)
		}
	}
	for _, tool := range []string{"curl", "aria2c", "axel"} {
		if _, err := exec.LookPath(tool); err == nil && !tools[tool] {
			t.Errorf("%s is installed but has no reference row", tool)
		}
	}
	// Peak RSS is the child's own: under GNU time it does not include the
	// bench's memory, which vfork would carry over into every child's
	// figure. This test process (the origin, and the race detector in CI)
	// is larger than curl (about 11 MiB) and axel (about 5 MiB); aria2c
	// (about 20 MiB) is not checked, since a test process without the
	// race detector can be smaller.
	if gnuTime() != "" {
		self := selfRSS(t)
		for _, c := range cells[1:] {
			t.Logf("%s: peak RSS %d bytes; this process %d", c.Label, c.PeakRSS, self)
			if c.Tool == "aria2c" {
				continue
			}
			if c.PeakRSS <= 0 || c.PeakRSS >= self*3/4 {
				t.Errorf("%s: peak RSS %d, want above 0 and well below this process's %d", c.Label, c.PeakRSS, self)
			}
		}
	} else {
		t.Log("no GNU time: peak RSS figures include the bench's own")
	}
	for _, leftover := range []string{"out.bin", "out.bin.st", "out.bin.aria2", "out.bin.rss"} {
		if _, err := os.Stat(filepath.Join(dir, leftover)); err == nil {
			t.Errorf("%s left in --dir after the bench", leftover)
		}
	}
}

// TestBenchAxelStartsFresh runs the axel cell over the leftovers of an
// interrupted axel run: next to an output alone axel refuses to start, and
// with its state file it resumes; the bench must remove both first.
func TestBenchAxelStartsFresh(t *testing.T) {
	axel, err := exec.LookPath("axel")
	if err != nil {
		t.Skip("axel is not installed")
	}
	const size = 1<<20 + 7
	srv := startOrigin(t, origin.Options{Size: size, Seed: 5})
	bsrv := &benchServer{url: srv.URL(), sha: origin.SHA256Hex(size, 5), size: size, reset: func() {}}
	for _, stale := range [][]string{{"out.bin"}, {"out.bin", "out.bin.st"}, {"out.bin.st"}} {
		dir := t.TempDir()
		for _, name := range stale {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("stale"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c := axelCell(&benchFlags{origin: "go"}, "plain", axel, 4)
		out := filepath.Join(dir, "out.bin")
		// Resuming from a bogus state file can hang: fail instead.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := runOnce(ctx, c, bsrv, out, filepath.Join(dir, "metrics.json"))
		cancel()
		if err != nil {
			t.Errorf("over %q: %v", stale, err)
		}
		if c.Bytes != size || len(c.Seconds) != 1 {
			t.Errorf("over %q: %d bytes, %d run(s)", stale, c.Bytes, len(c.Seconds))
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("over %q: %d file(s) left after the run", stale, len(left))
		}
	}
}

func TestBenchReferenceConnections(t *testing.T) {
	for _, tc := range []struct {
		conns []int
		limit int
		want  []int
	}{
		{[]int{0}, 16, []int{8}},             // the topologies' own: 8
		{[]int{4, 8}, 16, []int{4, 8}},       // one cell each
		{[]int{8, 32, 64}, 16, []int{8, 16}}, // capped, without duplicates
	} {
		if got := referenceConnections(&benchFlags{connections: tc.conns}, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("connections %v, limit %d: got %v, want %v", tc.conns, tc.limit, got, tc.want)
		}
	}
}

// selfRSS is this process's resident set in bytes (VmRSS).
func selfRSS(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kib << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestBenchVary: --vary makes one cell per value (every combination of
// several), on top of --set, and each cell's bound is validate's for its
// own overrides: direct: always counts the chunks it gathers.
func TestBenchVary(t *testing.T) {
	benchEnv(t)
	res := runCLI(t, "bench", "--size", "1MiB", "--runs", "1", "--json", "-c", benchExample("stream.yaml"),
		"--set", "stages.progress.config.interval=5s",
		"--vary", "stages.write.config.direct=always,never", "--vary", "stages.write.config.preallocate=false,true")
	if res.code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	var cells []benchCell
	if err := json.Unmarshal([]byte(res.stdout), &cells); err != nil {
		t.Fatal(err)
	}
	var labels []string
	bound := map[string]int64{}
	for _, c := range cells {
		labels = append(labels, c.Label)
		bound[c.Label] = c.MemoryBound
		if !c.Verified || c.Runs != 1 || c.Sets[0] != "stages.progress.config.interval=5s" || len(c.Sets) != 3 {
			t.Errorf("%s: verified %v, runs %d, sets %q", c.Label, c.Verified, c.Runs, c.Sets)
		}
	}
	want := []string{
		"stream direct=always preallocate=false", "stream direct=always preallocate=true",
		"stream direct=never preallocate=false", "stream direct=never preallocate=true",
	}
	if !slices.Equal(labels, want) {
		t.Fatalf("cells %q, want %q", labels, want)
	}
	if got := bound[want[0]] - bound[want[2]]; got != 3*256<<10 {
		t.Errorf("direct: always adds %d bytes to the bound, want the 3 chunks of 256 KiB that a 1 MiB gather holds beyond one", got)
	}
}

// TestVaryLabels: a --vary key is labelled by its last part, unless two
// keys share it.
func TestVaryLabels(t *testing.T) {
	combos, err := parseVaries([]string{"stages.fetch.config.buffer=1MiB", "stages.write.config.buffer=2MiB,4MiB", "stages.write.config.fsync=false"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range combos {
		var parts []string
		for _, s := range c {
			parts = append(parts, s.label)
		}
		got = append(got, strings.Join(parts, " "))
	}
	want := []string{"fetch.buffer=1MiB write.buffer=2MiB fsync=false", "fetch.buffer=1MiB write.buffer=4MiB fsync=false"}
	if !slices.Equal(got, want) {
		t.Fatalf("labels %q, want %q", got, want)
	}
}
