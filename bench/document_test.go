package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/png"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestResultsDocument: --json is one self-describing object: where and
// when the bench ran, its command, every option with the topology's
// contents and the reference tools' versions and command lines, and per
// cell every measured run (warm-ups left out) with its statistics and the
// ratio to the baseline. The CSV has a row per measured run.
func TestResultsDocument(t *testing.T) {
	o := testOptions(t)
	o.Size, o.Runs, o.Warmup = 256<<10, 2, 1
	o.Topologies = []string{example("stream.yaml"), example("buffered.yaml")}
	o.Baseline, o.Command = "stream", []string{"dlflow", "bench", "--json"}
	if installed("curl") {
		o.Compare, o.Tools = true, []string{"curl"}
	}
	res := run(t, o)

	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(slices.Sorted(maps.Keys(doc)), " "); got != "cells command environment options servers" {
		t.Errorf("document keys: %s", got)
	}
	checkEnvironment(t, doc["environment"])
	var command []string
	if err := json.Unmarshal(doc["command"], &command); err != nil || !slices.Equal(command, o.Command) {
		t.Errorf("command: %s", doc["command"])
	}

	d := res.Document()
	if len(d.Options.Topologies) != 2 || !strings.Contains(d.Options.Topologies[0].Contents, "file.sink") || len(d.Options.Topologies[0].SHA256) != 64 {
		t.Errorf("topologies: %+v", d.Options.Topologies)
	}
	if d.Options.SizeBytes != 256<<10 || d.Options.Warmup != 1 || d.Options.Baseline != "stream" {
		t.Errorf("options: %+v", d.Options)
	}
	if installed("curl") {
		if len(d.Options.ReferenceTools) != 1 || !strings.HasPrefix(d.Options.ReferenceTools[0].Version, "curl ") ||
			!slices.Contains(d.Options.ReferenceTools[0].Command, "-o") {
			t.Errorf("reference tools: %+v", d.Options.ReferenceTools)
		}
	}

	checkCells(t, res.Cells)

	var csvBuf bytes.Buffer
	if err := res.WriteCSV(&csvBuf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&csvBuf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 2*len(res.Cells); len(rows) != want || !slices.Equal(rows[0], csvHeader) {
		t.Errorf("CSV: %d rows, want %d; header %v", len(rows), want, rows[0])
	}

	var md bytes.Buffer
	if err := res.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| cell | median time (95% CI) |") || !strings.Contains(md.String(), "| stream | ") ||
		!strings.Contains(md.String(), "1.00x (1.00-1.00)") {
		t.Errorf("markdown:\n%s", md.String())
	}
}

// checkEnvironment checks the environment of a results document: the
// versions, the machine, and on Linux its kernel, CPU, memory and file
// system.
func checkEnvironment(t *testing.T, raw json.RawMessage) {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"dlflow_version", "go_version", "os", "arch", "cores", "load_before", "load_after", "start", "seconds"} {
		if _, ok := env[key]; !ok {
			t.Errorf("environment lacks %q: %v", key, env)
		}
	}
	if env["go_version"] != runtime.Version() || env["cores"] != float64(runtime.NumCPU()) {
		t.Errorf("environment: go %v, cores %v", env["go_version"], env["cores"])
	}
	if runtime.GOOS == "linux" {
		for _, key := range []string{"kernel", "cpu", "memory_bytes", "filesystem"} {
			if v, ok := env[key]; !ok || v == "" || v == float64(0) {
				t.Errorf("environment on Linux lacks %q: %v", key, env)
			}
		}
	}
}

// checkCells checks every cell of a run of TestResultsDocument: its runs,
// statistics and ratio to the baseline.
func checkCells(t *testing.T, cells []Cell) {
	t.Helper()
	for _, c := range cells {
		if c.Failed() {
			t.Fatalf("%s failed: %s", c.Label, c.Error)
		}
		if c.Runs != 2 || len(c.RunRecords) != 2 || c.Warmups != 1 {
			t.Errorf("%s: %d runs, %d records, %d warm-ups; want 2, 2, 1", c.Label, c.Runs, len(c.RunRecords), c.Warmups)
		}
		for _, r := range c.RunRecords {
			if r.Seconds <= 0 || r.RSS <= 0 || math.Abs(r.MBps-float64(c.Bytes)/r.Seconds/1e6) > 1e-6 {
				t.Errorf("%s: run %+v", c.Label, r)
			}
		}
		st := c.Stats
		if st.MinS > st.MedianS || st.MedianS > st.MaxS || st.MedianLowS > st.MedianS || st.MedianHighS < st.MedianS || st.StddevS < 0 {
			t.Errorf("%s: stats %+v", c.Label, st)
		}
		if c.VsBaseline == nil || c.VsBaseline.Baseline != "stream" || c.VsBaseline.Low > c.VsBaseline.Ratio || c.VsBaseline.High < c.VsBaseline.Ratio {
			t.Errorf("%s: vs baseline %+v", c.Label, c.VsBaseline)
		}
		if c.Label == "stream" && (c.VsBaseline.Ratio != 1 || !c.Durable) {
			t.Errorf("the baseline against itself: %+v, durable %v", c.VsBaseline, c.Durable)
		}
		if c.Tool == "curl" && c.Durable {
			t.Errorf("curl does not fsync, yet is durable")
		}
	}
}

