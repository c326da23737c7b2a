package bench

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/dlflow/dlflow/pipeline"
)

// Plot geometry, in pixels.
const (
	plotMinLabelW = 120 // left column of a bar chart: cell labels, at least
	plotBarsW     = 520 // the bars' area
	plotRight     = 90  // right margin: value text
	plotRowH      = 24
	plotTop       = 56
	plotFooterH   = 48
	plotPanelH    = 320 // a line chart's panel
	plotLegendW   = 200
)

// Colors: dlflow's cells, reference tools, and the lines of a sweep.
var (
	dlflowColor    = "#3b6fb6"
	referenceColor = "#9a9a9a"
	lineColors     = []string{"#3b6fb6", "#d9822b", "#3a9e5c", "#b63b6f", "#7a5cb6", "#8c6d1f", "#2b9ad9", "#555555"}
)

// SVG renders the bench as an SVG document: a line chart of throughput
// against the swept value for a sweep over connections, piece sizes or one
// --vary key (a line per topology or tool, with the median's 95% interval
// as a bar on each point), otherwise a horizontal bar chart (a bar per
// cell, whiskers min-max), a section per scenario headed by its
// parameters, with a footer naming the host, version, date and runs. It
// fails only when the document it made is not well-formed XML.
func (r *Result) SVG() ([]byte, error) {
	w, h := plotSize(r)
	c := newSVG(w, h)
	drawPlot(r, c, w, h)
	return c.bytes()
}

// PNG renders the same picture as SVG, as a PNG image.
func (r *Result) PNG() ([]byte, error) {
	w, h := plotSize(r)
	c := newPNG(w, h)
	drawPlot(r, c, w, h)
	return c.bytes()
}

// mibps converts MB/s (the document's unit) to MiB/s, the plots' unit, so
// that rates read in the family of the sizes (MiB).
func mibps(mbps float64) float64 { return mbps * 1e6 / (1 << 20) }

// labelWidth is the width of the bar chart's label column: its longest
// label and a margin.
func labelWidth(cells []Cell) float64 {
	w := float64(plotMinLabelW)
	for _, c := range cells {
		w = max(w, textWidth(c.Label)+24)
	}
	return w
}

func plotSize(r *Result) (w, h int) {
	if sw := sweepOf(r.Options); sw != nil {
		w, h = 80+plotBarsW+plotLegendW+40, plotTop+len(r.Options.Scenarios)*(plotPanelH+plotRowH)+plotFooterH
	} else {
		rows := len(r.Cells) + len(r.Options.Scenarios) // a heading row per scenario
		w, h = int(labelWidth(r.Cells))+plotBarsW+plotRight, plotTop+rows*plotRowH+40+plotFooterH
	}
	for _, s := range r.Options.Scenarios { // a heading fits
		w = max(w, int(textWidth(sectionHeading(r, s)))+24)
	}
	return w, h
}

func drawPlot(r *Result, c canvas, w, h int) {
	sw := sweepOf(r.Options)
	title := "dlflow bench: median throughput, MiB/s (whiskers: min-max of the runs)"
	if sw != nil {
		title = fmt.Sprintf("dlflow bench: median throughput against %s, MiB/s (bars: 95%% interval of the median)", sw.name)
	}
	c.text(12, 22, title, textStyle{bold: true})
	sub := "higher is better"
	if slices.ContainsFunc(r.Cells, func(c Cell) bool { return c.Tool != "dlflow" }) && sw == nil {
		sub = "blue: dlflow, grey: reference tools; " + sub
	}
	c.text(12, 40, sub, textStyle{color: "#555"})
	if sw != nil {
		drawSweep(r, c, sw)
	} else {
		drawBars(r, c)
	}
	drawFooter(r, c, w, h)
}

// sectionHeading is a scenario's heading with its parameters.
func sectionHeading(r *Result, s Scenario) string {
	return heading(r.Options, s) + ": " + r.Servers[s]
}

