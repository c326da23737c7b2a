package cmd

import (
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	dlbench "github.com/dlflow/dlflow/bench"
	"github.com/dlflow/dlflow/bench/origin"
)

// What a bench measures and renders is tested in package bench; these
// tests hold the command: its flags, what it prints where, and its exit
// codes. Each download is a child process (this test binary, as the CLI).

func benchExample(name string) string { return filepath.Join("..", "examples", name) }

// benchEnv keeps the race runtime from sleeping a second at each child's
// exit.
func benchEnv(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

func sha256Sum(data []byte) [32]byte { return sha256.Sum256(data) }

// TestBenchTable: the flags reach the bench, the table goes to stdout,
// the progress to stderr, and --plot writes the SVG.
func TestBenchTable(t *testing.T) {
	benchEnv(t)
	plot := filepath.Join(t.TempDir(), "bench.svg")
	res := runCLI(t, "bench", "--size", "1MiB", "--runs", "2", "-c", benchExample("stream.yaml"), "-c", benchExample("ranged.yaml"),
		"--connections", "2,2", "--piece", "256KiB", "--latency", "1ms", "--plot", plot)
	if res.code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	// --latency alone asks for its scenario.
	wantStderr := `bench: scenario latency: built-in origin on 127.0.0.1, 1MiB generated, 1ms before each response
bench: latency: stream run 1/2
bench: latency: ranged c=2 piece=256KiB run 1/2
bench: latency: ranged c=2 piece=256KiB run 2/2
bench: latency: stream run 2/2
`
	if res.stderr != wantStderr {
		t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, wantStderr)
	}
	row := regexp.MustCompile(`(?m)^(stream|ranged c=2 piece=256KiB) +[0-9.]+s +[0-9.]+-[0-9.]+s +[0-9.]+ ± [0-9.]+s +2( [!~][0-9])* +[0-9]+ \([0-9]+-[0-9]+\) +[0-9.]+MiB +[0-9.]+ +[0-9.]+MiB +(-|[0-9]+/[0-9]+ms) +[0-9.]+ +[0-9.]+ +ok +\S+$`)
	if !strings.HasPrefix(res.stdout, "scenario latency: built-in origin on 127.0.0.1, 1MiB generated, 1ms before each response; 2 run(s) per cell\n\ncell ") ||
		len(row.FindAllString(res.stdout, -1)) != 2 || !strings.Contains(res.stdout, "\nper stage: ") {
		t.Errorf("stdout:\n%s", res.stdout)
	}
	data, err := os.ReadFile(plot)
	if err != nil || xml.Unmarshal(data, new(struct{})) != nil || !strings.Contains(string(data), ">scenario latency: built-in origin on 127.0.0.1, 1MiB generated, 1ms before each response</text>") {
		t.Errorf("--plot: %v\n%s", err, data)
	}
}

// TestBenchExternalURL: --url with --sha256 verifies; without it the
// outputs are unverified (exit 0, the first sum on stderr); a wrong sum
// exits 1, with the JSON still printed.
func TestBenchExternalURL(t *testing.T) {
	benchEnv(t)
	const size = 1<<20 + 5
	srv := startOrigin(t, origin.Options{Size: size, Seed: 9})
	args := []string{"bench", "--url", srv.URL(), "--runs", "1", "-c", benchExample("stream.yaml"), "--json"}
	type cell struct {
		SHA256   string `json:"sha256"`
		Verified bool   `json:"sha256_ok"`
		Origin   string `json:"origin"`
		Scenario string `json:"scenario"`
		Bytes    int64  `json:"bytes"`
	}

	res := runCLI(t, args...)
	var doc struct{ Cells []cell }
	err := json.Unmarshal([]byte(res.stdout), &doc)
	cells := doc.Cells
	if res.code != exitOK || err != nil || len(cells) != 1 {
		t.Fatalf("exit %d, %v\nstdout: %s\nstderr: %s", res.code, err, res.stdout, res.stderr)
	}
	if c := cells[0]; c.SHA256 != "unverified" || c.Verified || c.Origin != "external" || c.Scenario != "external" || c.Bytes != size {
		t.Errorf("without --sha256: %+v", c)
	}
	if want := "bench: sha256 of the first output: " + origin.SHA256Hex(size, 9) + " (unverified)\n"; !strings.HasSuffix(res.stderr, want) {
		t.Errorf("stderr %q lacks %q", res.stderr, want)
	}

	res = runCLI(t, append(args, "--sha256", "sha256:"+strings.ToUpper(origin.SHA256Hex(size, 9)))...)
	err = json.Unmarshal([]byte(res.stdout), &doc)
	if cells = doc.Cells; res.code != exitOK || err != nil || !cells[0].Verified {
		t.Fatalf("with the right sha256: exit %d, %v, %+v", res.code, err, cells)
	}

	res = runCLI(t, append(args, "--sha256", strings.Repeat("0", 64))...)
	err = json.Unmarshal([]byte(res.stdout), &doc)
	if cells = doc.Cells; res.code != exitFailed || err != nil || cells[0].Verified || cells[0].SHA256 != "failed" {
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
		{"--jobs", "0"},
		{"--files", "0"},
		{"--file-size", "small"},
		{"--conn-rate", "0"},
		{"--tree-files", "0"},
		{"--tree-large", "0"},
		{"--latency", "0s"},
		{"--origin", "nginx", "--scenario", "wan"},
		{"--origin", "nginx", "--scenario", "small"},
		{"-c", benchExample("stream.yaml"), "--set", "stages.write.config.fsnc=false"},
		{"-c", filepath.Join(t.TempDir(), "missing.yaml")},
		{"extra"},
		{"--compare=wget"},
		{"--runs", "3", "--max-runs", "2"},
		{"--target", "0"},
		{"--warmup", "-1"},
		{"--json", "--markdown"},
		{"--url", "a=http://127.0.0.1:1/x", "--url", "a=http://127.0.0.1:1/y"},
		{"--url", "http://127.0.0.1:1/x", "--url", "http://127.0.0.1:1/y", "--sha256", strings.Repeat("0", 64)},
		{"--url", "a=http://127.0.0.1:1/x", "--sha256", "b=" + strings.Repeat("0", 64)},
	} {
		res := runCLI(t, append([]string{"bench"}, args...)...)
		if res.code != exitUsage || !strings.HasPrefix(res.stderr, "dlflow: ") || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("bench %q: exit %d, stderr %q; want exit 2 and one line", args, res.code, res.stderr)
		}
	}
}

