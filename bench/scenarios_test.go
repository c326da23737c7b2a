package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// installed reports whether the reference tool is on PATH; the tests
// expect its row exactly then.
func installed(tool string) bool {
	_, err := exec.LookPath(tool)
	return err == nil
}

// TestRunSmallScenario: the small scenario downloads a batch of files,
// each checked against its own sha256, with dlflow -i (no topology given:
// dlflow picks), curl as xargs -P runs it and aria2c -i; each cell carries
// the origin's counts of requests and connections, in the JSON and the
// table.
func TestRunSmallScenario(t *testing.T) {
	o := testOptions(t)
	o.Scenarios, o.Compare, o.Runs = []Scenario{ScenarioSmall}, true, 2
	o.Files, o.FileSize, o.Jobs, o.Latency = 5, 4<<10, 2, time.Millisecond
	res := run(t, o)
	want := []string{"auto jobs=2"}
	for _, tool := range []string{"curl", "aria2c"} {
		if installed(tool) {
			want = append(want, tool+" jobs=2")
		}
	}
	if got := labels(res.Cells); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	if got, want := res.Servers[ScenarioSmall], "built-in origin on 127.0.0.1, 5 files of 4KiB generated, 1ms before each response, 2 at once"; got != want {
		t.Errorf("server %q, want %q", got, want)
	}
	for _, c := range res.Cells {
		if !c.Verified || c.SHA256 != "ok" || c.Runs != 2 || c.Bytes != 5*4<<10 || c.Files != 5 || c.Jobs != 2 || c.Scenario != ScenarioSmall {
			t.Errorf("%s: %+v", c.Label, c)
		}
		if c.Requests < 5 || c.RequestsPerFile != c.Requests/5 || c.ConnsAccepted < 1 || c.MaxOpenConns < 1 || (c.VsFastestReference <= 0) != (len(res.Cells) == 1) {
			t.Errorf("%s: requests %v (%v per file), connections %v (%d at once), %vx the fastest reference", c.Label, c.Requests, c.RequestsPerFile, c.ConnsAccepted, c.MaxOpenConns, c.VsFastestReference)
		}
		switch c.Tool {
		case "dlflow":
			if c.Topology != "" || c.MemoryBound != 0 || len(c.Stages) != 0 {
				t.Errorf("dlflow's own pick: topology %q, bound %d, %d stages", c.Topology, c.MemoryBound, len(c.Stages))
			}
		case "curl":
			// Two curls of 3 and 2 URLs, each on one kept-alive connection.
			// Whether the two are open at the same moment is the
			// scheduler's choice (a loaded machine may run one curl to its
			// end before the other starts), so only the bounds are checked.
			if c.Requests != 5 || c.ConnsAccepted != 2 || c.MaxOpenConns < 1 || c.MaxOpenConns > 2 {
				t.Errorf("curl: %v requests on %v connections (%d at once), want 5 on 2 (1 or 2 at once)", c.Requests, c.ConnsAccepted, c.MaxOpenConns)
			}
		case "aria2c":
			if c.Requests != 5 || c.ConnsAccepted > 5 {
				t.Errorf("aria2c: %v requests on %v connections, want 5 on at most 5", c.Requests, c.ConnsAccepted)
			}
		}
	}

	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	header := "cell  median time  95% CI  mean ± sd  runs  vs fastest ref  fsync  files/s  MB/s median (min-max)  peak RSS  CPU s  buffer bound  requests  req/file  conns  sha256  bottleneck"
	if len(res.Cells) == 1 {
		header = strings.Replace(header, "  vs fastest ref  fsync", "", 1)
	}
	if lines := strings.Split(table.String(), "\n"); len(lines) < 4 || strings.Join(strings.Fields(lines[2]), " ") != strings.Join(strings.Fields(header), " ") {
		t.Errorf("table header, want %q:\n%s", header, table.String())
	}
	if installed("curl") && !strings.Contains(table.String(), "\ncurl jobs=2 ") {
		t.Errorf("table lacks the curl row:\n%s", table.String())
	}

	if svg, err := res.SVG(); err != nil || !bytes.Contains(svg, []byte(", 5 files of 4KiB generated")) {
		t.Errorf("plot: %v, or its subtitle does not name the batch:\n%s", err, svg)
	}

	objects := cellObjects(t, res)
	names := "busy_runs bytes command conns_accepted cpu_seconds_median durable files jobs label max_mbps max_open_conns median_mbps median_seconds min_mbps origin peak_rss_bytes requests requests_per_file run_count runs scenario seconds sha256 sha256_ok stats tool"
	if len(objects) > 1 {
		names += " time_vs_fastest_reference"
		names = strings.Join(slices.Sorted(slices.Values(strings.Fields(names))), " ")
	}
	if got := strings.Join(slices.Sorted(maps.Keys(objects[0])), " "); got != names {
		t.Errorf("JSON names of the dlflow cell:\n%s\nwant\n%s", got, names)
	}
}