func drawBars(r *Result, c canvas) {
	maxMiB := 0.0
	for _, cell := range r.Cells {
		maxMiB = max(maxMiB, mibps(cell.MaxMBps))
	}
	scale, step := niceScale(maxMiB)
	labelW := labelWidth(r.Cells)
	x := func(v float64) float64 { return labelW + plotBarsW*v/scale }
	rows := len(r.Cells) + len(r.Options.Scenarios)
	gridBottom := float64(plotTop + rows*plotRowH)
	for v := 0.0; v <= scale+step/2; v += step {
		c.line(x(v), plotTop-4, x(v), gridBottom, "#ddd", 1)
		c.text(x(v), gridBottom+16, strconv.FormatFloat(v, 'f', -1, 64), textStyle{anchor: "middle", color: "#555"})
	}
	c.text(labelW+plotBarsW/2, gridBottom+34, "MiB/s", textStyle{anchor: "middle", color: "#555"})
	y := float64(plotTop)
	for _, scenario := range r.Options.Scenarios {
		c.text(12, y+16, sectionHeading(r, scenario), textStyle{bold: true})
		y += plotRowH
		for _, cell := range r.Cells {
			if cell.Scenario != scenario {
				continue
			}
			c.text(labelW-8, y+16, cell.Label, textStyle{anchor: "end"})
			if cell.Failed() || cell.MedianMBps == 0 {
				c.text(labelW+4, y+16, "failed", textStyle{color: "#b00"})
				y += plotRowH
				continue
			}
			color := dlflowColor
			if cell.Tool != "dlflow" {
				color = referenceColor
			}
			med := mibps(cell.MedianMBps)
			c.rect(labelW, y+4, x(med)-labelW, plotRowH-8, color,
				fmt.Sprintf("%s: median %.0f MiB/s, min %.0f, max %.0f", cell.Label, med, mibps(cell.MinMBps), mibps(cell.MaxMBps)))
			mid := y + plotRowH/2
			x0, x1 := x(mibps(cell.MinMBps)), x(mibps(cell.MaxMBps))
			c.line(x0, mid, x1, mid, "black", 1)
			c.line(x0, mid-5, x0, mid+5, "black", 1)
			c.line(x1, mid-5, x1, mid+5, "black", 1)
			c.text(max(x1, x(med))+6, y+16, fmt.Sprintf("%.0f", med), textStyle{})
			y += plotRowH
		}
	}
}

// drawFooter names what made the plot: host, version, date and runs.
func drawFooter(r *Result, c canvas, w, h int) {
	e := r.Environment
	host, _ := os.Hostname()
	commit := e.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	line1 := fmt.Sprintf("%s: %s, %d cores, %s, %s", orDash(host), orDash(e.CPU), e.Cores, orDash(e.Kernel), orDash(e.Filesystem))
	line2 := fmt.Sprintf("dlflow %s; %s; %s; %s", strings.TrimSpace(e.Version+" "+commit), e.GoVersion, e.Start.Format("2006-01-02 15:04 UTC"), runsDescription(r.Options))
	c.line(12, float64(h-plotFooterH+6), float64(w-12), float64(h-plotFooterH+6), "#ddd", 1)
	c.text(12, float64(h-plotFooterH+24), line1, textStyle{color: "#555"})
	c.text(12, float64(h-plotFooterH+40), line2, textStyle{color: "#555"})
}

// sweep is a dimension of the matrix that takes several values: the
// x axis of a line chart.
type sweep struct {
	name   string
	values []string // in the order to plot
	// point is a cell's value of the dimension and the series (line) it
	// belongs to; ok false for a cell that does not vary with it (a
	// single stream, a reference tool without the option), drawn as a
	// flat line.
	point func(c Cell) (value, series string, ok bool)
}

// sweepOf is the sweep the options ask for: over connections, piece sizes
// or one --vary key, when exactly one of them has several values.
func sweepOf(o Options) *sweep {
	var found []*sweep
	if len(o.Connections) > 1 {
		var values []string
		for _, n := range o.Connections {
			values = append(values, strconv.Itoa(n))
		}
		found = append(found, &sweep{name: "connections", values: values, point: func(c Cell) (string, string, bool) {
			if c.Connections == 0 {
				return "", c.Label, false
			}
			tag := " c=" + strconv.Itoa(c.Connections)
			return strconv.Itoa(c.Connections), strings.Replace(c.Label, tag, "", 1), true
		}})
	}
	if len(o.Pieces) > 1 {
		var values []string
		for _, p := range o.Pieces {
			values = append(values, p.String())
		}
		found = append(found, &sweep{name: "piece size", values: values, point: func(c Cell) (string, string, bool) {
			if c.Piece == 0 {
				return "", c.Label, false
			}
			v := pipeline.ByteSize(c.Piece).String()
			return v, strings.Replace(c.Label, " piece="+v, "", 1), true
		}})
	}
	if len(o.Vary) == 1 && len(o.Vary[0].Values) > 1 {
		v := o.Vary[0]
		label := varyLabels([]string{v.Key})[0]
		found = append(found, &sweep{name: label, values: v.Values, point: func(c Cell) (string, string, bool) {
			for _, s := range c.Sets {
				if val, ok := strings.CutPrefix(s, v.Key+"="); ok {
					return val, strings.Replace(c.Label, " "+label+"="+val, "", 1), true
				}
			}
			return "", c.Label, false
		}})
	}
	if len(found) != 1 || len(o.Vary) > 1 {
		return nil
	}
	return found[0]
}