// TestBenchReportForms: --version prints the version and commit; the
// document records the URL and the command line; --compare=curl adds
// curl alone; --csv writes a row per run and --markdown a table.
func TestBenchReportForms(t *testing.T) {
	benchEnv(t)
	res := runCLI(t, "bench", "--version")
	if res.code != exitOK || !strings.HasPrefix(res.stdout, "dlflow bench ") || !strings.Contains(res.stdout, runtime.Version()) {
		t.Errorf("--version: exit %d, %q", res.code, res.stdout)
	}

	srv := startOrigin(t, origin.Options{Size: 100 << 10, Seed: 3})
	csvPath := filepath.Join(t.TempDir(), "runs.csv")
	args := []string{"bench", "--url", srv.URL(), "--runs", "2", "-c", benchExample("stream.yaml"), "--json", "--csv", csvPath}
	if _, err := exec.LookPath("curl"); err == nil {
		args = append(args, "--compare=curl")
	}
	res = runCLI(t, args...)
	if res.code != exitOK {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var doc struct {
		Command []string
		Options struct{ URLs []struct{ Label, URL string } }
		Cells   []struct{ Tool string }
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Options.URLs) != 1 || doc.Options.URLs[0].URL != srv.URL() || !slices.Equal(doc.Command, append([]string{"dlflow"}, args...)) {
		t.Errorf("document: urls %+v, command %q", doc.Options.URLs, doc.Command)
	}
	for _, c := range doc.Cells {
		if c.Tool != "dlflow" && c.Tool != "curl" {
			t.Errorf("--compare=curl ran %s", c.Tool)
		}
	}
	data, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines != 1+2*len(doc.Cells) {
		t.Errorf("CSV: %d lines for %d cells of 2 runs:\n%s", lines, len(doc.Cells), data)
	}

	docPath := filepath.Join(t.TempDir(), "doc.json")
	res = runCLI(t, "bench", "--url", srv.URL(), "--runs", "1", "-c", benchExample("stream.yaml"), "--markdown", "--json="+docPath)
	if res.code != exitOK || !strings.Contains(res.stdout, "| stream | ") {
		t.Errorf("--markdown: exit %d\n%s", res.code, res.stdout)
	}
	if data, err := os.ReadFile(docPath); err != nil || !json.Valid(data) || !strings.Contains(string(data), `"environment"`) {
		t.Errorf("--json=FILE beside the tables: %v\n%s", err, data)
	}
}

// TestBenchSeveralURLs: --url is repeatable, each [LABEL=]URL a table of
// its own with its own sha256; a URL's own = is not a label.
func TestBenchSeveralURLs(t *testing.T) {
	benchEnv(t)
	a := startOrigin(t, origin.Options{Size: 64 << 10, Seed: 1})
	b := startOrigin(t, origin.Options{Size: 80 << 10, Seed: 2})
	res := runCLI(t, "bench", "--runs", "1", "-c", benchExample("stream.yaml"), "--json",
		"--url", "near="+a.URL(), "--url", b.URL()+"?x=1", "--sha256", "near="+origin.SHA256Hex(64<<10, 1), "--sha256", "url2="+origin.SHA256Hex(80<<10, 2))
	var doc struct {
		Options struct{ URLs []struct{ Label, URL string } }
		Cells   []struct {
			Scenario string
			Bytes    int64
			Verified bool `json:"sha256_ok"`
		}
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); res.code != exitOK || err != nil {
		t.Fatalf("exit %d, %v: %s", res.code, err, res.stderr)
	}
	if len(doc.Cells) != 2 || doc.Cells[0].Scenario != "near" || doc.Cells[0].Bytes != 64<<10 || !doc.Cells[0].Verified ||
		doc.Cells[1].Scenario != "url2" || doc.Cells[1].Bytes != 80<<10 || !doc.Cells[1].Verified {
		t.Errorf("cells %+v", doc.Cells)
	}
	if len(doc.Options.URLs) != 2 || doc.Options.URLs[1].URL != b.URL()+"?x=1" {
		t.Errorf("urls %+v", doc.Options.URLs)
	}
	res = runCLI(t, "bench", "--runs", "1", "-c", benchExample("stream.yaml"), "--url", "near="+a.URL(), "--url", b.URL())
	if res.code != exitOK || !strings.Contains(res.stdout, "url near: "+a.URL()) || !strings.Contains(res.stdout, "\nurl url2: "+b.URL()) {
		t.Errorf("table per URL: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}

// TestBenchSmall: --files alone asks for the small scenario; its JSON
// cell counts the files, the requests per file and the connections.
func TestBenchSmall(t *testing.T) {
	benchEnv(t)
	res := runCLI(t, "bench", "--files", "3", "--file-size", "4KiB", "--jobs", "2", "--latency", "1ms", "--runs", "1", "--json")
	if res.code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	if want := "bench: scenario small: built-in origin on 127.0.0.1, 3 files of 4KiB generated, 1ms before each response, 2 at once\nbench: small: auto jobs=2 run 1/1\n"; res.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, want)
	}
	var doc struct {
		Cells []struct {
			Scenario        string  `json:"scenario"`
			Label           string  `json:"label"`
			Files           int     `json:"files"`
			Jobs            int     `json:"jobs"`
			Bytes           int64   `json:"bytes"`
			Verified        bool    `json:"sha256_ok"`
			Requests        float64 `json:"requests"`
			RequestsPerFile float64 `json:"requests_per_file"`
			ConnsAccepted   float64 `json:"conns_accepted"`
		}
	}
	err := json.Unmarshal([]byte(res.stdout), &doc)
	cells := doc.Cells
	if err != nil || len(cells) != 1 {
		t.Fatalf("%v\n%s", err, res.stdout)
	}
	if c := cells[0]; c.Scenario != "small" || c.Label != "auto jobs=2" || c.Files != 3 || c.Jobs != 2 || c.Bytes != 3*4<<10 || !c.Verified ||
		c.Requests < 3 || c.RequestsPerFile != c.Requests/3 || c.ConnsAccepted < 1 {
		t.Errorf("cell %+v", c)
	}
}

// TestBenchScenarioFlags: the wan and small flags reach the options, and
// alone ask for their scenario; --latency is left to each scenario's
// default unless given.
func TestBenchScenarioFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "[plain] latency 0s conn-rate 10MiB files 300 of 16KiB jobs 8"},
		{[]string{"--conn-rate", "2MiB"}, "[wan] latency 0s conn-rate 2MiB files 300 of 16KiB jobs 8"},
		{[]string{"--jobs", "4"}, "[small] latency 0s conn-rate 10MiB files 300 of 16KiB jobs 4"},
		{[]string{"--file-size", "1KiB", "--files", "7"}, "[small] latency 0s conn-rate 10MiB files 7 of 1KiB jobs 8"},
		{[]string{"--scenario", "wan,small", "--latency", "5ms"}, "[wan small] latency 5ms conn-rate 10MiB files 300 of 16KiB jobs 8"},
		{[]string{"--tree", "generated", "--tree-files", "50"}, "[extract] latency 0s conn-rate 10MiB files 300 of 16KiB jobs 8 tree generated 50 24MiB"},
		{[]string{"--scenario", "extract", "--tree-large", "1MiB"}, "[extract] latency 0s conn-rate 10MiB files 300 of 16KiB jobs 8 tree  20000 1MiB"},
	} {
		f, err := parseBenchFlags(tc.args, io.Discard, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		o := f.opts
		got := fmt.Sprintf("%v latency %v conn-rate %v files %d of %v jobs %d", o.Scenarios, o.Latency, o.ConnRate, o.Files, o.FileSize, o.Jobs)
		if slices.Contains(o.Scenarios, dlbench.ScenarioExtract) {
			got += fmt.Sprintf(" tree %s %d %v", o.Tree, o.TreeFiles, o.TreeLarge)
		}
		if got != tc.want {
			t.Errorf("%q: %s, want %s", tc.args, got, tc.want)
		}
	}
}
