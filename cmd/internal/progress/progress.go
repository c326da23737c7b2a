// Package progress draws downloads on a terminal with mpb: a bar for one
// download (and a line per connection of a ranged one), or a display of one
// line per running download of a batch, with other lines printed above.
// It reads each download's dlflow.Download.Progress.
package progress

import (
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// barPoll is how often the bar reads the stages' counters; barAlpha weighs
// the newest poll in the smoothed rates (about the last two seconds count).
const (
	barPoll    = 200 * time.Millisecond
	barRefresh = 150 * time.Millisecond
	barAlpha   = 0.1
	barWidth   = 30 // of the [===>---] part
)

// Bar draws a download on a terminal: one line for the whole file
// (bytes, percentage, rate, eta) and, for ranged topologies, one line per
// connection (bytes and smoothed rate of each). It polls the download's
// Progress.
type Bar struct {
	p     *mpb.Progress
	main  *mpb.Bar
	conns []*mpb.Bar
	// shared: the container is a batch's, which outlives this download;
	// the bar is one line, removed when the download ends.
	shared bool

	d *dlflow.Download

	mu    sync.Mutex // guards stats, which the decorators read
	stats barStats

	restore func() // gives the log lines back to stderr
	stop    chan struct{}
	done    chan struct{}
}

type barStats struct {
	done, total int64 // total -1: unknown
	rate        float64
	eta         time.Duration // -1: unknown
	conns       []connStats
	sources     []sourceStats
}

// sourceStats is a line of a download from several URLs.
type sourceStats struct {
	connStats
	url     string
	conns   int
	errors  int64
	dropped bool
}

type connStats struct {
	bytes int64
	rate  float64
}

// Redirector is where log lines go: while a bar is drawn they must print
// above it, through the bar's container, instead of through it.
type Redirector interface {
	// Redirect sends the log lines to w until restore is called; bar says
	// w draws a progress bar (the lines that repeat what it shows may be
	// dropped).
	Redirect(w io.Writer, bar bool) (restore func())
}

// Start starts drawing d on w, a terminal, and sends the log lines through
// the bar meanwhile. Finish stops it. Call it once d's output and size are
// known (dlflow.Hooks.Started).
//
// opts are added to the container's; a test gives a width (a terminal's
// own is used otherwise).
func Start(w io.Writer, d *dlflow.Download, logs Redirector, opts ...mpb.ContainerOption) *Bar {
	b := newBar(d)
	b.p = newBarContainer(w, opts...)
	b.addMain(d.Info().Path)
	b.restore = logs.Redirect(b.p, true)
	go b.pollEvery()
	return b
}

// newBarContainer is the mpb container that draws on w.
func newBarContainer(w io.Writer, opts ...mpb.ContainerOption) *mpb.Progress {
	return mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithRefreshRate(barRefresh), mpb.WithAutoRefresh()}, opts...)...)
}

// Add draws one download of a batch on the display: a single line (no line
// per connection, to keep several downloads readable), which goes away when
// the download ends and its summary line is printed. Finish stops it.
func (disp *Display) Add(d *dlflow.Download) *Bar {
	p := disp.bars
	b := newBar(d)
	b.p, b.shared, b.restore = p, true, func() {}
	b.addMain(d.Info().Path, mpb.BarRemoveOnComplete())
	go b.pollEvery()
	return b
}

func newBar(d *dlflow.Download) *Bar {
	b := &Bar{d: d, stop: make(chan struct{}), done: make(chan struct{})}
	b.stats.total, b.stats.eta = d.Info().Size, -1
	return b
}

func (b *Bar) addMain(output string, opts ...mpb.BarOption) {
	name := filepath.Base(output)
	if output == "" {
		name = "stdout" // the download goes to a writer (-o -)
	}
	if len(name) > 24 {
		name = name[:21] + "..."
	}
	b.main = b.p.AddBar(max(b.stats.total, 0), append([]mpb.BarOption{mpb.BarWidth(barWidth),
		mpb.PrependDecorators(decor.Name(name, decor.WC{C: decor.DindentRight | decor.DextraSpace | decor.DSyncWidth})),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string { return b.mainText() }, decor.WC{C: decor.DextraSpace}),
		),
	}, opts...)...)
}

// pollEvery updates the bars every barPoll until stop is closed.
func (b *Bar) pollEvery() {
	defer close(b.done)
	t := time.NewTicker(barPoll)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.poll(now.Sub(last).Seconds())
			last = now
		}
	}
}

// finish stops the polling, draws the final state, and waits until the bar
// is off the terminal's active area: complete when ok, aborted (left as it
// was) otherwise.
func (b *Bar) Finish(ok bool) {
	if b == nil {
		return
	}
	close(b.stop)
	<-b.done
	b.poll(0)
	for _, bar := range append([]*mpb.Bar{b.main}, b.conns...) {
		if ok {
			bar.SetTotal(-1, true)
		} else {
			bar.Abort(b.shared) // a batch's failure line says it all
		}
	}
	if b.shared {
		b.main.Wait() // off the container; the batch waits for the container
		return
	}
	b.p.Wait()
	b.restore()
}

