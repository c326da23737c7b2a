package bench

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// The timeline's layout, in pixels.
const (
	tlWidth   = 1200
	tlLeft    = 120 // the lanes' labels
	tlRight   = 20
	tlTop     = 72 // title, subtitle and legend
	tlLaneH   = 22
	tlGap     = 4
	tlHeading = 26
	tlAxis    = 34
)

// SVG draws the timeline: a section per cell, with a lane per connection
// (each request a bar from sent to end: grey until its header came, then
// its rate as the height of the blue, a tick where it was sent; markers
// for steals, retries and drops), and a lane per stage replica beneath
// with its busy intervals. All sections share one time axis. It fails
// only when the document it made is not well-formed XML.
func (t Timeline) SVG() ([]byte, error) {
	w, h := t.size()
	c := newSVG(w, h)
	t.draw(c)
	return c.bytes()
}

// PNG draws the same picture as SVG, as a PNG image.
func (t Timeline) PNG() ([]byte, error) {
	w, h := t.size()
	c := newPNG(w, h)
	t.draw(c)
	return c.bytes()
}

func (t Timeline) size() (w, h int) {
	h = tlTop + 10
	for _, tc := range t.Cells {
		h += tc.height()
	}
	return tlWidth, h
}

func (tc TimelineCell) height() int {
	return tlHeading + (len(tc.Lanes)+len(tc.Busy))*(tlLaneH+tlGap) + tlAxis
}

func (t Timeline) draw(c canvas) {
	c.text(12, 22, "dlflow bench: timeline of one run of each dlflow cell (its last), a lane per connection", textStyle{bold: true})
	c.text(12, 40, "bar: a request from sent to end; grey: waiting for its header; blue: its rate (full height: the cell's top rate); black tick: sent", textStyle{color: "#555"})
	c.text(12, 58, "markers: red steal (took work over), orange retry, black source dropped; green: a stage's busy time (taking a chunk to asking for the next), % of the run", textStyle{color: "#555"})
	var span time.Duration
	for _, tc := range t.Cells {
		span = max(span, tc.Elapsed)
	}
	if span <= 0 {
		span = time.Second
	}
	plotW := float64(tlWidth - tlLeft - tlRight)
	x := func(d time.Duration) float64 { return tlLeft + float64(d)/float64(span)*plotW }
	y := float64(tlTop)
	for _, tc := range t.Cells {
		y = tc.draw(c, x, y, span)
	}
}

// draw draws the cell's section from y and returns where the next starts.
func (tc TimelineCell) draw(c canvas, x func(time.Duration) float64, y float64, span time.Duration) float64 {
	requests := 0
	for _, l := range tc.Lanes {
		requests += len(l.Requests)
	}
	c.text(12, y+16, fmt.Sprintf("%s: %s, %v in %.3fs (traced), %d requests on %d connections; %s",
		tc.Scenario, tc.Label, pipeline.ByteSize(tc.Bytes), tc.Elapsed.Seconds(), requests, len(tc.Lanes), tc.Server), textStyle{bold: true})
	y += tlHeading
	top := topRate(tc.Lanes)
	for _, l := range tc.Lanes {
		c.text(12, y+15, fmt.Sprintf("%s %d", l.Stage, l.Reader), textStyle{})
		c.rect(tlLeft, y, x(span)-tlLeft, tlLaneH, "#f6f6f6", "")
		for _, r := range l.Requests {
			drawRequest(c, x, y, r, top)
		}
		for _, e := range l.Events {
			drawEvent(c, x, y, e)
		}
		y += tlLaneH + tlGap
	}
	for _, b := range tc.Busy {
		share := 100 * float64(b.Total) / float64(max(tc.Elapsed, 1))
		c.text(12, y+15, fmt.Sprintf("%s %d %.0f%%", b.Stage, b.Replica, share), textStyle{color: "#2a7a2a"})
		c.rect(tlLeft, y, x(span)-tlLeft, tlLaneH, "#f6f6f6", "")
		for _, iv := range b.Intervals {
			c.rect(x(iv[0]), y+3, max(x(iv[1])-x(iv[0]), 0.5), tlLaneH-6, "#2ca02c", "")
		}
		y += tlLaneH + tlGap
	}
	drawAxis(c, x, y, span)
	return y + tlAxis
}

