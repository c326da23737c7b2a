package dlflow

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// Result is how a download ended.
type Result struct {
	// URL is the URL asked for, redacted (no password).
	URL string
	// Path is the output, "" when it was not known yet, and "" for a
	// download to Request.Writer, which makes no file.
	Path string
	// Bytes is the size of the output (of the archive, for an
	// extraction); on failure, the bytes in place so far (Resumed
	// included).
	Bytes int64
	// Elapsed is the wall time of the download, probe included.
	Elapsed time.Duration
	// Connections is the most connections the download used at once.
	Connections int
	// Retries counts the retries of every request, over every run (a file
	// that changed on the server restarts once).
	Retries int64
	// Resumed is the bytes an earlier run left that this one did not fetch.
	Resumed int64
	// Checksum is "algorithm:hex" when a digest was verified, else "".
	Checksum string
	// Verified says what the output's bytes were checked against: a
	// digest of the whole file (Checksum), piece hashes (a Metalink's;
	// Pieces), both, or nothing (VerifiedNone). It is VerifiedNone on
	// failure.
	Verified Verified
	// Pieces is the number of piece hashes the bytes matched.
	Pieces int64
	// Topology names the graph that ran: the file, or "(built-in) NAME.yaml".
	Topology string
	// Skipped is set when the output existed and the request said to skip
	// it (SkipExisting): nothing was fetched.
	Skipped bool
	// UpToDate is set when the request asked for a newer copy only
	// (IfNewer) and the server's is not: nothing was fetched, and the
	// output is as it was.
	UpToDate bool
	// Partial is the file that keeps what a failed download received, for
	// a later resume ("Path.tmp"), or "" when there is none.
	Partial string
	// Sources is what each URL did in the last run, the primary first,
	// when the download had mirrors; nil otherwise.
	Sources []pipeline.SourceStats
}

// Verified is what a download's bytes were checked against: a set of
// VerifiedChecksum and VerifiedPieces, or VerifiedNone.
type Verified uint8

const (
	// VerifiedChecksum: the digest of the whole file matched a checksum
	// (Request.Checksum, a Metalink's hash, the server's Repr-Digest).
	VerifiedChecksum Verified = 1 << iota
	// VerifiedPieces: every piece matched its hash (a Metalink's).
	VerifiedPieces
	// VerifiedNone: nothing checked the bytes.
	VerifiedNone Verified = 0
)

// String is "none", "checksum", "pieces" or "checksum+pieces".
func (v Verified) String() string {
	switch v {
	case VerifiedNone:
		return "none"
	case VerifiedChecksum:
		return "checksum"
	case VerifiedPieces:
		return "pieces"
	case VerifiedChecksum | VerifiedPieces:
		return "checksum+pieces"
	}
	return fmt.Sprintf("Verified(%d)", uint8(v))
}

// Rate is the bytes this download fetched (Resumed left out) per second.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(max(r.Bytes-r.Resumed, 0)) / r.Elapsed.Seconds()
}

// runStats is what the graph runs of one download reported.
type runStats struct {
	connections int
	retries     int64 // over every run
	resumed     int64 // of the last run
	done        int64 // bytes in place, by the progress reporter, of the last run
	checksum    string
	sources     []pipeline.SourceStats // of the last run
	pieces      int                    // piece hashes verified, of the last run
}

// add reads the counters of g after a run.
func (r *runStats) add(g *pipeline.Graph) {
	r.connections = max(g.Connections(), 1)
	if reps := pipeline.Reporters[pipeline.ConnectionReporter](g); len(reps) > 0 {
		// The connections that delivered bytes: a server without ranges
		// gives a ranged graph one, whatever it was built for.
		used := 0
		for _, c := range reps {
			for _, n := range c.ConnectionBytes() {
				if n > 0 {
					used++
				}
			}
		}
		r.connections = max(min(used, r.connections), 1)
	}
	for _, rr := range pipeline.Reporters[pipeline.RetryReporter](g) {
		r.retries += rr.Retries()
	}
	r.resumed, r.done, r.checksum, r.pieces = 0, 0, "", 0
	r.sources = sourceStats(pipeline.Reporters[pipeline.SourceReporter](g))
	if taps := pipeline.Reporters[pipeline.ProgressReporter](g); len(taps) > 0 {
		p := taps[0].Progress()
		r.done, r.resumed = p.Done, p.Resumed
	}
	for _, v := range pipeline.Reporters[pipeline.Verifier](g) {
		vv := v.Verification()
		if vv.Verified {
			r.checksum = vv.Algorithm + ":" + vv.Digest
		}
		r.pieces = max(r.pieces, vv.Pieces)
	}
}

