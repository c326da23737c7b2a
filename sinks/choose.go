package sinks

import (
	"fmt"
	"math"
	"time"
)

// writeMode is how a replica writes its chunks: through the page cache, or
// direct (O_DIRECT) with several writes in flight.
type writeMode uint8

const (
	writeCached writeMode = iota
	writeDirect
)

func (m writeMode) String() string {
	if m == writeDirect {
		return "direct"
	}
	return "page cache"
}

func (m writeMode) other() writeMode { return 1 - m }

// direct: auto measures its two ways of writing during the run, in windows
// of chooseWindow bytes, and tries the other way only when the one it uses
// holds the download up: when the writer was busy writing, or waiting for
// room to write, while chunks waited in its queue, chooseStall of a
// window's time.
//
// Which way wins depends on the disk, the VM and the file system: direct
// writes cost no copy and leave nothing for the final fsync, but each
// waits for the disk; page cache writes return at once, but the kernel's
// writeback must keep up (writebackAhead turns a writeback that does not
// into waits), its completions come in bursts (ext4 converts preallocated
// extents in batches), what is left of it is paid by the final fsync, and
// the copy takes CPU from the network on a small VM. Measured on two VMs,
// each beat the other on one of them.
//
// So a window that finds the current way holding the download up is
// followed by a trial of the other way. The current way's writes are
// drained first, which measures what it would leave to the final fsync;
// the first chooseWarmup bytes fill the new way's pipeline unmeasured;
// then a window is measured, and drained. Each way is then judged by the
// time it would take to write what is left of the download: those bytes
// at the rate the way took them in, plus its drain. The trial way stays
// when that is shorter by chooseMargin; otherwise the writer goes back.
// The rate counts the time the writer was held up, so a way that slows
// the network with its CPU, or stalls on writeback, is slow; the drain
// counts what the page cache defers, which matters most near the end.
//
// A trial needs chooseTrialLeft times its own bytes still to come: near
// the end, what it could win is less than what its drains cost.
//
// The way that lost is not tried again before chooseBackoff more bytes,
// twice that after the next trial (four times after a clear loss, by
// chooseFallen), and so on: a trial costs a drain and a
// window at the other way's speed, so a disk that is slow both ways costs
// a few, not one per window. Unless the way in use, held up, needed
// chooseFallen times the time the other way was last measured at, two
// windows in a row: a disk may be fast for a burst (a cloud disk's
// credits, a device's or a host's cache, a throttle's first slice) and a
// trial may have measured just that.
//
// The page cache comes first (chooseFirst), but for chunks that fill a
// direct write on their own (see firstWay): it takes a small file in at
// the speed of memory and writes it back in large writes, while a direct
// write waits for the disk from the first byte; where the page cache
// holds the download up (a slow writeback, or a copy that costs the CPU
// the network needs), the first trial comes after chooseWarmup +
// chooseWindow bytes.
//
// Variables only so that tests can make the windows small.
var (
	chooseWindow    int64 = 16 << 20
	chooseWarmup    int64 = 8 << 20
	chooseStall           = 0.10
	chooseMargin          = 1.05
	chooseBackoff   int64 = 64 << 20
	chooseTrialLeft int64 = 4
	chooseFallen          = 1.5
	chooseFirst           = writeCached
)

// trialWins decides a trial: the way tried would write the remaining
// bytes sooner than the way it was tried against, by chooseMargin. A
// variable so that tests can decide otherwise.
var trialWins = func(trial, base window, remaining int64) bool {
	return chooseMargin*float64(trial.timeFor(remaining)) < float64(base.timeFor(remaining))
}

// window is what a replica measured while it wrote one window's bytes one
// way.
type window struct {
	bytes   int64         // received
	elapsed time.Duration // wall time, waits for input included
	// stall is the time the writer held the download up: it was writing
	// (page cache) or waiting for room to write (direct: a write to
	// complete; page cache: the writeback, see writebackAhead) while
	// chunks waited in its queue.
	stall time.Duration
	drain time.Duration // the wait, after the window, until its writes were on disk
}

// rate is how fast the window's bytes were taken in, in bytes per second.
func (w window) rate() float64 {
	if w.elapsed <= 0 {
		return 0
	}
	return float64(w.bytes) / w.elapsed.Seconds()
}

// timeFor is how long the way would take to write n bytes at the window's
// rate and drain them.
func (w window) timeFor(n int64) time.Duration {
	if w.bytes <= 0 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(float64(w.elapsed)*float64(n)/float64(w.bytes)) + w.drain
}

// writeBound reports whether the way of writing held the download up.
func (w window) writeBound() bool {
	return w.stall.Seconds() >= chooseStall*w.elapsed.Seconds()
}

