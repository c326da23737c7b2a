package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/internal/nginxtest"
	"github.com/dlflow/dlflow/pipeline"
)

// benchCell is one cell of the matrix (a topology with a number of
// connections and a piece size, or a reference tool) in one scenario, with
// its measurements over all runs. It is also the JSON output.
type benchCell struct {
	Scenario    string   `json:"scenario"`
	Origin      string   `json:"origin"` // go, nginx or external
	Tool        string   `json:"tool"`   // dlflow, curl, aria2c or axel
	Topology    string   `json:"topology,omitempty"`
	Connections int      `json:"connections,omitempty"` // 0: the topology's own, or one stream
	Piece       int64    `json:"piece_bytes,omitempty"` // 0: the topology's own
	Sets        []string `json:"sets,omitempty"`        // --set and --vary overrides
	Label       string   `json:"label"`

	Runs          int       `json:"runs"`
	Bytes         int64     `json:"bytes"`
	Seconds       []float64 `json:"seconds"`
	MedianSeconds float64   `json:"median_seconds"`
	MedianMBps    float64   `json:"median_mbps"`
	MinMBps       float64   `json:"min_mbps"`
	MaxMBps       float64   `json:"max_mbps"`
	PeakRSS       int64     `json:"peak_rss_bytes"`
	CPUSeconds    float64   `json:"cpu_seconds_median"`
	MemoryBound   int64     `json:"memory_bound_bytes,omitempty"`
	// SHA256 is "ok", "unverified" (an external URL without --sha256) or
	// "failed"; Verified is true for "ok" only.
	SHA256   string `json:"sha256"`
	Verified bool   `json:"sha256_ok"`
	// Bottleneck is the stage that limits the run (see
	// pipeline.MetricsSnapshot.Bottleneck), and Stages its per-stage
	// counters averaged over the runs; dlflow cells only.
	Bottleneck string                  `json:"bottleneck,omitempty"`
	Stages     []pipeline.StageMetrics `json:"stages,omitempty"`
	Error      string                  `json:"error,omitempty"`

	command func(ctx context.Context, url, out, metrics string) *exec.Cmd // one run's child process
	where   string                                                        // the server, for the table's heading
	mbps    []float64
	cpu     []float64
	metrics []pipeline.MetricsSnapshot
}

func (c *benchCell) failed() bool { return c.Error != "" }

// benchServer is what the cells download from in one scenario.
type benchServer struct {
	url   string
	sha   string // "": unknown, outputs are unverified
	size  int64  // -1: unknown
	desc  string
	reset func() // before every run: fault counters back to zero
	close func()
}