// TestMaxRunsAndMaxTime: rounds go on past Runs while a median is not
// known to Target, up to MaxRuns; MaxTime starts no run after it.
func TestMaxRunsAndMaxTime(t *testing.T) {
	o := testOptions(t)
	o.Size, o.Runs, o.MaxRuns, o.Target = 64<<10, 2, 4, 1e-9 // a target no run meets
	o.Topologies = []string{example("stream.yaml")}
	res := run(t, o)
	if c := res.Cells[0]; c.Runs != 4 {
		t.Errorf("an unmet target: %d runs, want MaxRuns 4", c.Runs)
	}

	o.MaxRuns, o.Target = 6, 1e9 // a target any two runs meet
	if c := run(t, o).Cells[0]; c.Runs != 2 {
		t.Errorf("a met target: %d runs, want Runs 2", c.Runs)
	}

	o.Runs, o.MaxRuns, o.MaxTime = 50, 50, time.Nanosecond
	res = run(t, o)
	if c := res.Cells[0]; c.Runs != 0 || res.Stopped == "" {
		t.Errorf("max time 1ns: %d runs, stopped %q", c.Runs, res.Stopped)
	}
}

// TestSummary holds the statistics to values worked by hand.
func TestSummary(t *testing.T) {
	s := summarize([]float64{2, 4, 4, 4, 5, 5, 7, 9})
	if s.Mean != 5 || math.Abs(s.Stddev-2.138) > 1e-3 || s.Median != 4.5 || s.Min != 2 || s.Max != 9 {
		t.Errorf("summary %+v", s)
	}
	// t(7) = 2.365: 5 ± 2.365*2.138/sqrt(8).
	if math.Abs(s.MeanLow-3.2124) > 1e-3 || math.Abs(s.MeanHigh-6.7876) > 1e-3 {
		t.Errorf("mean interval %.4f-%.4f", s.MeanLow, s.MeanHigh)
	}
	// n=8: P(X<=0)*2 = 0.0078, P(X<=1)*2 = 0.070: the interval is x(1)-x(8).
	if s.MedianLow != 2 || s.MedianHigh != 9 {
		t.Errorf("median interval %v-%v", s.MedianLow, s.MedianHigh)
	}
	if got := medianRank(20); got != 6 { // [x(6), x(15)] covers 95.9%
		t.Errorf("medianRank(20) = %d, want 6", got)
	}
	if s := summarize([]float64{1, 1.01, 0.99, 1, 5}); s.Outliers != 1 {
		t.Errorf("outliers of a sample with one far run: %d", s.Outliers)
	}
	if s := summarize([]float64{3}); s.MedianLow != 3 || s.MeanHigh != 3 || s.Stddev != 0 {
		t.Errorf("one run: %+v", s)
	}
	r, lo, hi := bootstrapRatio([]float64{2, 2.1, 1.9, 2}, []float64{1, 1.05, 0.95, 1})
	if r != 2 || lo > r || hi < r || lo < 1.7 || hi > 2.3 {
		t.Errorf("ratio %v (%v-%v)", r, lo, hi)
	}
}

// TestBottleneckNamesTheWindow: a reorder window that holds two pieces
// while eight readers wait 20 ms for each answer limits the run; the
// splitter's wait on it is window wait, not busy time, and the
// bottleneck column names the window.
func TestBottleneckNamesTheWindow(t *testing.T) {
	o := testOptions(t)
	o.Size, o.Runs = 4<<20, 1
	o.Scenarios, o.Latency = []Scenario{ScenarioLatency}, 20*time.Millisecond
	o.Topologies, o.Connections = []string{example("ranged-ordered.yaml")}, []int{8}
	o.Sets = []string{"stages.split.config.piece=128KiB", "stages.order.config.window=256KiB"}
	c := run(t, o).Cells[0]
	if c.Failed() {
		t.Fatal(c.Error)
	}
	if c.Bottleneck != "window of order" {
		t.Errorf("bottleneck %q, want the window of order; stages %+v", c.Bottleneck, c.Stages)
	}
	// Every run is traced: the requests' time to first byte is at least
	// the origin's 20 ms latency, and each connection's throughput is
	// known.
	if c.TTFB == nil || c.TTFB.N < 31 || c.TTFB.P50 < 20 || c.TTFB.P99 < c.TTFB.P50 {
		t.Errorf("ttfb %+v, want 31 requests or more (4 MiB in 128 KiB pieces, the probe's left out) of at least 20 ms", c.TTFB)
	}
	if r := c.RunRecords[0]; r.TTFB == nil || len(r.ConnectionMBps) < 1 || len(r.ConnectionMBps) > 8 {
		t.Errorf("run: ttfb %+v, %d connections' throughputs", r.TTFB, len(r.ConnectionMBps))
	}
	for _, s := range c.Stages {
		if s.Stage == "split" && (s.WindowWait*2 < s.Ran || s.BusyShare > 0.5) {
			t.Errorf("split: ran %v, window wait %v, busy %.0f%%", s.Ran, s.WindowWait, 100*s.BusyShare)
		}
	}
}