// drawRequest draws one request's bar in the lane at y.
func drawRequest(c canvas, x func(time.Duration) float64, y float64, r pipeline.TraceRequest, top float64) {
	end := "open"
	if r.End >= 0 {
		end = fmt.Sprint(r.End)
	}
	title := fmt.Sprintf("reader %d: bytes [%d, %s), %v delivered; sent %.3fs, header %.3fs, ended %.3fs", r.Reader, r.Start, end,
		pipeline.ByteSize(r.Bytes), r.Sent.Seconds(), r.Header.Seconds(), r.Ended.Seconds())
	if r.Prefetched {
		title += "; the probe's answer"
	}
	if r.Err != "" {
		title += "; " + r.Err
	}
	c.rect(x(r.Sent), y, max(x(r.Ended)-x(r.Sent), 1), tlLaneH, "#dce6f2", title)
	header := r.Header
	if header == 0 {
		header = r.Ended
	}
	c.rect(x(r.Sent), y, max(x(header)-x(r.Sent), 0), tlLaneH, "#bdbdbd", "")
	prev := pipeline.TraceSample{At: header}
	for _, s := range r.Samples {
		if s.At > prev.At && s.Bytes > prev.Bytes && top > 0 {
			h := tlLaneH * min(rate(prev, s)/top, 1)
			c.rect(x(prev.At), y+tlLaneH-h, x(s.At)-x(prev.At), h, "#3b73b9", "")
		}
		prev = s
	}
	c.line(x(r.Sent), y, x(r.Sent), y+tlLaneH, "#000", 1)
	if r.Err != "" {
		c.line(x(r.Ended), y, x(r.Ended), y+tlLaneH, "#d62728", 2)
	}
}

// drawEvent marks a steal, retry or drop at the top of the lane at y.
func drawEvent(c canvas, x func(time.Duration) float64, y float64, e pipeline.TraceEvent) {
	color := map[string]string{"steal": "#d62728", "retry": "#ff7f0e"}[e.Kind]
	if color == "" {
		color = "#000"
	}
	title := fmt.Sprintf("%s at %.3fs: [%d, %d) %s", e.Kind, e.At.Seconds(), e.Start, e.End, e.Detail)
	c.rect(x(e.At)-3, y-2, 7, 7, color, title)
}

// drawAxis draws the time axis under the lanes, from y.
func drawAxis(c canvas, x func(time.Duration) float64, y float64, span time.Duration) {
	c.line(tlLeft, y+2, x(span), y+2, "#888", 1)
	step := time.Duration(0)
	for _, s := range []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600} {
		if step = time.Duration(s * float64(time.Second)); span/step <= 12 {
			break
		}
	}
	for d := time.Duration(0); d <= span; d += step {
		c.line(x(d), y+2, x(d), y+7, "#888", 1)
		c.text(x(d), y+20, fmt.Sprintf("%gs", d.Seconds()), textStyle{anchor: "middle", color: "#555"})
	}
}

// rate is the bytes per second between two samples.
func rate(a, b pipeline.TraceSample) float64 {
	return float64(b.Bytes-a.Bytes) / (b.At - a.At).Seconds()
}

// topRate is the rate the blue's full height stands for: the 95th
// percentile of the samples' rates, since the first bytes of an answer
// (the probe's, waiting in the socket) come at a rate no connection has.
func topRate(lanes []TimelineLane) float64 {
	var rates []float64
	for _, l := range lanes {
		for _, r := range l.Requests {
			prev := pipeline.TraceSample{At: max(r.Header, r.Sent)}
			for _, s := range r.Samples {
				if s.At > prev.At && s.Bytes > prev.Bytes {
					rates = append(rates, rate(prev, s))
				}
				prev = s
			}
		}
	}
	if len(rates) == 0 {
		return 0
	}
	slices.Sort(rates)
	return rates[int(math.Floor(0.95*float64(len(rates)-1)))]
}
