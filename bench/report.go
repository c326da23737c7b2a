package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
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
		fmt.Fprintf(w, "scenario %s: %s; %d run(s) per cell\n\n", scenario, r.Servers[scenario], r.Options.Runs)
		cols := columnsOf(rows)
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(cols.header(), "\t"))
		for _, c := range rows {
			fmt.Fprintln(tw, strings.Join(cols.row(c), "\t"))
		}
		tw.Flush()

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
				if s.BusyKnown {
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

// columns are the optional columns of a scenario's table.
type columns struct {
	ratio    bool // time over the fastest reference tool's
	requests bool // the origin's counts
	perFile  bool // requests per file (small)
}

func columnsOf(rows []*Cell) columns {
	var cols columns
	for _, c := range rows {
		cols.ratio = cols.ratio || c.VsFastestReference > 0
		cols.requests = cols.requests || c.ConnsAccepted > 0
		cols.perFile = cols.perFile || c.Files > 0
	}
	cols.perFile = cols.perFile && cols.requests
	return cols
}

func (cols columns) header() []string {
	h := []string{"cell", "durable", "median time"}
	if cols.ratio {
		h = append(h, "vs fastest ref")
	}
	h = append(h, "MB/s median (min-max)", "peak RSS", "CPU s", "buffer bound")
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
	durable := "no"
	if c.Durable {
		durable = "fsync" // the run's time includes it
	}
	r := []string{c.Label, durable, figure("%.2fs", c.MedianSeconds)}
	if cols.ratio {
		r = append(r, figure("%.2fx", c.VsFastestReference))
	}
	r = append(r, figure("%.0f (%.0f-%.0f)", c.MedianMBps, c.MinMBps, c.MaxMBps), figure("%s", mib(c.PeakRSS)), figure("%.2f", c.CPUSeconds), bound)
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

// Plot geometry, in SVG user units (pixels).
const (
	plotWidth  = 960
	plotLabelW = 300 // left column: cell labels
	plotRight  = 110 // right margin: value text
	plotRowH   = 24
	plotTop    = 56
	plotBottom = 40
)

// WriteJSON writes the cells as an indented JSON array.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.Cells)
}

// SVG renders a horizontal bar chart: one bar per cell (median MB/s), a
// min-max whisker on each, cells grouped by scenario. It fails only when
// the document it made is not well-formed XML.
func (r *Result) SVG() ([]byte, error) {
	data := renderPlot(r)
	if err := xml.Unmarshal(data, new(struct{})); err != nil {
		return nil, fmt.Errorf("generated SVG is not well-formed: %w", err)
	}
	return data, nil
}

func renderPlot(r *Result) []byte {
	o, cells := r.Options, r.Cells
	maxMBps := 0.0
	for _, c := range cells {
		maxMBps = max(maxMBps, c.MaxMBps)
	}
	scale, step := niceScale(maxMBps)
	rows := len(cells) + len(o.Scenarios) // a heading row per scenario
	height := plotTop + rows*plotRowH + plotBottom
	barW := float64(plotWidth - plotLabelW - plotRight)
	x := func(mbps float64) float64 { return plotLabelW + barW*mbps/scale }

	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`, plotWidth, height, plotWidth, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>`)
	p(`<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`, 12, esc(fmt.Sprintf("dlflow bench: median throughput, MB/s (whiskers: min-max of %d run(s))", o.Runs)))
	what := fmt.Sprintf("%v file", o.Size)
	if slices.Contains(o.Scenarios, ScenarioSmall) {
		batch := fmt.Sprintf("%d files of %v", o.Files, o.FileSize)
		if len(o.Scenarios) == 1 {
			what = batch
		} else {
			what += "; small: " + batch
		}
	}
	if o.URL != "" {
		what = o.URL
	}
	for _, c := range cells {
		if c.Tool != "dlflow" {
			what += "; blue: dlflow, grey: reference tools"
			break
		}
	}
	p(`<text x="%d" y="40" fill="#555">%s</text>`, 12, esc(what+"; higher is better"))

	// Grid and axis labels.
	gridBottom := plotTop + rows*plotRowH
	for v := 0.0; v <= scale+step/2; v += step {
		gx := x(v)
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, gx, plotTop-4, gx, gridBottom)
		p(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`, gx, gridBottom+16, esc(fmt.Sprintf("%.0f", v)))
	}
	p(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555">MB/s</text>`, plotLabelW+barW/2, gridBottom+34)

	y := plotTop
	for _, scenario := range o.Scenarios {
		p(`<text x="%d" y="%d" font-weight="bold">%s</text>`, 12, y+16, esc("scenario "+string(scenario)))
		y += plotRowH
		for _, c := range cells {
			if c.Scenario != scenario {
				continue
			}
			p(`<text x="%d" y="%d" text-anchor="end">%s</text>`, plotLabelW-8, y+16, esc(c.Label))
			if c.Failed() || c.MedianMBps == 0 {
				p(`<text x="%d" y="%d" fill="#b00">failed</text>`, plotLabelW+4, y+16)
				y += plotRowH
				continue
			}
			color := "#3b6fb6" // dlflow
			if c.Tool != "dlflow" {
				color = "#9a9a9a" // reference tools
			}
			p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`, plotLabelW, y+4, x(c.MedianMBps)-plotLabelW, plotRowH-8, color,
				esc(fmt.Sprintf("%s: median %.0f MB/s, min %.0f, max %.0f", c.Label, c.MedianMBps, c.MinMBps, c.MaxMBps)))
			mid := y + plotRowH/2
			x0, x1 := x(c.MinMBps), x(c.MaxMBps)
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`, x0, mid, x1, mid)
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`, x0, mid-5, x0, mid+5)
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`, x1, mid-5, x1, mid+5)
			p(`<text x="%.1f" y="%d">%s</text>`, max(x1, x(c.MedianMBps))+6, y+16, esc(fmt.Sprintf("%.0f", c.MedianMBps)))
			y += plotRowH
		}
	}
	p(`</svg>`)
	return b.Bytes()
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
