package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Document is the results document that `dlflow bench --json` prints:
// everything needed to tell one result from another and to run it again.
// Its JSON names are a contract (scripts read them); see
// docs/BENCH.md for an example.
type Document struct {
	Environment Environment         `json:"environment"`
	Command     []string            `json:"command"`
	Options     DocumentOptions     `json:"options"`
	Servers     map[Scenario]string `json:"servers"`
	Stopped     string              `json:"stopped,omitempty"`
	Cells       []Cell              `json:"cells"`
}

// DocumentOptions are the bench's options as it ran, defaults filled in:
// sizes in bytes, rates in bytes per second, durations in milliseconds.
type DocumentOptions struct {
	Scenarios      []Scenario     `json:"scenarios"`
	Origin         Origin         `json:"origin"`
	URLs           []Target       `json:"urls,omitempty"` // each a table, its label the cells' scenario
	SizeBytes      int64          `json:"size_bytes"`
	Rate           int64          `json:"rate_bytes_per_s"`
	ConnRate       int64          `json:"conn_rate_bytes_per_s"`
	MirrorRate     int64          `json:"mirror_rate_bytes_per_s"`
	Trickle        int64          `json:"trickle_bytes_per_s"`
	SlowRequest    int            `json:"slow_request"`
	LatencyMS      float64        `json:"latency_ms"` // 0: each scenario's default
	Files          int            `json:"files"`
	FileSizeBytes  int64          `json:"file_size_bytes"`
	Jobs           int            `json:"jobs"`
	Connections    []int          `json:"connections"`
	PieceBytes     []int64        `json:"piece_bytes,omitempty"`
	Sets           []string       `json:"sets,omitempty"`
	Vary           []Vary         `json:"vary,omitempty"`
	Runs           int            `json:"runs"`
	MaxRuns        int            `json:"max_runs"`
	Warmup         int            `json:"warmup"`
	Target         float64        `json:"target"`
	MaxTimeS       float64        `json:"max_time_s,omitempty"`
	Baseline       string         `json:"baseline,omitempty"`
	Compare        bool           `json:"compare"`
	Tools          []string       `json:"tools,omitempty"`
	Topologies     []TopologyFile `json:"topologies"`
	ReferenceTools []ToolRecord   `json:"reference_tools,omitempty"`
}

// ToolRecord is a reference tool as one of its cells ran it.
type ToolRecord struct {
	Cell    string   `json:"cell"`
	Version string   `json:"version"`
	Command []string `json:"command"`
}

// Document is the result as a self-describing document.
func (r *Result) Document() Document {
	o := r.Options
	d := Document{
		Environment: r.Environment, Command: o.Command, Servers: r.Servers, Stopped: r.Stopped, Cells: r.Cells,
		Options: DocumentOptions{
			Scenarios: o.Scenarios, Origin: o.Origin, URLs: o.URLs,
			SizeBytes: int64(o.Size), Rate: int64(o.Rate), ConnRate: int64(o.ConnRate), MirrorRate: int64(o.MirrorRate),
			Trickle: int64(o.Trickle), SlowRequest: o.SlowRequest, LatencyMS: float64(o.Latency) / float64(time.Millisecond),
			Files: o.Files, FileSizeBytes: int64(o.FileSize), Jobs: o.Jobs, Connections: o.Connections,
			Sets: o.Sets, Vary: o.Vary, Runs: o.Runs, MaxRuns: o.MaxRuns, Warmup: o.Warmup, Target: o.Target,
			MaxTimeS: o.MaxTime.Seconds(), Baseline: o.Baseline, Compare: o.Compare, Tools: o.Tools,
			Topologies: r.Topologies,
		},
	}
	for _, p := range o.Pieces {
		d.Options.PieceBytes = append(d.Options.PieceBytes, int64(p))
	}
	for _, c := range r.Cells {
		if c.Tool != "dlflow" {
			d.Options.ReferenceTools = append(d.Options.ReferenceTools, ToolRecord{Cell: c.Label, Version: c.ToolVersion, Command: c.Command})
		}
	}
	if d.Command == nil {
		d.Command = []string{}
	}
	return d
}

// WriteJSON writes the results document, indented.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.Document())
}

