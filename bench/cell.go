package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// Cell is one cell of the matrix (a topology with a number of connections,
// a piece size and config overrides, or a reference tool) in one scenario,
// with its measurements over all runs. Its JSON form is the output of
// `dlflow bench --json`, whose names are a contract.
type Cell struct {
	Scenario    Scenario `json:"scenario"`
	Origin      Origin   `json:"origin"`
	Tool        string   `json:"tool"` // dlflow, curl, aria2c or axel
	Topology    string   `json:"topology,omitempty"`
	Connections int      `json:"connections,omitempty"` // 0: the topology's own, or one stream
	Piece       int64    `json:"piece_bytes,omitempty"` // 0: the topology's own
	Sets        []string `json:"sets,omitempty"`        // Options.Sets and the Vary values
	Jobs        int      `json:"jobs,omitempty"`        // small: files downloaded at once
	Files       int      `json:"files,omitempty"`       // small: files per run
	Label       string   `json:"label"`
	// Format is the archive's of an extract cell: tar.gz or tar.zst.
	Format string `json:"format,omitempty"`

	// Runs is how many runs were measured (warm-up runs are not), and
	// RunRecords what each measured.
	Runs          int         `json:"run_count"`
	RunRecords    []RunRecord `json:"runs"`
	Warmups       int         `json:"warmup_runs,omitempty"`
	Bytes         int64       `json:"bytes"`
	Seconds       []float64   `json:"seconds"`
	MedianSeconds float64     `json:"median_seconds"`
	MedianMBps    float64     `json:"median_mbps"`
	MinMBps       float64     `json:"min_mbps"`
	MaxMBps       float64     `json:"max_mbps"`
	PeakRSS       int64       `json:"peak_rss_bytes"` // 0 where the platform does not tell
	CPUSeconds    float64     `json:"cpu_seconds_median"`
	MemoryBound   int64       `json:"memory_bound_bytes,omitempty"`
	// SHA256 is "ok", "unverified" (an external URL without an expected
	// sum), "failed" (an output hashed to something else) or "-" (the
	// cell failed otherwise); Verified is true for "ok" only.
	SHA256   string `json:"sha256"`
	Verified bool   `json:"sha256_ok"`
	// Bottleneck is the stage that limits the run (see
	// pipeline.MetricsSnapshot.Bottleneck), and Stages its per-stage
	// counters averaged over the runs; dlflow cells only.
	Bottleneck string                  `json:"bottleneck,omitempty"`
	Stages     []pipeline.StageMetrics `json:"stages,omitempty"`
	// Requests and ConnsAccepted are what the built-in origin counted in
	// a run (the median over the runs): requests of any method, and TCP
	// connections it accepted; RequestsPerFile is Requests over Files
	// (small), and MaxOpenConns the most connections open at once in any
	// run. All 0 where the origin does not count (nginx, an external URL).
	Requests        float64 `json:"requests,omitempty"`
	RequestsPerFile float64 `json:"requests_per_file,omitempty"`
	ConnsAccepted   float64 `json:"conns_accepted,omitempty"`
	MaxOpenConns    int64   `json:"max_open_conns,omitempty"`
	// VsFastestReference is MedianSeconds over the median time of the
	// scenario's fastest reference tool at the cell's number of
	// connections, or at any number when none ran with it (1.25: a
	// quarter slower); 0 when the scenario has no reference row that
	// succeeded.
	VsFastestReference float64 `json:"time_vs_fastest_reference,omitempty"`
	// VsPipes are a dlflow cell's speeds against each shell pipe of its
	// format (extract, with --compare).
	VsPipes []PipeRatio `json:"speed_vs_pipes,omitempty"`
	// Stats describe the runs' times and throughputs with their
	// intervals; VsBaseline is the median time over Options.Baseline's
	// cell's, with its interval (nil without a baseline).
	Stats      CellStats `json:"stats"`
	VsBaseline *Ratio    `json:"vs_baseline,omitempty"`
	// Busy counts the runs that started with the load average above the
	// machine's cores.
	Busy int `json:"busy_runs"`
	// Command is a run's command line (a reference tool's, or dlflow's
	// without the executable's path), and ToolVersion the first line of
	// the reference tool's --version.
	Command     []string `json:"command,omitempty"`
	ToolVersion string   `json:"tool_version,omitempty"`
	// Durable is true for the cells whose output is fsynced before they
	// end (dlflow's, and the reference rows that add a sync).
	Durable bool `json:"durable"`
	// Error is why the cell failed, "" when every run succeeded; a
	// failed cell runs no more.
	Error string `json:"error,omitempty"`
	// Trace is the last measured run's request trace, with
	// Options.Timeline (dlflow cells only); see Result.Timeline.
	Trace *pipeline.TraceSnapshot `json:"-"`
	// TTFB is the distribution of the time to first byte (ms) of the
	// requests of every measured run, from the request trace (dlflow
	// cells with range readers; nil otherwise).
	TTFB *Percentiles `json:"ttfb_ms,omitempty"`
}