// finalResult is the Result of a download that ended with err; it turns
// errSkipped into a skipped result.
func (d *Download) finalResult(err error) *Result {
	d.mu.Lock()
	info, stats, asked := d.info, d.stats, d.asked
	d.mu.Unlock()
	r := &Result{
		URL:         asked,
		Path:        info.Path,
		Bytes:       stats.done,
		Elapsed:     time.Since(d.begun),
		Connections: max(stats.connections, 1),
		Retries:     stats.retries,
		Resumed:     stats.resumed,
		Checksum:    stats.checksum,
		Topology:    info.Topology,
		Sources:     stats.sources,
	}
	switch {
	case errors.Is(err, errUpToDate):
		r.UpToDate, r.Bytes = true, 0
		if fi, serr := os.Stat(info.Path); serr == nil && fi.Mode().IsRegular() {
			r.Bytes = fi.Size()
		}
	case errors.Is(err, errSkipped):
		r.Skipped, r.Bytes = true, 0
		if fi, serr := os.Stat(info.Path); serr == nil && fi.Mode().IsRegular() {
			r.Bytes = fi.Size()
		}
	case err == nil:
		if fi, serr := os.Stat(info.Path); serr == nil && fi.Mode().IsRegular() {
			r.Bytes = fi.Size() // an extraction's directory: the archive's bytes, counted
		}
		if r.Checksum != "" {
			r.Verified |= VerifiedChecksum
		}
		if m := d.ml.file; m != nil && m.Pieces != nil && stats.pieces == len(m.Pieces.Hashes) {
			r.Verified, r.Pieces = r.Verified|VerifiedPieces, int64(stats.pieces)
		}
		d.warnUnverified(r)
	default:
		r.Partial = d.partial()
		if r.Partial != "" {
			d.log.Info().Str("partial", r.Partial).Msg("partial data kept")
		}
	}
	if r.Topology == "" {
		r.Topology = d.req.Topology.describe()
	}
	return r
}

// Progress is how far a running download is.
type Progress struct {
	// Done is the bytes of the resource in place (Resumed included).
	Done int64
	// Total is the size of the resource, -1 while unknown.
	Total int64
	// Resumed is the bytes an earlier run left that this one does not
	// fetch again.
	Resumed int64
	// Rate is the bytes per second fetched, averaged over the last few
	// seconds: from the first call at least 100 ms after the transfer
	// began (Hooks.Started) on, the average since then for its first two
	// seconds; 0 before, and until bytes arrived.
	Rate float64
	// ETA is the time left at Rate: ETAUnknown while the size or the rate
	// is, 0 once every byte is in.
	ETA Remaining
	// Connections holds the bytes each connection delivered, for
	// topologies whose stages report them (http.reader).
	Connections []int64
	// Sources holds what each URL did so far, the primary first, when the
	// download has mirrors.
	Sources []pipeline.SourceStats
}

// Remaining is a time left: a time.Duration, or ETAUnknown. It prints
// as a duration rounded to the second (to the millisecond under one
// second), and ETAUnknown as "unknown".
type Remaining time.Duration

// ETAUnknown is the ETA of a download whose size or rate is not known.
const ETAUnknown Remaining = -1