// TestRunWANScenario: in the wan scenario every TCP connection is capped
// over all its responses, so no cell beats its connections' caps; curl
// makes one request on one connection; times are compared with the
// fastest reference tool.
func TestRunWANScenario(t *testing.T) {
	o := testOptions(t)
	o.Scenarios, o.Compare, o.Runs = []Scenario{ScenarioWAN}, true, 1
	o.Size, o.ConnRate, o.Latency = 1<<20, 4<<20, time.Millisecond
	o.Topologies, o.Connections = []string{example("stream.yaml"), example("ranged.yaml")}, []int{2}
	res := run(t, o)
	want := []string{"stream", "ranged c=2"}
	for _, tool := range []string{"curl", "aria2c", "axel"} {
		if installed(tool) {
			want = append(want, map[string]string{"curl": "curl", "aria2c": "aria2c c=2", "axel": "axel c=2"}[tool])
		}
		if tool == "curl" && installed("curl") && installed("sync") {
			want = append(want, "curl + fsync")
		}
	}
	if installed("curl") {
		want = append(want, "oracle c=2")
	}
	if got := labels(res.Cells); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	if got, want := res.Servers[ScenarioWAN], "built-in origin on 127.0.0.1, 1MiB generated, 4MiB/s per TCP connection, 1ms before each response"; got != want {
		t.Errorf("server %q, want %q", got, want)
	}
	fastest := 0
	for _, c := range res.Cells {
		if !c.Verified || c.Bytes != 1<<20 || c.Requests < 1 || c.ConnsAccepted < 1 || c.MaxOpenConns < 1 || c.Files != 0 || c.RequestsPerFile != 0 {
			t.Errorf("%s: %+v", c.Label, c)
		}
		// k connections at once move at most k caps (and a burst each).
		k := time.Duration(c.MaxOpenConns)
		if lower := (1<<20 - k*16<<10) * time.Second / (k * 4 << 20); time.Duration(c.MedianSeconds*float64(time.Second)) < lower {
			t.Errorf("%s: 1 MiB on %d connections of 4 MiB/s in %.3fs, want at least %v", c.Label, c.MaxOpenConns, c.MedianSeconds, lower)
		}
		if c.Tool == "curl" && (c.Requests != 1 || c.ConnsAccepted != 1) {
			t.Errorf("curl: %v requests on %v connections, want 1 on 1", c.Requests, c.ConnsAccepted)
		}
		if len(res.Cells) > 2 && c.VsFastestReference <= 0 {
			t.Errorf("%s: no ratio to the fastest reference", c.Label)
		}
		if c.Tool != "dlflow" && c.VsFastestReference == 1 {
			fastest++
		}
	}
	if len(res.Cells) > 2 && fastest < 1 {
		t.Errorf("no reference row is the fastest reference: %+v", res.Cells)
	}
}