// TestPlotSweepAndLabels: a sweep over connections is a line chart, a line
// per topology or tool and a flat one for a single stream, each point with
// its interval; the PNG is the same size as the SVG; a long label widens
// the bar chart's label column instead of being cut.
func TestPlotSweepAndLabels(t *testing.T) {
	stats := func(mbps float64) CellStats {
		return CellStats{MedianMBps: mbps, MedianLowMBps: mbps * 0.9, MedianHighMBps: mbps * 1.1}
	}
	res := &Result{
		Options: Options{Scenarios: []Scenario{ScenarioPlain}, Connections: []int{2, 4, 8}, Runs: 3},
		Servers: map[Scenario]string{ScenarioPlain: "built-in origin"},
	}
	for _, n := range []int{2, 4, 8} {
		res.Cells = append(res.Cells,
			Cell{Scenario: ScenarioPlain, Tool: "dlflow", Connections: n, Label: fmt.Sprintf("ranged c=%d", n), MedianMBps: float64(100 * n), MaxMBps: float64(110 * n), Stats: stats(float64(100 * n))},
			Cell{Scenario: ScenarioPlain, Tool: "axel", Connections: n, Label: fmt.Sprintf("axel c=%d", n), MedianMBps: float64(90 * n), MaxMBps: float64(95 * n), Stats: stats(float64(90 * n))})
	}
	res.Cells = append(res.Cells, Cell{Scenario: ScenarioPlain, Tool: "dlflow", Label: "stream", MedianMBps: 150, MaxMBps: 160, Stats: stats(150)})
	svg, err := res.SVG()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Texts []string `xml:"text"`
		Lines []struct {
			Stroke string  `xml:"stroke,attr"`
			Width  float64 `xml:"stroke-width,attr"`
		} `xml:"line"`
	}
	if err := xml.Unmarshal(svg, &doc); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ranged", "axel", "stream", "connections", "2", "4", "8"} {
		if !slices.Contains(doc.Texts, want) {
			t.Errorf("line chart lacks the text %q: %q", want, doc.Texts)
		}
	}
	segments := map[string]int{} // per color: the lines of width 2 join the points
	for _, l := range doc.Lines {
		if l.Width == 2 {
			segments[l.Stroke]++
		}
	}
	if len(segments) != 3 || segments[lineColors[0]] != 2 || segments[lineColors[1]] != 2 || segments[lineColors[2]] != 2 {
		t.Errorf("segments per line: %v, want 3 lines of 2 segments", segments)
	}

	pngData, err := res.PNG()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		t.Fatal(err)
	}
	if w, h := plotSize(res); img.Bounds().Dx() != w || img.Bounds().Dy() != h {
		t.Errorf("PNG %v, want %dx%d", img.Bounds(), w, h)
	}

	long := strings.Repeat("ranged c=8 direct=always writes=8 ", 3)
	res.Options.Connections = []int{8}
	res.Cells = []Cell{{Scenario: ScenarioPlain, Tool: "dlflow", Label: long, MedianMBps: 10, MaxMBps: 10}}
	if lw := labelWidth(res.Cells); lw < textWidth(long) {
		t.Errorf("label column %.0f px for a label of %.0f px", lw, textWidth(long))
	}
	if svg, err = res.SVG(); err != nil || !bytes.Contains(svg, []byte(`text-anchor="end">`+long+`<`)) {
		t.Errorf("bar chart: %v, or the long label is missing", err)
	}
}

// TestMarkdownVsFastestReference: the Markdown table carries the ratio to
// the fastest reference as the text table does, and a dash where a cell
// has no reference at its connections.
func TestMarkdownVsFastestReference(t *testing.T) {
	res := &Result{
		Options: Options{Scenarios: []Scenario{ScenarioCap}, Runs: 3},
		Servers: map[Scenario]string{ScenarioCap: "nginx"},
		Cells: []Cell{
			{Scenario: ScenarioCap, Label: "ranged c=8", Runs: 3, VsFastestReference: 1.037},
			{Scenario: ScenarioCap, Label: "oracle c=8", Tool: "oracle", Runs: 3, VsFastestReference: 1},
			{Scenario: ScenarioCap, Label: "ranged c=4", Runs: 3},
		},
	}
	var md bytes.Buffer
	if err := res.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| vs baseline | vs fastest ref |", "| ranged c=8 | 0.000 s", "| - | 1.04x |", "| - | 1.00x |", "| - | - |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}
