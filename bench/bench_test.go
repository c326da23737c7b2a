package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/stages"
)

// The tests run benches on tiny files: they check what a bench measures and
// renders, never its timings. Each download is a child process: this test
// binary, acting as the CLI (see TestMain).

func example(name string) string { return filepath.Join("..", "examples", name) }

// testOptions runs the downloads with this test binary and knows the
// built-in stage types; the race runtime of each child does not sleep a
// second at exit.
func testOptions(t *testing.T) Options {
	t.Helper()
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	reg := pipeline.NewRegistry()
	if err := errors.Join(stages.Register(reg), sinks.Register(reg)); err != nil {
		t.Fatal(err)
	}
	return Options{Executable: exe, Env: []string{"RUN_DLFLOW_CLI=1"}, Registry: reg, Dir: t.TempDir()}
}

// run runs a bench that must succeed, within a bound.
func run(t *testing.T, o Options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func labels(cells []Cell) []string {
	var out []string
	for _, c := range cells {
		out = append(out, c.Label)
	}
	return out
}

// TestRunMatrix: a topology without readers or splitter is one cell, one
// with them a cell per connection count and piece size; every cell is
// verified and measured, with per-stage metrics from the child.
func TestRunMatrix(t *testing.T) {
	o := testOptions(t)
	o.Size, o.Runs = 2<<20, 1
	o.Topologies = []string{example("stream.yaml"), example("ranged-ordered.yaml")}
	o.Connections, o.Pieces = []int{2, 4}, []pipeline.ByteSize{512 << 10}
	res := run(t, o)
	cells := res.Cells
	want := []string{"stream", "ranged-ordered c=2 piece=512KiB", "ranged-ordered c=4 piece=512KiB"}
	if got := labels(cells); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	for _, c := range cells {
		if c.Scenario != ScenarioPlain || c.Origin != OriginGo || c.Tool != "dlflow" || c.Runs != 1 || c.Bytes != 2<<20 {
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
	if res.Failed() || res.Servers[ScenarioPlain] != "built-in origin on 127.0.0.1, 2MiB generated" {
		t.Errorf("failed %v, servers %q", res.Failed(), res.Servers)
	}

	// The JSON names are a contract: scripts read them.
	objects := cellObjects(t, res)
	if len(objects) != 3 {
		t.Fatalf("JSON: %d cells, want 3", len(objects))
	}
	common := "bottleneck busy_runs bytes command conns_accepted cpu_seconds_median durable label max_mbps max_open_conns median_mbps median_seconds memory_bound_bytes min_mbps origin peak_rss_bytes requests run_count runs scenario seconds sha256 sha256_ok stages stats tool topology"
	if got := strings.Join(slices.Sorted(maps.Keys(objects[0])), " "); got != common {
		t.Errorf("JSON names of the stream cell:\n%s\nwant\n%s", got, common)
	}
	if got, want := strings.Join(slices.Sorted(maps.Keys(objects[1])), " "), "bottleneck busy_runs bytes command connections conns_accepted cpu_seconds_median durable label max_mbps max_open_conns median_mbps median_seconds memory_bound_bytes min_mbps origin peak_rss_bytes piece_bytes requests run_count runs scenario seconds sets sha256 sha256_ok stages stats tool topology ttfb_ms"; got != want {
		t.Errorf("JSON names of a ranged cell:\n%s\nwant\n%s", got, want)
	}
	if objects[1]["sets"].([]any)[0] != "stages.split.config.piece=512KiB" || objects[1]["piece_bytes"] != float64(512<<10) {
		t.Errorf("ranged cell: sets %v, piece_bytes %v", objects[1]["sets"], objects[1]["piece_bytes"])
	}
}

// TestRunTableScenariosAndPlot: a table per scenario with its origin, the
// per-stage table, and a plot with a bar per cell; the progress events
// name every run.
func TestRunTableScenariosAndPlot(t *testing.T) {
	o := testOptions(t)
	o.Size, o.Runs = 1<<20, 2
	o.Topologies = []string{example("stream.yaml"), example("ranged.yaml")}
	o.Connections = []int{2}
	o.Scenarios = []Scenario{ScenarioPlain, ScenarioLatency, ScenarioSlowConn}
	o.Latency, o.Trickle, o.SlowRequest = time.Millisecond, 4<<20, 1
	var events []string
	estimates := 0
	o.Progress = func(e Event) {
		if e.Kind == Estimated {
			estimates++
			return
		}
		events = append(events, fmt.Sprintf("%d %s %s %s %d/%d", e.Kind, e.Scenario, e.Server, e.Cell, e.Run, e.Runs))
	}
	res := run(t, o)
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	out := table.String()
	for _, want := range []string{
		"scenario plain: built-in origin on 127.0.0.1, 1MiB generated; 2 run(s) per cell\n",
		"\nscenario latency: built-in origin on 127.0.0.1, 1MiB generated, 1ms before each response; 2 run(s) per cell\n",
		"\nscenario slowconn: built-in origin on 127.0.0.1, 1MiB generated, GET #1 trickles at 4MiB/s; 2 run(s) per cell\n",
		"cell", "MB/s median (min-max)", "peak RSS", "buffer bound", "bottleneck",
		"input queue fill", "send blocked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "stream" || f[0] == "ranged") && strings.Contains(line, " ok ") {
			rows++
		}
	}
	if rows != 6 { // two cells in each of three scenarios
		t.Errorf("%d verified rows, want 6:\n%s", rows, out)
	}
	wantEvents := []string{
		"1 plain built-in origin on 127.0.0.1, 1MiB generated  0/0",
		"2 plain  stream 1/2", "2 plain  ranged c=2 1/2", "2 plain  ranged c=2 2/2", "2 plain  stream 2/2",
	}
	if len(events) != 15 || !slices.Equal(events[:5], wantEvents) {
		t.Errorf("%d events, starting %q; want 15 starting %q", len(events), events[:min(5, len(events))], wantEvents)
	}
	// An estimate before each scenario and after its first round.
	if estimates != 6 {
		t.Errorf("%d estimates, want 6 (2 per scenario)", estimates)
	}

	data, err := res.SVG()
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
	for _, want := range []string{"scenario slowconn: built-in origin on 127.0.0.1, 1MiB generated, GET #1 trickles at 4MiB/s", "ranged c=2", "stream"} {
		if !slices.Contains(svg.Texts, want) {
			t.Errorf("plot lacks the label %q", want)
		}
	}
	if !slices.ContainsFunc(svg.Texts, func(s string) bool {
		return strings.HasPrefix(s, "dlflow ") && strings.HasSuffix(s, "2 run(s) per cell")
	}) {
		t.Errorf("plot lacks a footer with the version and runs: %q", svg.Texts)
	}
}

// TestRunExternalURL: outputs of a URL are unverified without an expected
// sum (and the first one's sum is reported), verified with the right one,
// and failed with a wrong one.
func TestRunExternalURL(t *testing.T) {
	const size = 1<<20 + 5
	srv, err := origin.Start(origin.Options{Size: size, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	o := testOptions(t)
	o.URL, o.Runs, o.Topologies = srv.URL(), 1, []string{example("stream.yaml")}
	var unverified []string
	o.Progress = func(e Event) {
		if e.Kind == Unverified {
			unverified = append(unverified, e.SHA256)
		}
	}
	res := run(t, o)
	if c := res.Cells[0]; len(res.Cells) != 1 || c.SHA256 != "unverified" || c.Verified || c.Origin != OriginExternal || c.Scenario != ScenarioExternal || c.Bytes != size || res.Failed() {
		t.Errorf("without a sum: %+v", res.Cells)
	}
	if want := origin.SHA256Hex(size, 9); !slices.Equal(unverified, []string{want}) {
		t.Errorf("unverified events %q, want the sum %s", unverified, want)
	}

	o.SHA256 = strings.ToUpper(origin.SHA256Hex(size, 9))
	if res := run(t, o); !res.Cells[0].Verified || res.Cells[0].SHA256 != "ok" || res.Failed() {
		t.Errorf("with the right sum: %+v", res.Cells[0])
	}

	o.SHA256 = strings.Repeat("0", 64)
	res = run(t, o)
	c := res.Cells[0]
	if c.Verified || c.SHA256 != "failed" || !res.Failed() || !strings.HasPrefix(c.Error, "sha256 mismatch: got "+origin.SHA256Hex(size, 9)) || c.Runs != 0 {
		t.Errorf("with a wrong sum: %+v", c)
	}
}

// TestRunTopologyErrors: a topology that does not load, or does not take
// an override, is a *TopologyError before any run.
func TestRunTopologyErrors(t *testing.T) {
	o := testOptions(t)
	o.Size, o.Topologies = 1<<20, []string{example("stream.yaml")}
	o.Sets = []string{"stages.write.config.fsnc=false"}
	runs := 0
	o.Progress = func(e Event) {
		if e.Kind == RunStarted {
			runs++
		}
	}
	res, err := Run(t.Context(), o)
	var te *TopologyError
	if res != nil || !errors.As(err, &te) || !strings.HasPrefix(err.Error(), "stream: ") || !strings.Contains(err.Error(), `unknown key "fsnc" (did you mean "fsync"?)`) || runs != 0 {
		t.Errorf("a bad --set: result %v, error %v, %d runs", res, err, runs)
	}

	o.Sets, o.Topologies = nil, []string{filepath.Join(t.TempDir(), "missing.yaml")}
	if _, err := Run(t.Context(), o); !errors.As(err, &te) || !errors.Is(err, fs.ErrNotExist) || te.Path != o.Topologies[0] {
		t.Errorf("a missing topology: %v", err)
	}
}

// TestOptionsErrors: options that cannot run fail before anything starts.
func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Options)
		want string
	}{
		{func(o *Options) { o.Executable = "" }, "no executable to run the downloads"},
		{func(o *Options) { o.Scenarios = []Scenario{"fast"} }, `unknown scenario "fast"`},
		{func(o *Options) { o.Origin = OriginNginx; o.Scenarios = []Scenario{ScenarioSlowConn} }, "nginx serves the plain, ratelimit, cap and extract scenarios only, not slowconn"},
		{func(o *Options) { o.Origin = "apache" }, `unknown origin "apache"`},
		{func(o *Options) { o.SHA256 = strings.Repeat("0", 64) }, "an expected sha256 goes with an external URL; the built-in origin's is known"},
		{func(o *Options) { o.URL = "http://127.0.0.1:1/x"; o.SHA256 = "abc" }, `sha256 of external: want 64 hex digits, got "abc"`},
		{func(o *Options) { o.URL = "http://127.0.0.1:1/x"; o.Scenarios = []Scenario{ScenarioLatency} }, "an external URL is benchmarked as it is: scenarios and origins are the built-in origin's"},
		{func(o *Options) { o.Runs = -1 }, "runs, size, rate, trickle, slow request and latency must not be negative"},
		{func(o *Options) { o.Connections = []int{4, -1} }, "connections must not be negative, got [4 -1]"},
		{func(o *Options) { o.Vary = []Vary{{Key: "stages.write.config.fsync"}} }, `vary "stages.write.config.fsync": want a key and at least one value`},
	} {
		o := Options{Executable: "/bin/false", Dir: t.TempDir()}
		tc.set(&o)
		if res, err := Run(t.Context(), o); res != nil || err == nil || err.Error() != tc.want {
			t.Errorf("got %v, %v; want the error %q", res, err, tc.want)
		}
	}
}

// TestRunCancelled: cancelling stops the running child (and, under GNU
// time, the download that time runs: they share a process group) and Run
// returns the cause, leaving nothing in the directory.
func TestRunCancelled(t *testing.T) {
	o := testOptions(t)
	// A 32-second download: 4MiB on one connection at 128KiB/s.
	o.Size, o.Topologies = 4<<20, []string{example("stream.yaml")}
	o.Scenarios, o.Rate = []Scenario{ScenarioRateLimit}, 128<<10
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	stop := errors.New("stopped by the test")
	cancelledAt := make(chan time.Time, 1)
	o.Progress = func(e Event) {
		if e.Kind == RunStarted {
			time.AfterFunc(300*time.Millisecond, func() {
				cancelledAt <- time.Now()
				cancel(stop)
			})
		}
	}
	res, err := Run(ctx, o)
	if res != nil || !errors.Is(err, stop) {
		t.Fatalf("got %v, %v; want the cause", res, err)
	}
	// Had the download outlived a killed GNU time, Run would wait for it
	// (it holds the stderr pipe) until its 32 seconds were over.
	if d := time.Since(<-cancelledAt); d > 15*time.Second {
		t.Errorf("Run returned %v after the cancellation", d)
	}
	if left, _ := os.ReadDir(o.Dir); len(left) != 0 {
		t.Errorf("%d file(s) left in the directory, such as %s", len(left), left[0].Name())
	}
}

// TestCompareWithReferenceTools: curl, aria2c and axel, where installed,
// are reference rows, verified like any other and measured; every run
// starts from scratch, also over the partial output of an interrupted
// bench, and leaves nothing behind.
func TestCompareWithReferenceTools(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	o := testOptions(t)
	if err := os.WriteFile(filepath.Join(o.Dir, "out.bin"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	o.Size, o.Runs, o.Topologies, o.Compare = 1<<20, 2, []string{example("stream.yaml")}, true
	res := run(t, o)
	cells := res.Cells
	// curl, aria2c and axel are optional: a reference row appears only when
	// the tool is installed.
	tools := map[string]bool{}
	for _, c := range cells[1:] {
		tools[c.Tool] = true
		if !slices.Contains(ReferenceTools, c.Tool) || !c.Verified || c.Runs != 2 || c.Bytes != 1<<20 || len(c.Stages) != 0 || c.MemoryBound != 0 {
			t.Errorf("reference row %+v", c)
		}
		if !strings.HasPrefix(c.Tool, "curl") && (c.Connections != 8 || c.Label != fmt.Sprintf("%s c=8", c.Tool)) {
			t.Errorf("%s: connections %d, label %q; want the default 8", c.Tool, c.Connections, c.Label)
		}
		if timeTool() != "" && c.PeakRSS <= 0 {
			t.Errorf("%s: peak RSS %d, want it measured", c.Label, c.PeakRSS)
		}
	}
	for _, tool := range []string{"curl", "aria2c", "axel"} {
		if _, err := exec.LookPath(tool); err == nil && (!tools[tool] || tool == "curl" && !tools["oracle"]) {
			t.Errorf("%s is installed but has no reference row", tool)
		}
	}
	if left, _ := os.ReadDir(o.Dir); len(left) != 0 {
		t.Errorf("%d file(s) left in Dir after the bench, such as %s", len(left), left[0].Name())
	}

	// Beside curl, "curl + fsync" times curl and an fsync of its output
	// together; the fsync column says which rows write durably: dlflow's
	// and that one.
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	rows, _, _ := strings.Cut(table.String(), "\nper stage:") // the rows, not the per-stage table
	lines := strings.Split(rows, "\n")
	col := -1 // the fsync column's offset: tabwriter aligns the values under it
	for _, line := range lines {
		if strings.HasPrefix(line, "cell ") {
			col = strings.Index(line, "  fsync  ") + 2
		}
	}
	if col < 2 {
		t.Fatalf("no fsync column:\n%s", table.String())
	}
	durable := map[string]string{} // label -> the fsync column
	for _, line := range lines {
		for _, c := range cells {
			if strings.HasPrefix(line, c.Label+"  ") && len(line) > col {
				durable[c.Label] = strings.Fields(line[col:])[0]
			}
		}
	}
	for _, c := range cells {
		want := c.Tool == "dlflow" || c.Label == "curl + fsync"
		if c.Durable != want || durable[c.Label] != yesNo(want) {
			t.Errorf("%s: durable %v, fsync column %q; want %v", c.Label, c.Durable, durable[c.Label], want)
		}
	}
	if installed("curl") && installed("sync") && !tools["curl+fsync"] {
		t.Errorf("curl is installed but there is no curl + fsync row:\n%s", table.String())
	}
}

// A --set or a topology line that turns fsync off makes a dlflow row not
// durable.
func TestDurableRows(t *testing.T) {
	off := filepath.Join(t.TempDir(), "nosync.yaml")
	if err := os.WriteFile(off, []byte("stages:\n  write:\n    type: file.sink\n    config:\n      fsync: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		topology string
		sets     []string
		want     bool
	}{
		{"", nil, true},
		{example("ranged.yaml"), []string{"stages.fetch.workers=4"}, true},
		{example("ranged.yaml"), []string{"stages.write.config.fsync=false"}, false},
		{off, nil, false},
	} {
		if got := fsyncs(tc.topology, tc.sets); got != tc.want {
			t.Errorf("%s %v: durable %v, want %v", tc.topology, tc.sets, got, tc.want)
		}
	}
}

// TestAxelStartsFresh runs the axel cell over the leftovers of an
// interrupted axel run: next to an output alone axel refuses to start, and
// with its state file it resumes; the bench must remove both first.
func TestAxelStartsFresh(t *testing.T) {
	axel, err := exec.LookPath("axel")
	if err != nil {
		t.Skip("axel is not installed")
	}
	const size = 1<<20 + 7
	srv, err := origin.Start(origin.Options{Size: size, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	bsrv := &server{url: srv.URL(), sha: origin.SHA256Hex(size, 5), reset: func() {}}
	for _, stale := range [][]string{{"out.bin"}, {"out.bin", "out.bin.st"}, {"out.bin.st"}} {
		dir := t.TempDir()
		for _, name := range stale {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("stale"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c := axelCell(OriginGo, ScenarioPlain, axel, 4)
		// Resuming from a bogus state file can hang: fail instead.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := runOnce(ctx, c, bsrv, dir, false)
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

func TestReferenceConnections(t *testing.T) {
	for _, tc := range []struct {
		conns []int
		limit int
		want  []int
	}{
		{[]int{0}, 16, []int{8}},             // the topologies' own: 8
		{[]int{4, 8}, 16, []int{4, 8}},       // one cell each
		{[]int{8, 32, 64}, 16, []int{8, 16}}, // capped, without duplicates
	} {
		if got := referenceConnections(tc.conns, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("connections %v, limit %d: got %v, want %v", tc.conns, tc.limit, got, tc.want)
		}
	}
}

// TestVary: Vary makes one cell per value (every combination of several),
// on top of Sets, and each cell's bound is validate's for its own
// overrides: direct: always counts the chunks its writes in flight hold.
func TestVary(t *testing.T) {
	o := testOptions(t)
	o.Size, o.Topologies = 1<<20, []string{example("stream.yaml")}
	o.Sets = []string{"stages.progress.config.interval=5s"}
	o.Vary = []Vary{
		{Key: "stages.write.config.direct", Values: []string{"always", "never"}},
		{Key: "stages.write.config.preallocate", Values: []string{"false", "true"}},
	}
	res := run(t, o)
	bound := map[string]int64{}
	for _, c := range res.Cells {
		bound[c.Label] = c.MemoryBound
		if !c.Verified || c.Runs != 1 || c.Sets[0] != "stages.progress.config.interval=5s" || len(c.Sets) != 3 {
			t.Errorf("%s: verified %v, runs %d, sets %q", c.Label, c.Verified, c.Runs, c.Sets)
		}
	}
	want := []string{
		"stream direct=always preallocate=false", "stream direct=always preallocate=true",
		"stream direct=never preallocate=false", "stream direct=never preallocate=true",
	}
	if got := labels(res.Cells); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	// always: 3 writes in flight of 1 MiB (12 chunks of 256 KiB) and a
	// queue of 2; never: one chunk in hand and a queue of 8.
	if got := bound[want[0]] - bound[want[2]]; got != 5*256<<10 {
		t.Errorf("direct: always adds %d bytes to the bound, want the 5 chunks of 256 KiB that 3 writes in flight of 1 MiB and a queue of 2 hold beyond a queue of 8 and one chunk", got)
	}
}

// TestVaryLabels: a varied key is labelled by its last part, unless two
// keys share it.
func TestVaryLabels(t *testing.T) {
	combos := combinations([]Vary{
		{Key: "stages.fetch.config.buffer", Values: []string{"1MiB"}},
		{Key: "stages.write.config.buffer", Values: []string{"2MiB", "4MiB"}},
		{Key: "stages.write.config.fsync", Values: []string{"false"}},
	})
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
	if c := combos[1]; c[1].set != "stages.write.config.buffer=4MiB" {
		t.Errorf("the set of a value: %q", c[1].set)
	}
}

// cellObjects decodes the results document's cells as JSON objects.
func cellObjects(t *testing.T, res *Result) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct{ Cells []map[string]any }
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("JSON: %v\n%s", err, buf.String())
	}
	return doc.Cells
}
