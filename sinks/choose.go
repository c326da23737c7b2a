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
// The way that lost is not tried again before chooseBackoff more bytes,
// twice that after it loses again, and so on: a trial costs a drain and a
// window at the other way's speed, so a disk that is slow both ways costs
// a few, not one per window. Direct comes first: when it keeps up, it
// costs the least CPU and leaves the least to the final fsync.
//
// Variables only so that tests can make the windows small.
var (
	chooseWindow  int64 = 16 << 20
	chooseWarmup  int64 = 8 << 20
	chooseStall         = 0.10
	chooseMargin        = 1.05
	chooseBackoff int64 = 64 << 20
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
	mode    writeMode
	trial   bool   // the current window tries mode against base
	base    window // the window of the other way that a trial is measured against
	seen    int64  // bytes received
	retryAt int64  // no trial before seen reaches it
	backoff int64  // added to retryAt after a trial
}

func newChooser() *chooser {
	return &chooser{mode: writeDirect, backoff: chooseBackoff}
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
		c.backoff *= 2
		if trialWins(w, c.base, remaining) {
			return c.mode, false, fmt.Sprintf("writing %v: %v to write the remaining %d bytes (%v), against %v %v (%v)",
				c.mode, w.timeFor(remaining).Round(time.Millisecond), remaining, w, c.mode.other(), c.base.timeFor(remaining).Round(time.Millisecond), c.base)
		}
		c.mode = c.mode.other()
		return c.mode, false, fmt.Sprintf("back to writing %v: %v to write the remaining %d bytes (%v), against %v %v (%v)",
			c.mode, c.base.timeFor(remaining).Round(time.Millisecond), remaining, c.base, c.mode.other(), w.timeFor(remaining).Round(time.Millisecond), w)
	}
	if !w.writeBound() || c.seen < c.retryAt {
		return c.mode, false, ""
	}
	c.base, c.trial = w, true
	c.mode = c.mode.other()
	return c.mode, true, fmt.Sprintf("trying %v: %v held the download up (%v)", c.mode, c.mode.other(), w)
}

// drained records how long the way a trial is measured against took to
// drain when the trial began.
func (c *chooser) drained(d time.Duration) { c.base.drain = d }
