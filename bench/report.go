package bench

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// mib renders a byte count in MiB with one decimal, rounded up so that a
// bound stays a bound.
func mib(n int64) string {
	return fmt.Sprintf("%.1fMiB", math.Ceil(float64(n)*10/(1<<20))/10)
}

// WriteTable writes one table per scenario: a row per cell with its
// median time, its ratio to the fastest reference tool's (with reference
// rows), median and min-max throughput, peak RSS, CPU time, memory bound,
// the requests (per file, in the small scenario) and connections the
// built-in origin counted, sha256 check and bottleneck, then the
// per-stage figures of the dlflow cells.
func (r *Result) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	writeTable(ew, r)
	return ew.err
}

func writeTable(w io.Writer, r *Result) {
	for i, scenario := range r.Options.Scenarios {
		var rows []*Cell
		for k := range r.Cells {
			if c := &r.Cells[k]; c.Scenario == scenario {
				rows = append(rows, c)
			}
		}
		if len(rows) == 0 {
			continue
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s: %s; %s\n\n", heading(r.Options, scenario), r.Servers[scenario], runsDescription(r.Options))
		cols := columnsOf(rows)
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(cols.header(), "\t"))
		for _, c := range rows {
			fmt.Fprintln(tw, strings.Join(cols.row(c), "\t"))
		}
		tw.Flush()
		writeNotes(w, rows, cols)

		var staged []*Cell
		for _, c := range rows {
			if len(c.Stages) > 0 {
				staged = append(staged, c)
			}
		}
		if len(staged) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nper stage: share of the run each stage was busy (not waiting for input or room; - where unknown); average fill of its input queue; time its sends waited for room (per run)\n\n")
		tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "cell\tbottleneck\tbusy\tinput queue fill\tsend blocked")
		for _, c := range staged {
			var busy, fills, blocked []string
			for _, s := range c.Stages {
				if s.BusyKnown && s.WindowWait > 0 && s.Ran > 0 {
					busy = append(busy, fmt.Sprintf("%s %.0f%% (window wait %.0f%%)", s.Stage, 100*s.BusyShare, 100*float64(s.WindowWait)/float64(s.Ran)))
				} else if s.BusyKnown {
					busy = append(busy, fmt.Sprintf("%s %.0f%%", s.Stage, 100*s.BusyShare))
				} else {
					busy = append(busy, s.Stage+" -")
				}
				if s.QueueCap > 0 {
					fills = append(fills, fmt.Sprintf("%s %.0f%%", s.Stage, 100*s.QueueFill))
				}
				if s.Output != "" {
					blocked = append(blocked, fmt.Sprintf("%s %s", s.Stage, shortDuration(s.SendBlocked)))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Label, orDash(c.Bottleneck), strings.Join(busy, ", "), strings.Join(fills, ", "), strings.Join(blocked, ", "))
		}
		tw.Flush()
	}
}

// heading names a table: "scenario wan", or "url LABEL" for an external
// URL.
func heading(o Options, s Scenario) string {
	if _, ok := o.target(s); ok {
		return "url " + string(s)
	}
	return "scenario " + string(s)
}

// writeNotes explains the marks and columns that need it under a table.
func writeNotes(w io.Writer, rows []*Cell, cols columns) {
	var outliers, busy, pipes bool
	for _, c := range rows {
		outliers, busy, pipes = outliers || c.Stats.Outliers > 0, busy || c.Busy > 0, pipes || c.Tool == "pipe"
	}
	if outliers {
		fmt.Fprintln(w, "runs !N: N runs outside Tukey's fences (1.5 IQR beyond the quartiles)")
	}
	if busy {
		fmt.Fprintf(w, "runs ~N: N runs started with the load average above the machine's %d cores\n", runtime.NumCPU())
	}
	if cols.pipes {
		fmt.Fprintln(w, "speed vs pipe: the pipe's median time over the cell's, per pipe of the cell's format (1.00x or more: dlflow as fast or faster)")
	}
	if cols.durable && pipes {
		fmt.Fprintln(w, "fsync: the tree is on disk when the tool exits (dlflow syncs its file system; each pipe ends with sync)")
	} else if cols.durable {
		fmt.Fprintln(w, "fsync: the output is on disk when the tool exits (dlflow and curl+fsync fsync; curl, aria2c and axel do not, so they may finish before the disk has the bytes)")
	}
}

// columns are the optional columns of a scenario's table.
type columns struct {
	interval bool // the median's 95% interval (more than one run)
	baseline bool // time over the baseline cell's
	durable  bool // whether the output is fsynced (with reference rows)
	ttfb     bool // the requests' time to first byte (dlflow's range readers)
	ratio    bool // time over the fastest reference tool's
	requests bool // the origin's counts
	perFile  bool // requests per file (small)
	pipes    bool // speed against each shell pipe (extract)
}