// RunRecord is what one run of a cell measured.
type RunRecord struct {
	Seconds     float64                 `json:"seconds"`
	MBps        float64                 `json:"mbps"`
	UserSeconds float64                 `json:"user_s"`
	SysSeconds  float64                 `json:"sys_s"`
	RSS         int64                   `json:"rss_bytes"`
	Requests    int64                   `json:"requests,omitempty"`    // as the built-in origin counted them
	Connections int64                   `json:"connections,omitempty"` // TCP connections it accepted
	Load        float64                 `json:"load"`                  // 1-minute load average at the start; -1 unknown
	Busy        bool                    `json:"busy,omitempty"`        // Load above the machine's cores
	Stages      []pipeline.StageMetrics `json:"stages,omitempty"`
	// TTFB is the run's requests' time to first byte in ms, and
	// ConnectionMBps each connection's throughput (MB/s over the time from
	// its first request to its last one's end), from the request trace of
	// a dlflow cell.
	TTFB           *Percentiles `json:"ttfb_ms,omitempty"`
	ConnectionMBps []float64    `json:"connection_mbps,omitempty"`
}

// CellStats describe a cell's measured runs: times in seconds (_s) and
// throughputs in MB/s (_mbps), each with the 95% intervals of its mean and
// median (see Summary), and the runs outside Tukey's fences of the times.
type CellStats struct {
	MeanS          float64 `json:"mean_s"`
	StddevS        float64 `json:"stddev_s"`
	MedianS        float64 `json:"median_s"`
	MinS           float64 `json:"min_s"`
	MaxS           float64 `json:"max_s"`
	MeanLowS       float64 `json:"mean_ci95_low_s"`
	MeanHighS      float64 `json:"mean_ci95_high_s"`
	MedianLowS     float64 `json:"median_ci95_low_s"`
	MedianHighS    float64 `json:"median_ci95_high_s"`
	MeanMBps       float64 `json:"mean_mbps"`
	StddevMBps     float64 `json:"stddev_mbps"`
	MedianMBps     float64 `json:"median_mbps"`
	MinMBps        float64 `json:"min_mbps"`
	MaxMBps        float64 `json:"max_mbps"`
	MedianLowMBps  float64 `json:"median_ci95_low_mbps"`
	MedianHighMBps float64 `json:"median_ci95_high_mbps"`
	Outliers       int     `json:"outliers"`
	// RelativeWidth is the width of the median time's interval over the
	// median: what --target compares.
	RelativeWidth float64 `json:"median_ci95_relative_width"`
}

// cellStats describes the times and throughputs.
func cellStats(seconds, mbps []float64) CellStats {
	t, r := summarize(seconds), summarize(mbps)
	if t.N == 0 {
		return CellStats{}
	}
	return CellStats{
		MeanS: t.Mean, StddevS: t.Stddev, MedianS: t.Median, MinS: t.Min, MaxS: t.Max,
		MeanLowS: t.MeanLow, MeanHighS: t.MeanHigh, MedianLowS: t.MedianLow, MedianHighS: t.MedianHigh,
		MeanMBps: r.Mean, StddevMBps: r.Stddev, MedianMBps: r.Median, MinMBps: r.Min, MaxMBps: r.Max,
		MedianLowMBps: r.MedianLow, MedianHighMBps: r.MedianHigh,
		Outliers: t.Outliers, RelativeWidth: t.RelativeWidth(),
	}
}

// Failed reports whether a run of the cell failed.
func (c *Cell) Failed() bool { return c.Error != "" }

// cell is a Cell being measured.
type cell struct {
	Cell
	command      func(ctx context.Context, j job) (*exec.Cmd, error) // one run's child process
	stageMetrics bool                                                // the command writes j.metrics
	traced       bool                                                // the command writes j.trace
	keepTrace    bool                                                // Cell.Trace keeps the last run's (Options.Timeline)
	ttfb         []float64                                           // ms, every measured run's requests
	mbps         []float64
	cpu          []float64
	metrics      []pipeline.MetricsSnapshot
	requests     []float64
	conns        []float64
}

// job is what one run downloads and where it writes.
type job struct {
	url     string      // the file (every scenario but small)
	mirror  string      // mirrors: a mirror of url
	dead    string      // mirrors: a URL where nothing listens
	out     string      // its output
	metrics string      // dlflow's per-stage metrics (--metrics-json)
	trace   string      // dlflow's request trace (--trace-json), with Options.Timeline
	files   []batchFile // small: the batch, each file written to dir/name
	dir     string      // small: the outputs' directory, empty at the start
	list    string      // small: a scratch file for the tool's list of URLs
	// object is where the s3 scenarios' runs write instead of out, as
	// s3://BUCKET/KEY, and env the AWS_* variables that point a client
	// at its store; out then names only the run's scratch files.
	object   string
	env      []string
	endpoint string // the store's URL
}