// poll reads the counters and updates the bars; dt is the time since the
// last poll in seconds, 0 for a final read that does not sample the rate.
func (b *Bar) poll(dt float64) {
	p := b.d.Progress()
	perConn, done, total := p.Connections, p.Done, p.Total
	if len(p.Sources) > 1 {
		// From several URLs, a line per source says more than one per
		// connection.
		perConn = make([]int64, len(p.Sources))
		for i, src := range p.Sources {
			perConn[i] = src.Bytes
		}
	}

	b.mu.Lock()
	s := &b.stats
	if total >= 0 {
		s.total = total
	}
	s.done, s.rate, s.eta = done, p.Rate, time.Duration(p.ETA)
	for len(s.conns) < len(perConn) {
		s.conns = append(s.conns, connStats{})
	}
	for i, n := range perConn {
		c := &s.conns[i]
		if dt > 0 {
			c.rate = smooth(c.rate, float64(n-c.bytes)/dt, c.bytes > 0 || c.rate > 0)
		}
		c.bytes = n
	}
	for len(s.sources) < len(p.Sources) {
		s.sources = append(s.sources, sourceStats{})
	}
	for i, src := range p.Sources {
		ss := &s.sources[i]
		ss.connStats = s.conns[i]
		ss.url, ss.conns, ss.errors, ss.dropped = src.URL, src.Connections, src.Errors, src.Dropped != ""
	}
	total = s.total
	b.mu.Unlock()

	if total >= 0 {
		b.main.SetTotal(total, false)
	}
	b.main.SetCurrent(done)
	// One line per connection, added as the connections start; a single
	// connection gets none, the main line says it all.
	if len(perConn) > 1 && !b.shared {
		for i := len(b.conns); i < len(perConn); i++ {
			b.conns = append(b.conns, b.p.New(-1, mpb.NopStyle(),
				mpb.PrependDecorators(decor.Name(b.lineName(i), decor.WC{C: decor.DindentRight | decor.DextraSpace | decor.DSyncWidth})),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return b.connText(i) })),
			))
		}
	}
	for i, bar := range b.conns {
		bar.SetCurrent(perConn[i])
	}
}

func smooth(avg, inst float64, sampled bool) float64 {
	if !sampled {
		return inst // nothing to smooth with yet
	}
	return barAlpha*inst + (1-barAlpha)*avg
}

func (b *Bar) mainText() string {
	b.mu.Lock()
	s := b.stats
	b.mu.Unlock()
	if s.total < 0 {
		return fmt.Sprintf("%10s  %12s", Bytes(float64(s.done)), Rate(s.rate))
	}
	pct := 100.0
	if s.total > 0 {
		pct = float64(s.done) * 100 / float64(s.total)
	}
	eta := "--"
	if s.eta >= 0 {
		eta = ETA(s.eta.Seconds())
	}
	return fmt.Sprintf("%10s / %-10s %5.1f%%  %12s  eta %s",
		Bytes(float64(s.done)), Bytes(float64(s.total)), pct, Rate(s.rate), eta)
}

func (b *Bar) connText(i int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i >= len(b.stats.conns) {
		return ""
	}
	c := b.stats.conns[i]
	line := fmt.Sprintf("%10s  %12s", Bytes(float64(c.bytes)), Rate(c.rate))
	if i < len(b.stats.sources) {
		src := b.stats.sources[i]
		line += fmt.Sprintf("  %d conns, %d errors", src.conns, src.errors)
		if src.dropped {
			line += ", dropped"
		}
	}
	return line
}

// lineName names the line of connection or source i.
func (b *Bar) lineName(i int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i < len(b.stats.sources) {
		host := b.stats.sources[i].url
		if u, err := url.Parse(host); err == nil && u.Host != "" {
			host = u.Host
		}
		if len(host) > 24 {
			host = host[:21] + "..."
		}
		return "  " + host
	}
	return fmt.Sprintf("  conn %d", i+1)
}

// Display is the progress display of a batch on a terminal: one mpb
// container where each running download adds its line (Add), and
// Lines, a writer for the lines that print above them (finished
// downloads, failures, the log).
//
// mpb prints a written line at its next refresh, and drops it if the
// container shuts down first: Close waits until the terminal got a frame
// drawn after the last line, then shuts the container down.
type Display struct {
	bars *mpb.Progress

	mu       sync.Mutex
	lastLine time.Time // when a line was last handed to the container
	lastDraw time.Time // when the container last wrote to the terminal
}

func NewDisplay(term io.Writer, opts ...mpb.ContainerOption) *Display {
	d := &Display{}
	d.bars = newBarContainer(drawnWriter{w: term, d: d}, opts...)
	return d
}

// Lines returns the writer of lines above the bars.
func (d *Display) Lines() io.Writer { return displayLines{d} }

// Close waits (a second at most) until the lines written so far are drawn,
// and for the bars to end, then shuts the container down.
func (d *Display) Close() {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		drawn := d.lastLine.IsZero() || d.lastDraw.After(d.lastLine)
		d.mu.Unlock()
		if drawn {
			break
		}
		time.Sleep(barRefresh / 10)
	}
	d.bars.Wait()
}

type displayLines struct{ d *Display }

func (l displayLines) Write(p []byte) (int, error) {
	n, err := l.d.bars.Write(p) // returns once the container holds p
	l.d.mu.Lock()
	l.d.lastLine = time.Now()
	l.d.mu.Unlock()
	return n, err
}

type drawnWriter struct {
	w io.Writer
	d *Display
}

func (t drawnWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.d.mu.Lock()
	t.d.lastDraw = time.Now()
	t.d.mu.Unlock()
	return n, err
}