// TestSmallMatrix: the small scenario's cells run dlflow -i with a list
// of "URL NAME" lines, -c only for a topology given; curl gets its share
// of the URLs through xargs.
func TestSmallMatrix(t *testing.T) {
	o := testOptions(t)
	o.Files, o.Jobs, o.Compare = 5, 2, true
	o, err := o.normalized()
	if err != nil {
		t.Fatal(err)
	}
	var files []batchFile
	for i := range 5 {
		files = append(files, batchFile{url: fmt.Sprintf("http://127.0.0.1:1/files/%d.bin", i), name: fmt.Sprintf("%d.bin", i)})
	}
	dir := t.TempDir()
	j := job{files: files, dir: filepath.Join(dir, "out dir"), list: filepath.Join(dir, "list")}
	cells, err := matrix(o, ScenarioSmall, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cells[0].Label != "auto jobs=2" {
		t.Fatalf("first cell %q", cells[0].Label)
	}
	cmd, err := cells[0].command(t.Context(), j)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(cmd.Args[1:], " "), "get -i "+j.list+" --jobs 2 --dir "+j.dir+" -q --no-resume"; got != want {
		t.Errorf("dlflow: %q, want %q", got, want)
	}
	list, err := os.ReadFile(j.list)
	if want := "http://127.0.0.1:1/files/0.bin 0.bin\n"; err != nil || !strings.HasPrefix(string(list), want) || strings.Count(string(list), "\n") != 5 {
		t.Errorf("list %q (%v), want 5 lines starting %q", list, err, want)
	}
	for _, c := range cells[1:] {
		if c.Tool != "curl" {
			continue
		}
		cmd, err := c.command(t.Context(), j)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(cmd.Args[1:], " "); !strings.HasPrefix(got, "-0 -P 2 -n 9 ") || !strings.HasSuffix(got, "curl -sf") {
			t.Errorf("curl: xargs %q, want 9 arguments (3 URLs) per curl, 2 at once", got)
		}
		stdin, _ := io.ReadAll(cmd.Stdin)
		if want := "-o\x00" + filepath.Join(j.dir, "0.bin") + "\x00" + files[0].url + "\x00"; !strings.HasPrefix(string(stdin), want) || strings.Count(string(stdin), "\x00") != 15 {
			t.Errorf("curl's arguments %q, want 15 starting %q", stdin, want)
		}
	}

	topologies, err := loadTopologies([]string{example("stream.yaml")}, dir)
	if err != nil {
		t.Fatal(err)
	}
	o.Topologies, o.Compare = []string{example("stream.yaml")}, false
	cells, err = matrix(o, ScenarioSmall, topologies)
	if err != nil || len(cells) != 1 || cells[0].Label != "stream jobs=2" || cells[0].Topology != "stream.yaml" {
		t.Fatalf("with a topology: %v, %+v", err, cells)
	}
	if cmd, _ := cells[0].command(t.Context(), j); !slices.Contains(cmd.Args, "-c") || !slices.Contains(cmd.Args, topologies[0].path) {
		t.Errorf("with a topology: %q lacks -c %s", cmd.Args, topologies[0].path)
	}
}

// TestVerifyBatch: every file of a batch is checked against its own sum:
// a file with another's content, and a missing one, fail the run.
func TestVerifyBatch(t *testing.T) {
	const size = 1000
	dir := t.TempDir()
	var files []batchFile
	for i := range 3 {
		f := batchFile{name: fmt.Sprintf("%d.bin", i), sha: origin.SHA256Hex(size, origin.FileSeed(1, i))}
		if err := origin.WriteFile(filepath.Join(dir, f.name), size, origin.FileSeed(1, i)); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if total, err := verifyBatch(dir, files); err != nil || total != 3*size {
		t.Fatalf("a good batch: %d bytes, %v", total, err)
	}
	if err := origin.WriteFile(filepath.Join(dir, "1.bin"), size, origin.FileSeed(1, 2)); err != nil {
		t.Fatal(err)
	}
	_, err := verifyBatch(dir, files)
	want := fmt.Sprintf("1.bin: sha256 mismatch: got %s, want %s", files[2].sha, files[1].sha)
	if err == nil || err.Error() != want || !errors.As(err, new(*mismatchError)) {
		t.Errorf("file 1 with file 2's content: %v; want %q", err, want)
	}
	if err := os.Remove(filepath.Join(dir, "1.bin")); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyBatch(dir, files); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "1.bin") {
		t.Errorf("file 1 missing: %v", err)
	}
}

// TestScenarioDefaults: the zero options give the wan and small scenarios
// the figures of issue #14: 10 MiB/s per connection and 100 ms; 300 files
// of 16 KiB, 50 ms, 8 at once, each file of its own content.
func TestScenarioDefaults(t *testing.T) {
	o, err := Options{Executable: "/bin/false", Size: 1 << 20}.normalized()
	if err != nil {
		t.Fatal(err)
	}
	if o.ConnRate != 10<<20 || o.Files != 300 || o.FileSize != 16<<10 || o.Jobs != 8 || o.Latency != 0 {
		t.Errorf("defaults: %+v", o)
	}
	for _, tc := range []struct {
		scenario Scenario
		desc     string
	}{
		{ScenarioLatency, "built-in origin on 127.0.0.1, 1MiB generated, 20ms before each response"},
		{ScenarioWAN, "built-in origin on 127.0.0.1, 1MiB generated, 10MiB/s per TCP connection, 100ms before each response"},
		{ScenarioSmall, "built-in origin on 127.0.0.1, 300 files of 16KiB generated, 50ms before each response, 8 at once"},
	} {
		srv, err := startServer(o, tc.scenario, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		srv.close()
		if srv.desc != tc.desc {
			t.Errorf("%s: %q, want %q", tc.scenario, srv.desc, tc.desc)
		}
		if tc.scenario != ScenarioSmall {
			continue
		}
		sums := map[string]bool{}
		for _, f := range srv.files {
			sums[f.sha] = true
		}
		if len(srv.files) != 300 || len(sums) != 300 || srv.files[299].name != "299.bin" || srv.url != "" {
			t.Errorf("small: %d files, %d sums, the last named %q, url %q", len(srv.files), len(sums), srv.files[len(srv.files)-1].name, srv.url)
		}
	}
	o.Latency = 3 * time.Millisecond
	for _, s := range []Scenario{ScenarioLatency, ScenarioWAN, ScenarioSmall} {
		if got := o.latency(s); got != 3*time.Millisecond {
			t.Errorf("%s: latency %v, want the 3ms given", s, got)
		}
	}
}

// TestRunBatchCancelled: cancelling a batch stops it and leaves nothing.
func TestRunBatchCancelled(t *testing.T) {
	o := testOptions(t)
	// 40 files, one at a time, a second before each response.
	o.Scenarios, o.Files, o.FileSize, o.Jobs, o.Latency = []Scenario{ScenarioSmall}, 40, 1<<10, 1, time.Second
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	stop := errors.New("stopped by the test")
	o.Progress = func(e Event) {
		if e.Kind == RunStarted {
			time.AfterFunc(300*time.Millisecond, func() { cancel(stop) })
		}
	}
	start := time.Now()
	if res, err := Run(ctx, o); res != nil || !errors.Is(err, stop) {
		t.Fatalf("got %v, %v; want the cause", res, err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run returned after %v", d)
	}
	// The examples written for the matrix stay; nothing of the run does.
	left, _ := os.ReadDir(o.Dir)
	for _, e := range left {
		if filepath.Ext(e.Name()) != ".yaml" {
			t.Errorf("%s left in the directory", e.Name())
		}
	}
}

// TestRunCapScenarioWithOracle: the cap scenario caps every response, and
// the oracle makes exactly N range requests on N connections, the last
// range taking the remainder of a size that N does not divide; its output
// is verified like any other and its parts are not left behind.
func TestRunCapScenarioWithOracle(t *testing.T) {
	if !installed("curl") {
		t.Skip("curl is not installed")
	}
	const size = 2<<20 + 3
	o := testOptions(t)
	o.Scenarios, o.Compare, o.Tools, o.Runs = []Scenario{ScenarioCap}, true, []string{"oracle"}, 2
	o.Size, o.Rate = size, 16<<20
	o.Topologies, o.Connections = []string{example("ranged.yaml")}, []int{3}
	res := run(t, o)
	if got, want := labels(res.Cells), []string{"ranged c=3", "oracle c=3"}; !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	if got, want := res.Servers[ScenarioCap], "built-in origin on 127.0.0.1, 2MiB generated, 16MiB/s per request (as nginx's limit_rate)"; !strings.HasPrefix(got, "built-in origin on 127.0.0.1, ") || !strings.HasSuffix(got, ", 16MiB/s per request (as nginx's limit_rate)") {
		t.Errorf("server %q, want %q", got, want)
	}
	for _, c := range res.Cells {
		if !c.Verified || c.Bytes != size || c.Runs != 2 || c.Error != "" {
			t.Errorf("%s: verified %v, %d bytes, %d runs, error %q", c.Label, c.Verified, c.Bytes, c.Runs, c.Error)
		}
	}
	oracle := res.Cells[1]
	// How many are open at once is the scheduler's: curls started together
	// may still run one after the other on a loaded machine.
	if oracle.Tool != "oracle" || oracle.Connections != 3 || oracle.Requests != 3 || oracle.ConnsAccepted != 3 || oracle.MaxOpenConns < 1 || oracle.MaxOpenConns > 3 {
		t.Errorf("oracle: tool %q, %d connections, %v requests on %v connections (%d at once), want 3 on 3",
			oracle.Tool, oracle.Connections, oracle.Requests, oracle.ConnsAccepted, oracle.MaxOpenConns)
	}
	if !strings.HasPrefix(oracle.ToolVersion, "curl ") {
		t.Errorf("oracle's version %q, want curl's", oracle.ToolVersion)
	}
	if left, _ := os.ReadDir(o.Dir); len(left) != 0 {
		t.Errorf("%d file(s) left in Dir after the bench, such as %s", len(left), left[0].Name())
	}
}

// TestOracleScenarios: the oracle needs a size known in advance and
// ranges: no row in slowconn, small or for an external URL.
func TestOracleScenarios(t *testing.T) {
	if !installed("curl") {
		t.Skip("curl is not installed")
	}
	o := Options{Size: 1 << 20, Connections: []int{2, 4}}
	for _, s := range []Scenario{ScenarioPlain, ScenarioRateLimit, ScenarioCap, ScenarioLatency, ScenarioWAN} {
		if got := labels(cellsOf(oracleCells(o, s))); !slices.Equal(got, []string{"oracle c=2", "oracle c=4"}) {
			t.Errorf("%s: %q", s, got)
		}
	}
	for _, s := range []Scenario{ScenarioSlowConn, ScenarioSmall, ScenarioMirrors} {
		if got := oracleCells(o, s); len(got) != 0 {
			t.Errorf("%s: %d oracle cells, want none", s, len(got))
		}
	}
	o.Origin = OriginExternal
	if got := oracleCells(o, ScenarioPlain); len(got) != 0 {
		t.Errorf("external: %d oracle cells, want none", len(got))
	}
}

func cellsOf(cs []*cell) []Cell {
	var out []Cell
	for _, c := range cs {
		out = append(out, c.Cell)
	}
	return out
}

// TestOracleWritesInPlace: the oracle's curls write their ranges at their
// offsets of one file (no part files), and a range that fails (here the
// server answers 404 to the second) fails the whole command, not only the
// dd behind it.
func TestOracleWritesInPlace(t *testing.T) {
	if !installed("curl") || !installed("bash") || !installed("dd") {
		t.Skip("needs curl, bash and dd")
	}
	curl, _ := exec.LookPath("curl")
	data := make([]byte, 3<<20+5)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	var failSecond atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failSecond.Load() && strings.HasPrefix(r.Header.Get("Range"), fmt.Sprintf("bytes=%d-", len(data)/3)) {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	dir := t.TempDir()
	for _, fail := range []bool{false, true} {
		failSecond.Store(fail)
		out := filepath.Join(dir, fmt.Sprint("out-", fail))
		c := oracleCell(OriginGo, ScenarioCap, curl, 3, int64(len(data)))
		cmd, err := c.command(t.Context(), job{url: srv.URL + "/f", out: out})
		if err != nil {
			t.Fatal(err)
		}
		output, err := cmd.CombinedOutput()
		got, _ := os.ReadFile(out)
		switch {
		case fail && err == nil:
			t.Errorf("a range answered 404: the oracle exited 0 (%s)", output)
		case !fail && err != nil:
			t.Errorf("oracle: %v: %s", err, output)
		case !fail && !bytes.Equal(got, data):
			t.Errorf("oracle wrote %d bytes, not the file's %d (or other bytes)", len(got), len(data))
		}
		if left, _ := filepath.Glob(out + ".part*"); len(left) != 0 {
			t.Errorf("part files left: %v", left)
		}
	}
}