// record adds one run's measurements: it wrote bytes, the origin counted
// stats (nil: it does not count), and the load average was load when it
// started. A warm-up run is checked like any other but not recorded.
func (c *cell) record(m measurement, bytes int64, stats *origin.Stats, metricsFile, traceFile string, load float64, warmup bool) error {
	if c.Bytes = bytes; c.Bytes == 0 {
		return errors.New("empty output")
	}
	if warmup {
		c.Warmups++
		return nil
	}
	rec := RunRecord{
		Seconds: m.wall.Seconds(), MBps: float64(bytes) / m.wall.Seconds() / 1e6,
		UserSeconds: m.user.Seconds(), SysSeconds: m.sys.Seconds(), RSS: m.maxRSS,
		Load: load, Busy: busy(load),
	}
	c.Seconds = append(c.Seconds, rec.Seconds)
	c.mbps = append(c.mbps, rec.MBps)
	c.cpu = append(c.cpu, (m.user + m.sys).Seconds())
	c.PeakRSS = max(c.PeakRSS, m.maxRSS)
	if rec.Busy {
		c.Busy++
	}
	if stats != nil {
		rec.Requests, rec.Connections = stats.Requests, stats.ConnsAccepted
		c.requests = append(c.requests, float64(stats.Requests))
		c.conns = append(c.conns, float64(stats.ConnsAccepted))
		c.MaxOpenConns = max(c.MaxOpenConns, stats.MaxOpenConns)
	}
	if c.stageMetrics {
		data, err := os.ReadFile(metricsFile)
		if err != nil {
			return fmt.Errorf("per-stage metrics: %w", err)
		}
		var snap pipeline.MetricsSnapshot
		if err := json.Unmarshal(data, &snap); err != nil {
			return fmt.Errorf("per-stage metrics: %w", err)
		}
		c.metrics = append(c.metrics, snap)
		rec.Stages = snap.Stages
	}
	if c.traced {
		tr, err := readTrace(traceFile)
		if err != nil {
			return err
		}
		if c.keepTrace {
			c.Trace = tr
		}
		ms := ttfbs(tr)
		c.ttfb = append(c.ttfb, ms...)
		rec.TTFB, rec.ConnectionMBps = percentilesOf(ms), readerMBps(tr)
	}
	c.RunRecords = append(c.RunRecords, rec)
	return nil
}

// summarize turns the runs into the reported figures.
func (c *cell) summarize() {
	c.Runs = len(c.Seconds)
	if c.Seconds == nil { // a failed cell: no runs, not null
		c.Seconds, c.RunRecords = []float64{}, []RunRecord{}
	}
	if c.SHA256 == "" {
		c.SHA256 = "ok"
		if c.Failed() {
			c.SHA256 = "-"
		}
	}
	c.Verified = c.SHA256 == "ok" && !c.Failed()
	if len(c.mbps) == 0 {
		return
	}
	c.Stats = cellStats(c.Seconds, c.mbps)
	c.TTFB = percentilesOf(c.ttfb)
	c.MedianSeconds = c.Stats.MedianS
	c.MedianMBps, c.MinMBps, c.MaxMBps = c.Stats.MedianMBps, c.Stats.MinMBps, c.Stats.MaxMBps
	c.CPUSeconds = median(c.cpu)
	if len(c.requests) > 0 {
		c.Requests, c.ConnsAccepted = median(c.requests), median(c.conns)
		if c.Files > 0 {
			c.RequestsPerFile = c.Requests / float64(c.Files)
		}
	}
	if len(c.metrics) > 0 {
		avg := averageMetrics(c.metrics)
		c.Stages = avg.Stages
		c.Bottleneck = avg.Bottleneck()
	}
}

// averageMetrics averages the queue fills, blocked times and counts of
// several runs' snapshots of one graph.
func averageMetrics(runs []pipeline.MetricsSnapshot) pipeline.MetricsSnapshot {
	avg := pipeline.MetricsSnapshot{Stages: slices.Clone(runs[0].Stages), WindowOwner: runs[0].WindowOwner}
	n := len(runs)
	for i := range avg.Stages {
		s := &avg.Stages[i]
		var fill, full, blocked, busyShare float64
		var bytes, blockedSends int64
		var ran, wait, window, busy time.Duration
		for _, r := range runs {
			rs, _ := r.Stage(s.Stage)
			fill, full, blocked = fill+rs.QueueFill, full+rs.QueueFull, blocked+float64(rs.SendBlocked)
			bytes, blockedSends = bytes+rs.BytesSent, blockedSends+rs.BlockedSends
			ran, wait, busy, busyShare = ran+rs.Ran, wait+rs.InputWait, busy+rs.Busy, busyShare+rs.BusyShare
			window += rs.WindowWait
			s.BusyKnown = s.BusyKnown && rs.BusyKnown
		}
		s.QueueFill, s.QueueFull = fill/float64(n), full/float64(n)
		s.SendBlocked = time.Duration(blocked / float64(n))
		s.Ran, s.InputWait, s.Busy = ran/time.Duration(n), wait/time.Duration(n), busy/time.Duration(n)
		s.WindowWait = window / time.Duration(n)
		s.BusyShare = busyShare / float64(n)
		s.BytesSent, s.BlockedSends = bytes/int64(n), blockedSends/int64(n)
	}
	for _, r := range runs {
		avg.Elapsed += r.Elapsed / time.Duration(n)
	}
	return avg
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}