func (r Remaining) String() string {
	switch d := time.Duration(r); {
	case r < 0:
		return "unknown"
	case d >= time.Second:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// Duration is the time left, and false when it is unknown.
func (r Remaining) Duration() (time.Duration, bool) { return time.Duration(r), r >= 0 }

func sourceStats(reps []pipeline.SourceReporter) []pipeline.SourceStats {
	var out []pipeline.SourceStats
	for _, r := range reps {
		out = append(out, r.SourceStats()...)
	}
	return out
}

// Progress reports how far the download is. It may be called at any time,
// from any goroutine; the rate is measured from the calls themselves (those
// at least 100 ms apart, the first against the start of the transfer),
// averaged over about two seconds.
func (d *Download) Progress() Progress {
	d.mu.Lock()
	taps, conns, srcs, total := d.taps, d.conns, d.srcReps, d.info.Size
	d.mu.Unlock()
	p := Progress{Total: total, ETA: ETAUnknown, Sources: sourceStats(srcs)}
	for _, c := range conns {
		p.Connections = append(p.Connections, c.ConnectionBytes()...)
	}
	if len(taps) > 0 {
		tp := taps[0].Progress()
		p.Done, p.Resumed = tp.Done, tp.Resumed
		if tp.Total >= 0 {
			p.Total = tp.Total
		}
	} else {
		for _, n := range p.Connections {
			p.Done += n
		}
	}
	d.mu.Lock()
	p.Rate = d.rate.sample(time.Now(), p.Done-p.Resumed)
	d.mu.Unlock()
	switch left := p.Total - p.Done; {
	case p.Total < 0:
	case left <= 0:
		p.ETA = 0
	case p.Rate > 0:
		p.ETA = Remaining(float64(left) / p.Rate * float64(time.Second))
	}
	return p
}

// rateMeter smooths a byte rate over about rateWindow, from samples taken
// whenever Progress is called. For the first rateWindow of a transfer it
// is the average since the start (an exponential average would still
// lean on its first samples, taken before the first bytes arrived);
// after that, an exponential average over about rateWindow. A meter made
// with newRateMeter at the start of a transfer (0 bytes then) estimates
// from its first sample at least rateMinInterval later; a zero meter
// takes its first sample as the start.
type rateMeter struct {
	start, last time.Time
	base, bytes int64 // at start, at last
	rate        float64
	sampled     bool
}

const (
	rateWindow      = 2 * time.Second
	rateMinInterval = 100 * time.Millisecond
)

func newRateMeter(start time.Time) rateMeter { return rateMeter{start: start, last: start} }

// sample takes the bytes fetched since the start of the transfer at now.
func (m *rateMeter) sample(now time.Time, bytes int64) float64 {
	if m.last.IsZero() {
		m.start, m.last, m.base, m.bytes = now, now, bytes, bytes
		return 0
	}
	dt := now.Sub(m.last)
	if dt < rateMinInterval {
		return m.rate
	}
	switch since := now.Sub(m.start); {
	case since < rateWindow || !m.sampled:
		m.rate = float64(bytes-m.base) / since.Seconds()
	default:
		// An exponential average whose weight follows the time between
		// samples, so that the window is about rateWindow however often
		// Progress is called.
		inst := float64(bytes-m.bytes) / dt.Seconds()
		w := 1 - math.Exp(-dt.Seconds()/rateWindow.Seconds())
		m.rate += w * (inst - m.rate)
	}
	m.sampled = true
	m.last, m.bytes = now, bytes
	return m.rate
}

// warnUnverified says, once, that a download's bytes reached the output
// with nothing to check them against, when they came from several
// sources (any of which may serve other bytes of the same size) or from a
// Metalink (which promises hashes).
func (d *Download) warnUnverified(r *Result) {
	if r.Verified != VerifiedNone || r.Skipped {
		return
	}
	n := 0
	for _, s := range r.Sources {
		if s.Bytes > 0 {
			n++
		}
	}
	why := ""
	switch {
	case d.ml.file != nil:
		n, why = max(n, 1), "; the metalink has no hash dlflow can check"
	case n < 2:
		return
	}
	what := "sources"
	if n == 1 {
		what = "source"
	}
	d.log.Warn().Msgf("no checksum: the bytes from %d %s are not verified%s", n, what, why)
}