// drawSweep draws a line chart per scenario: x the swept values, y the
// median MiB/s with the median's interval, a line per series.
func drawSweep(r *Result, c canvas, sw *sweep) {
	const left = 80.0
	y0 := float64(plotTop)
	for _, scenario := range r.Options.Scenarios {
		c.text(12, y0+16, sectionHeading(r, scenario), textStyle{bold: true})
		top, bottom := y0+plotRowH+8, y0+plotRowH+plotPanelH-40
		series, order := sweepSeries(r.Cells, scenario, sw)
		maxMiB := 0.0
		for _, pts := range series {
			for _, p := range pts {
				maxMiB = max(maxMiB, p.high)
			}
		}
		scale, step := niceScale(maxMiB)
		y := func(v float64) float64 { return bottom - (bottom-top)*v/scale }
		x := func(i int) float64 {
			if len(sw.values) == 1 {
				return left + plotBarsW/2
			}
			return left + 20 + float64(i)*(plotBarsW-40)/float64(len(sw.values)-1)
		}
		for v := 0.0; v <= scale+step/2; v += step {
			c.line(left, y(v), left+plotBarsW, y(v), "#ddd", 1)
			c.text(left-6, y(v)+4, strconv.FormatFloat(v, 'f', -1, 64), textStyle{anchor: "end", color: "#555"})
		}
		for i, v := range sw.values {
			c.text(x(i), bottom+16, v, textStyle{anchor: "middle", color: "#555"})
		}
		c.text(left+plotBarsW/2, bottom+32, sw.name, textStyle{anchor: "middle", color: "#555"})
		c.text(14, (top+bottom)/2, "MiB/s", textStyle{color: "#555"})
		for k, name := range order {
			color := lineColors[k%len(lineColors)]
			pts := series[name]
			for i, p := range pts {
				px := x(p.index)
				c.line(px, y(p.low), px, y(p.high), color, 1)
				c.line(px-4, y(p.low), px+4, y(p.low), color, 1)
				c.line(px-4, y(p.high), px+4, y(p.high), color, 1)
				c.rect(px-3, y(p.median)-3, 6, 6, color, fmt.Sprintf("%s, %s %s: median %.0f MiB/s (%.0f-%.0f)", name, sw.name, sw.values[p.index], p.median, p.low, p.high))
				if i > 0 {
					c.line(x(pts[i-1].index), y(pts[i-1].median), px, y(p.median), color, 2)
				}
			}
			ly := top + 14 + float64(k)*18
			c.rect(left+plotBarsW+20, ly-9, 12, 4, color, "")
			c.text(left+plotBarsW+38, ly-3, name, textStyle{})
		}
		y0 += plotPanelH + plotRowH
	}
}

// sweepPoint is a series' median and interval at one swept value, in
// MiB/s.
type sweepPoint struct {
	index             int
	median, low, high float64
}

// sweepSeries groups the scenario's measured cells into lines, in the
// order they first appear; a cell that does not vary is a flat line at
// every value.
func sweepSeries(cells []Cell, scenario Scenario, sw *sweep) (map[string][]sweepPoint, []string) {
	series := map[string][]sweepPoint{}
	var order []string
	for _, c := range cells {
		if c.Scenario != scenario || c.Failed() || c.MedianMBps == 0 {
			continue
		}
		value, name, ok := sw.point(c)
		p := sweepPoint{median: mibps(c.Stats.MedianMBps), low: mibps(c.Stats.MedianLowMBps), high: mibps(c.Stats.MedianHighMBps)}
		if _, seen := series[name]; !seen {
			order = append(order, name)
		}
		if !ok {
			for i := range sw.values {
				p.index = i
				series[name] = append(series[name], p)
			}
			continue
		}
		if p.index = slices.Index(sw.values, value); p.index >= 0 {
			series[name] = append(series[name], p)
		}
	}
	for _, pts := range series {
		slices.SortFunc(pts, func(a, b sweepPoint) int { return a.index - b.index })
	}
	return series, order
}