func runBench(ctx context.Context, f *benchFlags, progress io.Writer) ([]*benchCell, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir := f.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "dlflow-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	topologies, err := benchTopologies(f.configs, dir)
	if err != nil {
		return nil, err
	}
	var all []*benchCell
	for _, scenario := range f.scenarios {
		srv, err := startBenchServer(f, scenario, dir)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", scenario, err)
		}
		cells, err := benchCells(f, scenario, exe, topologies)
		for _, c := range cells {
			c.where = srv.desc
		}
		if err == nil {
			fmt.Fprintf(progress, "bench: scenario %s: %s\n", scenario, srv.desc)
			err = runCells(ctx, f, srv, cells, dir, progress)
		}
		srv.close()
		all = append(all, cells...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// runCells runs every cell f.runs times, round-robin (run 1 of every cell,
// then run 2, ...), so that a change in the machine's load spreads over all
// cells instead of skewing one; then it summarizes each cell. Each round
// starts one cell further, so that no cell always follows the same one: on
// a VM the host may still be flushing the previous run's writes after our
// sync, and that slowed whichever cell came right after the reference
// tools.
func runCells(ctx context.Context, f *benchFlags, srv *benchServer, cells []*benchCell, dir string, progress io.Writer) error {
	out := filepath.Join(dir, "out.bin")
	metricsFile := filepath.Join(dir, "metrics.json")
	for i := range f.runs {
		for k := range cells {
			c := cells[(i+k)%len(cells)]
			if c.failed() {
				continue
			}
			fmt.Fprintf(progress, "bench: %s: %s run %d/%d\n", c.Scenario, c.Label, i+1, f.runs)
			sum, err := runOnce(ctx, c, srv, out, metricsFile)
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if err != nil {
				c.Error = err.Error()
				if strings.HasPrefix(c.Error, "sha256 mismatch") {
					c.SHA256 = "failed"
				}
				continue
			}
			if srv.sha == "" {
				c.SHA256 = "unverified"
				if i == 0 && c == cells[0] {
					fmt.Fprintf(progress, "bench: sha256 of the first output: %s (unverified)\n", sum)
				}
			}
		}
	}
	for _, c := range cells {
		c.summarize()
	}
	return nil
}

// runOnce runs a cell once from a clean slate, checks the output's sha256
// and records the measurements; it returns the output's sha256.
func runOnce(ctx context.Context, c *benchCell, srv *benchServer, out, metricsFile string) (string, error) {
	files := runFiles(out, metricsFile)
	defer removeFiles(files)
	if err := removeFiles(files); err != nil {
		return "", fmt.Errorf("clean up before the run: %w", err)
	}
	srv.reset()
	// Reference tools do not fsync: without a sync their dirty pages
	// would be written back during the next row's run.
	unix.Sync()
	m, err := benchOnce(c.command(ctx, srv.url, out, metricsFile), out+".rss")
	if err != nil {
		return "", err
	}
	sum, err := verify(out, srv.sha)
	if err != nil {
		return sum, err
	}
	return sum, c.record(m, out, metricsFile)
}

// runFiles are the files a run may leave behind: the output, dlflow's
// temporary file and its resume state, aria2c's control file, axel's state
// file, and the per-stage metrics.
func runFiles(out, metricsFile string) []string {
	return []string{out, out + ".tmp", out + ".tmp.state", out + ".aria2", out + ".st", out + ".rss", metricsFile}
}

// removeFiles removes the files that exist. It runs before every run as
// well as after: a leftover of an interrupted bench in --dir would make
// aria2c resume from its control file, and axel resume from its state file
// or, with the output alone, refuse to start ("No state file, cannot
// resume!").
func removeFiles(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// record adds one run's measurements.
func (c *benchCell) record(m measurement, out, metricsFile string) error {
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	if c.Bytes = fi.Size(); c.Bytes == 0 {
		return errors.New("empty output")
	}
	c.Seconds = append(c.Seconds, m.wall.Seconds())
	c.mbps = append(c.mbps, float64(c.Bytes)/m.wall.Seconds()/1e6)
	c.cpu = append(c.cpu, m.cpu.Seconds())
	c.PeakRSS = max(c.PeakRSS, m.maxRSS)
	if c.Tool == "dlflow" {
		data, err := os.ReadFile(metricsFile)
		if err != nil {
			return fmt.Errorf("per-stage metrics: %w", err)
		}
		var snap pipeline.MetricsSnapshot
		if err := json.Unmarshal(data, &snap); err != nil {
			return fmt.Errorf("per-stage metrics: %w", err)
		}
		c.metrics = append(c.metrics, snap)
	}
	return nil
}

// summarize turns the runs into the reported figures.
func (c *benchCell) summarize() {
	c.Runs = len(c.Seconds)
	if c.SHA256 == "" {
		c.SHA256 = "ok"
		if c.failed() {
			c.SHA256 = "-"
		}
	}
	c.Verified = c.SHA256 == "ok" && !c.failed()
	if len(c.mbps) == 0 {
		return
	}
	c.MedianSeconds = median(c.Seconds)
	c.MedianMBps, c.MinMBps, c.MaxMBps = median(c.mbps), slices.Min(c.mbps), slices.Max(c.mbps)
	c.CPUSeconds = median(c.cpu)
	if len(c.metrics) > 0 {
		avg := averageMetrics(c.metrics)
		c.Stages = avg.Stages
		c.Bottleneck = avg.Bottleneck()
	}
}

// averageMetrics averages the queue fills, blocked times and counts of
// several runs' snapshots of one graph.
func averageMetrics(runs []pipeline.MetricsSnapshot) pipeline.MetricsSnapshot {
	avg := pipeline.MetricsSnapshot{Stages: slices.Clone(runs[0].Stages)}
	n := len(runs)
	for i := range avg.Stages {
		s := &avg.Stages[i]
		var fill, full, blocked, busyShare float64
		var bytes, blockedSends int64
		var ran, wait, busy time.Duration
		for _, r := range runs {
			rs, _ := r.Stage(s.Stage)
			fill, full, blocked = fill+rs.QueueFill, full+rs.QueueFull, blocked+float64(rs.SendBlocked)
			bytes, blockedSends = bytes+rs.BytesSent, blockedSends+rs.BlockedSends
			ran, wait, busy, busyShare = ran+rs.Ran, wait+rs.InputWait, busy+rs.Busy, busyShare+rs.BusyShare
			s.BusyKnown = s.BusyKnown && rs.BusyKnown
		}
		s.QueueFill, s.QueueFull = fill/float64(n), full/float64(n)
		s.SendBlocked = time.Duration(blocked / float64(n))
		s.Ran, s.InputWait, s.Busy = ran/time.Duration(n), wait/time.Duration(n), busy/time.Duration(n)
		s.BusyShare = busyShare / float64(n)
		s.BytesSent, s.BlockedSends = bytes/int64(n), blockedSends/int64(n)
	}
	for _, r := range runs {
		avg.Elapsed += r.Elapsed / time.Duration(n)
	}
	return avg
}

// benchTopology is a topology file and what bench needs to know about it.
type benchTopology struct {
	name, path string
	splitter   string // id of its range.splitter stage, or ""
	readers    bool   // it has an http.reader stage
}

// benchTopologies resolves the topology files, writing the embedded
// examples to dir when none are given.
func benchTopologies(files []string, dir string) ([]benchTopology, error) {
	if len(files) == 0 {
		for _, name := range examples.Topologies {
			data, err := examples.FS.ReadFile(name)
			if err != nil {
				return nil, err
			}
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return nil, err
			}
			files = append(files, path)
		}
	}
	var out []benchTopology
	for _, path := range files {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		cfg, err := config.Load(config.Options{File: abs, Environ: []string{}})
		if err != nil {
			return nil, configError(err)
		}
		t := benchTopology{name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), path: abs}
		for _, id := range cfg.StageIDs() {
			switch cfg.Stages[id].Type {
			case "range.splitter":
				t.splitter = id
			case "http.reader":
				t.readers = true
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// memoryBound is what validate prints for the topology with these
// overrides.
func (t benchTopology) memoryBound(sets []string, connections int) (int64, error) {
	cfg, err := config.Load(config.Options{File: t.path, Environ: []string{}, Sets: sets})
	if err != nil {
		return 0, configError(err)
	}
	if connections > 0 {
		cfg.SetConnections(pipeline.DefaultRegistry, connections)
	}
	cfg.Output = "OUTPUT"
	g, err := cfg.Graph(pipeline.DefaultRegistry)
	if err != nil {
		return 0, configError(err)
	}
	return int64(g.MemoryBound()), nil
}

// benchCells expands the matrix of one scenario: every topology x
// connections (when it has readers) x piece size (when it has a splitter),
// then the reference tools when asked.
func benchCells(f *benchFlags, scenario, exe string, topologies []benchTopology) ([]*benchCell, error) {
	var cells []*benchCell
	for _, t := range topologies {
		conns, pieces := []int{0}, []pipeline.ByteSize{0}
		if t.readers {
			conns = f.connections
		}
		if t.splitter != "" && len(f.pieces) > 0 {
			pieces = f.pieces
		}
		for _, n := range conns {
			for _, p := range pieces {
				for _, vary := range f.variations {
					c, err := dlflowCell(f, scenario, exe, t, n, p, vary)
					if err != nil {
						return nil, err
					}
					cells = append(cells, c)
				}
			}
		}
	}
	if f.compare {
		cells = append(cells, referenceCells(f, scenario)...)
	}
	return cells, nil
}

// dlflowCell is the cell of topology t with n connections (0: its own),
// piece size p (0: its own) and one combination of --vary values, on top
// of --set.
func dlflowCell(f *benchFlags, scenario, exe string, t benchTopology, n int, p pipeline.ByteSize, vary []benchSet) (*benchCell, error) {
	c := &benchCell{Scenario: scenario, Origin: f.origin, Tool: "dlflow", Topology: filepath.Base(t.path), Connections: n, Piece: int64(p)}
	c.Label = t.name
	var extra []string
	if n > 0 {
		c.Label += fmt.Sprintf(" c=%d", n)
		extra = append(extra, "--connections", fmt.Sprint(n))
	}
	sets := slices.Clone(f.sets)
	if p > 0 {
		c.Label += fmt.Sprintf(" piece=%v", p)
		sets = append(sets, fmt.Sprintf("stages.%s.config.piece=%v", t.splitter, p))
	}
	for _, v := range vary {
		c.Label += " " + v.label
		sets = append(sets, v.set)
	}
	for _, s := range sets {
		extra = append(extra, "--set", s)
	}
	c.Sets = sets
	bound, err := t.memoryBound(sets, n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Label, err)
	}
	c.MemoryBound = bound
	path := t.path
	c.command = func(ctx context.Context, url, out, metrics string) *exec.Cmd {
		args := []string{"get", "-c", path, "--url", url, "-o", out, "-q", "--no-resume", "--metrics-json", metrics}
		cmd := exec.CommandContext(ctx, exe, append(args, extra...)...)
		cmd.Env = append(os.Environ(), cliEnv+"=1")
		return cmd
	}
	return c, nil
}

// referenceCells are curl (one stream), aria2c and axel (one cell per
// number of connections each), when they are installed.
func referenceCells(f *benchFlags, scenario string) []*benchCell {
	var cells []*benchCell
	if curl, err := exec.LookPath("curl"); err == nil {
		cells = append(cells, &benchCell{
			Scenario: scenario, Origin: f.origin, Tool: "curl", Label: "curl",
			command: func(ctx context.Context, url, out, _ string) *exec.Cmd {
				return exec.CommandContext(ctx, curl, "-sf", "-o", out, url)
			},
		})
	}
	if aria, err := exec.LookPath("aria2c"); err == nil {
		for _, n := range referenceConnections(f, 16) { // aria2c's limit
			x := fmt.Sprint(n)
			cells = append(cells, &benchCell{
				Scenario: scenario, Origin: f.origin, Tool: "aria2c", Connections: n, Label: "aria2c c=" + x,
				command: func(ctx context.Context, url, out, _ string) *exec.Cmd {
					return exec.CommandContext(ctx, aria, "-x"+x, "-s"+x, "-k1M", "--file-allocation=none",
						"-q", "--allow-overwrite=true", "--auto-file-renaming=false",
						"-d", filepath.Dir(out), "-o", filepath.Base(out), url)
				},
			})
		}
	}
	if axel, err := exec.LookPath("axel"); err == nil {
		for _, n := range referenceConnections(f, math.MaxUint16) { // axel reads -n as an unsigned short
			cells = append(cells, axelCell(f, scenario, axel, n))
		}
	}
	return cells
}

// axelCell runs axel with n connections (fewer on a small file: axel
// gives each at least 100KB). axel exits 0 when its download loop ends
// "ready", which includes some write errors and, on a server without
// ranges, a connection closed early; so only the sha256 check, as for every
// cell, tells a complete output. It resumes when OUT.st exists, and
// refuses to start when OUT exists without it: runOnce removes both first.
func axelCell(f *benchFlags, scenario, axel string, n int) *benchCell {
	x := fmt.Sprint(n)
	return &benchCell{
		Scenario: scenario, Origin: f.origin, Tool: "axel", Connections: n, Label: "axel c=" + x,
		command: func(ctx context.Context, url, out, _ string) *exec.Cmd {
			return exec.CommandContext(ctx, axel, "-n", x, "-q", "-o", out, url)
		},
	}
}

// referenceConnections are the numbers of connections of the
// multi-connection reference tools: --connections, capped at limit and
// without duplicates, or 8 when the topologies' own are asked for.
func referenceConnections(f *benchFlags, limit int) []int {
	if f.connections[0] == 0 {
		return []int{8}
	}
	var out []int
	for _, n := range f.connections {
		if n = min(max(n, 1), limit); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// startBenchServer starts the origin of a scenario.
func startBenchServer(f *benchFlags, scenario, dir string) (*benchServer, error) {
	if f.url != "" {
		return &benchServer{url: f.url, sha: f.sha256, size: -1, desc: f.url, reset: func() {}, close: func() {}}, nil
	}
	size := int64(f.size)
	sha := origin.SHA256Hex(size, benchSeed)
	if f.origin == "nginx" {
		root := filepath.Join(dir, "www")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if err := origin.WriteFile(filepath.Join(root, "file.bin"), size, benchSeed); err != nil {
			return nil, err
		}
		opts := nginxtest.Options{Root: root}
		desc := fmt.Sprintf("nginx on 127.0.0.1, %v file", f.size)
		if scenario == scenarioRateLimit {
			opts.LimitRate = fmt.Sprint(int64(f.rate))
			desc += fmt.Sprintf(", limit_rate %v/s per connection", f.rate)
		}
		ngx, err := nginxtest.Start(opts)
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		return &benchServer{
			url: ngx.BaseURL() + "/file.bin", sha: sha, size: size, desc: desc, reset: func() {},
			close: func() { ngx.Close(); os.RemoveAll(root) },
		}, nil
	}
	opts := origin.Options{Size: size, Seed: benchSeed}
	var faults origin.Faults
	desc := fmt.Sprintf("built-in origin on 127.0.0.1, %v generated", f.size)
	switch scenario {
	case scenarioRateLimit:
		opts.RateLimit = int64(f.rate)
		desc += fmt.Sprintf(", %v/s per connection", f.rate)
	case scenarioLatency:
		opts.Latency = f.latency
		desc += fmt.Sprintf(", %v before each response", f.latency)
	case scenarioSlowConn:
		faults = origin.Faults{Trickle: int64(f.trickle), TrickleRequest: f.slowRequest}
		desc += fmt.Sprintf(", GET #%d trickles at %v/s", f.slowRequest, f.trickle)
	}
	srv, err := origin.Start(opts)
	if err != nil {
		return nil, err
	}
	return &benchServer{
		url: srv.URL(), sha: sha, size: size, desc: desc,
		reset: func() { srv.ResetStats(); srv.SetFaults(faults) },
		close: func() { srv.Close() },
	}, nil
}

type measurement struct {
	wall, cpu time.Duration
	maxRSS    int64
}

// gnuTime is GNU time, which bench runs every child under to read its
// peak RSS, or "" when it is not installed.
//
// The child's own wait4 figure is not it: Go starts children with vfork,
// and Linux carries the peak RSS of the memory a process leaves at exec
// into its own, so every child's "peak" would be at least the bench's RSS
// (17 MiB with the built-in origin, more than curl or axel need). GNU time
// starts the command with a real fork from its own tiny process.
var gnuTime = sync.OnceValue(func() string {
	path, err := exec.LookPath("time")
	if err != nil {
		return ""
	}
	if out, err := exec.Command(path, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "GNU") {
		return ""
	}
	return path
})

// benchOnce runs one child to completion and measures its wall time, CPU
// time and peak RSS (its own, and its waited-for children's: the child is
// waited for alone). Under GNU time the peak RSS comes from rssFile.
func benchOnce(cmd *exec.Cmd, rssFile string) (measurement, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	timed := gnuTime() != ""
	if timed {
		cmd.Args = append([]string{"time", "-q", "-f", "%M", "-o", rssFile, cmd.Path}, cmd.Args[1:]...)
		cmd.Path = gnuTime()
		// Cancelling must stop the command, not only time: kill the
		// process group they share.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:] // the one line naming the cause
		}
		if msg == "" { // axel -q prints some causes to stdout, dropped
			return measurement{}, err
		}
		return measurement{}, fmt.Errorf("%w: %s", err, msg)
	}
	m := measurement{wall: wall}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.maxRSS = ru.Maxrss << 10 // Linux reports KiB
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if timed {
		kib, err := readRSS(rssFile)
		if err != nil {
			return measurement{}, err
		}
		m.maxRSS = kib << 10
	}
	return m, nil
}

// readRSS reads the KiB that GNU time -f %M wrote.
func readRSS(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("peak rss: %w", err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("peak rss from GNU time: %w", err)
	}
	return kib, nil
}