// csvHeader names the columns of WriteCSV.
var csvHeader = []string{"scenario", "cell", "tool", "connections", "run", "seconds", "mbps", "user_s", "sys_s", "rss_bytes", "requests", "connections_accepted", "load", "busy", "durable", "sha256"}

// WriteCSV writes one row per measured run of every cell, for a
// spreadsheet or a plotting tool; a failed cell has one row with its
// error in the sha256 column.
func (r *Result) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	for _, c := range r.Cells {
		if len(c.RunRecords) == 0 {
			_ = cw.Write([]string{string(c.Scenario), c.Label, c.Tool, strconv.Itoa(c.Connections), "", "", "", "", "", "", "", "", "", "", strconv.FormatBool(c.Durable), "FAILED: " + c.Error})
		}
		for i, run := range c.RunRecords {
			_ = cw.Write([]string{string(c.Scenario), c.Label, c.Tool, strconv.Itoa(c.Connections), strconv.Itoa(i + 1),
				f(run.Seconds), f(run.MBps), f(run.UserSeconds), f(run.SysSeconds), strconv.FormatInt(run.RSS, 10),
				strconv.FormatInt(run.Requests, 10), strconv.FormatInt(run.Connections, 10), f(run.Load),
				strconv.FormatBool(run.Busy), strconv.FormatBool(c.Durable), c.SHA256})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteMarkdown writes a table per scenario in Markdown, for a report:
// median time with its 95% interval, mean ± standard deviation, the ratio
// to the baseline, the ratio to the fastest reference tool at the cell's
// connections (as the text table), throughput, peak RSS and whether the
// output is durable.
func (r *Result) WriteMarkdown(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, scenario := range r.Options.Scenarios {
		fmt.Fprintf(ew, "### %s\n\n%s; %s\n\n", scenario, r.Servers[scenario], runsDescription(r.Options))
		fmt.Fprintln(ew, "| cell | median time (95% CI) | mean ± σ | runs | vs baseline | vs fastest ref | MB/s median | peak RSS | durable | sha256 |")
		fmt.Fprintln(ew, "|---|---|---|---|---|---|---|---|---|---|")
		for _, c := range r.Cells {
			if c.Scenario != scenario {
				continue
			}
			if c.Failed() {
				fmt.Fprintf(ew, "| %s | FAILED: %s | | | | | | | | %s |\n", mdEscape(c.Label), mdEscape(c.Error), c.SHA256)
				continue
			}
			st := c.Stats
			fmt.Fprintf(ew, "| %s | %.3f s (%.3f–%.3f) | %.3f ± %.3f s | %d%s | %s | %s | %.0f | %s | %s | %s |\n",
				mdEscape(c.Label), st.MedianS, st.MedianLowS, st.MedianHighS, st.MeanS, st.StddevS, c.Runs, flags(c),
				ratioText(c.VsBaseline), refRatioText(c.VsFastestReference), st.MedianMBps, mib(c.PeakRSS), yesNo(c.Durable), c.SHA256)
		}
		fmt.Fprintln(ew, "\nruns !N: N outliers (Tukey's fences); ~N: N runs started with the load above the cores.")
		fmt.Fprintln(ew)
	}
	return ew.err
}

// refRatioText is a cell's time over the fastest reference's, "-" where
// the scenario has no reference row at the cell's connections.
func refRatioText(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}

// runsDescription says how many runs each cell had.
func runsDescription(o Options) string {
	s := fmt.Sprintf("%d run(s) per cell", o.Runs)
	if o.MaxRuns > o.Runs {
		s = fmt.Sprintf("%d to %d runs per cell, until the median is known to ±%.1f%%", o.Runs, o.MaxRuns, 50*o.Target)
	}
	if o.Warmup > 0 {
		s += fmt.Sprintf(" after %d warm-up run(s)", o.Warmup)
	}
	return s
}

// flags marks a cell's outliers (!N) and runs on a busy machine (~N).
func flags(c Cell) string {
	var f string
	if c.Stats.Outliers > 0 {
		f += fmt.Sprintf(" !%d", c.Stats.Outliers)
	}
	if c.Busy > 0 {
		f += fmt.Sprintf(" ~%d", c.Busy)
	}
	return f
}

// ratioText is "1.02× (0.99–1.05)", or "-" without a baseline.
func ratioText(r *Ratio) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fx (%.2f-%.2f)", r.Ratio, r.Low, r.High)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
