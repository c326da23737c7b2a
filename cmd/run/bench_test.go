package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/internal/origin"
)

// The bench tests run the bench subcommand on a tiny file: they check the
// structure of what it prints, never its timings. Each download is a child
// process (this test binary, as the CLI).

func benchExample(name string) string { return filepath.Join("..", "..", "examples", name) }

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
	res := runCLI(t, "bench", "--size", "1MiB", "--runs", "1", "-c", benchExample("stream.yaml"), "--compare", "--json")
	if res.code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	var cells []benchCell
	if err := json.Unmarshal([]byte(res.stdout), &cells); err != nil {
		t.Fatal(err)
	}
	// curl and aria2c are optional: a reference row appears only when the
	// tool is installed, and is then verified like any other.
	for _, c := range cells[1:] {
		if c.Tool != "curl" && c.Tool != "aria2c" || !c.Verified || len(c.Stages) != 0 || c.MemoryBound != 0 {
			t.Errorf("reference row %+v", c)
		}
	}
}