func (w window) String() string {
	return fmt.Sprintf("%.0f MB/s, held up %.0f%% of %v, drain %v",
		w.rate()/1e6, 100*w.stall.Seconds()/max(w.elapsed.Seconds(), 1e-9), w.elapsed.Round(time.Millisecond), w.drain.Round(100*time.Microsecond))
}

// chooser is direct: auto's choice between page cache and direct writes
// for one replica. It is not safe for concurrent use.
type chooser struct {
	window  int64 // bytes in a measured window
	warmup  int64 // bytes written unmeasured after a change of way
	mode    writeMode
	trial   bool   // the current window tries mode against base
	base    window // the window of the other way that a trial is measured against
	other   window // the last measured window of the way not in use; zero before the first trial
	seen    int64  // bytes received
	retryAt int64  // no trial before seen reaches it, unless the way in use fell far behind other
	backoff int64  // added to retryAt after a trial
	behind  int    // windows in a row in which the way in use fell far behind other
}

// newChooser returns the choice of a replica that starts with first and
// receives chunks of buffers of bufSize bytes: its windows hold at least
// 16 chunks, and its warm-ups 8, so that a window measures the flow of
// chunks rather than one of them (buffered.yaml's 16 MiB chunks make
// 256 MiB windows, and a download of less than 1.5 GiB no trial).
func newChooser(first writeMode, bufSize int) *chooser {
	return &chooser{
		window:  max(chooseWindow, 16*int64(bufSize)),
		warmup:  max(chooseWarmup, 8*int64(bufSize)),
		mode:    first,
		backoff: chooseBackoff,
	}
}

// firstWay is the way direct: auto starts with, for chunks of buffers of
// bufSize bytes and direct writes of up to gather bytes: the page cache,
// unless a chunk fills a direct write on its own. Copying chunks that
// large into the page cache cost twice the time of writing them direct
// (buffered.yaml's 16 MiB: 588-845 against 1319-1470 MB/s in its trials on
// the test VM; 1390-1484 against 611-751 on the first VM).
func firstWay(bufSize int, gather int64) writeMode {
	if gather > 0 && int64(bufSize) >= gather {
		return writeDirect
	}
	return chooseFirst
}

// next takes the window that just ended, written in c.mode (with its
// drain measured when it was a trial), and remaining, the bytes still to
// write. It returns the way to write the next window, whether that window
// is a trial, and a sentence for the log when the way changes. When the
// way changes to start a trial, the caller drains the current way and
// reports how long that took with drained.
func (c *chooser) next(w window, remaining int64) (mode writeMode, trial bool, why string) {
	c.seen += w.bytes
	if c.trial {
		c.trial = false
		c.retryAt = c.seen + c.backoff
		won := trialWins(w, c.base, remaining)
		winner, loser := c.base.timeFor(remaining), w.timeFor(remaining)
		if won {
			winner, loser = loser, winner
		}
		c.backoff *= 2
		if float64(loser) > chooseFallen*float64(winner) {
			c.backoff *= 2 // a clear loss: the next trial can wait longer
		}
		if won {
			c.other = c.base
			return c.mode, false, fmt.Sprintf("writing %v: %v to write the remaining %d bytes (%v), against %v %v (%v)",
				c.mode, w.timeFor(remaining).Round(time.Millisecond), remaining, w, c.mode.other(), c.base.timeFor(remaining).Round(time.Millisecond), c.base)
		}
		c.other = w
		c.mode = c.mode.other()
		return c.mode, false, fmt.Sprintf("back to writing %v: %v to write the remaining %d bytes (%v), against %v %v (%v)",
			c.mode, c.base.timeFor(remaining).Round(time.Millisecond), remaining, c.base, c.mode.other(), w.timeFor(remaining).Round(time.Millisecond), w)
	}
	if c.other.bytes > 0 && w.writeBound() && float64(w.timeFor(remaining)) > chooseFallen*float64(c.other.timeFor(remaining)) {
		c.behind++
	} else {
		c.behind = 0
	}
	if !w.writeBound() || (c.seen < c.retryAt && c.behind < 2) || remaining < chooseTrialLeft*(c.warmup+c.window) {
		return c.mode, false, ""
	}
	c.behind = 0
	c.base, c.trial = w, true
	c.mode = c.mode.other()
	return c.mode, true, fmt.Sprintf("trying %v: %v held the download up (%v)", c.mode, c.mode.other(), w)
}

// drained records how long the way a trial is measured against took to
// drain when the trial began.
func (c *chooser) drained(d time.Duration) { c.base.drain = d }