func columnsOf(rows []*Cell) columns {
	var cols columns
	for _, c := range rows {
		cols.ratio = cols.ratio || c.VsFastestReference > 0
		cols.interval = cols.interval || c.Runs > 1
		cols.baseline = cols.baseline || c.VsBaseline != nil
		cols.durable = cols.durable || c.Tool != "dlflow"
		cols.ttfb = cols.ttfb || c.TTFB != nil
		cols.requests = cols.requests || c.ConnsAccepted > 0
		cols.perFile = cols.perFile || c.Files > 0
		cols.pipes = cols.pipes || len(c.VsPipes) > 0
	}
	cols.perFile = cols.perFile && cols.requests
	return cols
}

func (cols columns) header() []string {
	h := []string{"cell", "median time"}
	if cols.interval {
		h = append(h, "95% CI", "mean ± sd", "runs")
	}
	if cols.baseline {
		h = append(h, "vs baseline (95% CI)")
	}
	if cols.ratio {
		h = append(h, "vs fastest ref")
	}
	if cols.pipes {
		h = append(h, "speed vs pipe")
	}
	if cols.durable {
		h = append(h, "fsync")
	}
	if cols.perFile {
		h = append(h, "files/s")
	}
	h = append(h, "MB/s median (min-max)", "peak RSS", "CPU s", "buffer bound")
	if cols.ttfb {
		h = append(h, "TTFB p50/p99")
	}
	if cols.requests {
		h = append(h, "requests")
		if cols.perFile {
			h = append(h, "req/file")
		}
		h = append(h, "conns")
	}
	return append(h, "sha256", "bottleneck")
}

// row is a cell's row; a failed cell has dashes for its figures and the
// error in place of the bottleneck.
func (cols columns) row(c *Cell) []string {
	bound := "-"
	if c.MemoryBound > 0 {
		bound = mib(c.MemoryBound)
	}
	failed := c.Failed()
	figure := func(format string, args ...any) string {
		if failed {
			return "-"
		}
		return fmt.Sprintf(format, args...)
	}
	r := []string{c.Label, figure("%.2fs", c.MedianSeconds)}
	if cols.interval {
		st := c.Stats
		r = append(r, figure("%.2f-%.2fs", st.MedianLowS, st.MedianHighS), figure("%.2f ± %.2fs", st.MeanS, st.StddevS), fmt.Sprint(c.Runs)+flags(*c))
	}
	if cols.baseline {
		r = append(r, figure("%s", ratioText(c.VsBaseline)))
	}
	if cols.ratio {
		r = append(r, figure("%.2fx", c.VsFastestReference))
	}
	if cols.pipes {
		r = append(r, figure("%s", pipesText(c.VsPipes)))
	}
	if cols.durable {
		r = append(r, yesNo(c.Durable))
	}
	if cols.perFile {
		r = append(r, figure("%.0f", float64(c.Files)/c.MedianSeconds))
	}
	r = append(r, figure("%.0f (%.0f-%.0f)", c.MedianMBps, c.MinMBps, c.MaxMBps), figure("%s", mib(c.PeakRSS)), figure("%.2f", c.CPUSeconds), bound)
	if cols.ttfb {
		ttfb := "-"
		if c.TTFB != nil && !failed {
			ttfb = fmt.Sprintf("%.0f/%.0fms", c.TTFB.P50, c.TTFB.P99)
		}
		r = append(r, ttfb)
	}
	if cols.requests {
		r = append(r, figure("%s", count(c.Requests)))
		if cols.perFile {
			r = append(r, figure("%.2f", c.RequestsPerFile))
		}
		r = append(r, figure("%s", count(c.ConnsAccepted)))
	}
	if failed {
		return append(r, c.SHA256, "FAILED: "+c.Error)
	}
	return append(r, c.SHA256, orDash(c.Bottleneck))
}

// count prints a median of counts: whole, or with the half of an even
// number of runs.
func count(x float64) string {
	if x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.1f", x)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortDuration prints a blocked time compactly: 0s, 3ms, 1.25s.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// niceScale returns an axis maximum at or above v and a grid step: 1, 2 or
// 5 times a power of ten, about five steps.
func niceScale(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.2
	}
	raw := v / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * pow; step >= raw {
			break
		}
	}
	return math.Ceil(v/step) * step, step
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// errWriter keeps the first error of a series of writes and drops the
// writes after it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
