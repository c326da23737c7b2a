package sinks

import (
	"fmt"
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
// of chooseWindow bytes, and changes only when the one it uses holds the
// download up: when the writer waited for the disk chooseStall of a
// window's time, or the bytes written and not yet on disk grew by
// chooseGrowth of the window's bytes (the page cache absorbs what the disk
// does not take, up to writebackAhead, before the writer has to wait).
//
// Which way wins depends on the disk, the VM and the file system: direct
// writes cost no copy and leave no writeback to the final fsync, but each
// waits for the disk; page cache writes return at once, but the kernel's
// writeback must keep up, and the copy takes CPU from the network on a
// small VM. Measured on two VMs, each beat the other on one of them. So a
// window that finds the current way holding the download up is followed
// by a trial of the other way: the previous way's writes are drained, the
// first chooseWarmup bytes fill the new way's pipeline unmeasured, and
// then a window is measured. The trial way stays when it made bytes
// durable faster than the window before it, by chooseMargin; otherwise the
// writer goes back. Rates, not stalls, decide: a way that keeps the disk
// up but slows the network with its CPU has a low rate too. The way that
// lost is not tried again before chooseBackoff more bytes, twice that
// after it loses again, and so on: a disk that is slow both ways costs a
// few trials, not one per window.
//
// Direct comes first: when it keeps up, it costs the least CPU and leaves
// the least to the final fsync.
//
// Variables only so that tests can make the windows small.
var (
	chooseWindow  int64 = 16 << 20
	chooseWarmup  int64 = 8 << 20
	chooseStall         = 0.10
	chooseGrowth        = 0.25
	chooseMargin        = 1.05
	chooseBackoff int64 = 64 << 20
)

// trialWins decides a trial: the way tried made bytes durable faster than
// the way it was tried against, by chooseMargin. A variable so that tests
// can decide otherwise.
var trialWins = func(trial, base window) bool {
	return trial.rate() > chooseMargin*base.rate()
}

// window is what a replica measured while it wrote one window's bytes one
// way.
type window struct {
	bytes   int64         // received
	elapsed time.Duration // wall time, waits for input included
	// stall is the time the writer held the download up, waiting for
	// room for the next write (direct: a write to complete; page cache:
	// the writeback, see writebackAhead).
	stall time.Duration
	grew  int64 // how much the bytes written and not yet on disk grew
}

// rate is how fast the window's bytes reached the disk, in bytes per
// second.
func (w window) rate() float64 {
	if w.elapsed <= 0 {
		return 0
	}
	return float64(w.bytes-w.grew) / w.elapsed.Seconds()
}

// writeBound reports whether the way of writing held the download up.
func (w window) writeBound() bool {
	return w.stall.Seconds() >= chooseStall*w.elapsed.Seconds() || float64(w.grew) >= chooseGrowth*float64(w.bytes)
}

func (w window) String() string {
	return fmt.Sprintf("%.0f MB/s to disk, waited for it %.0f%% of %v, backlog %+d bytes",
		w.rate()/1e6, 100*w.stall.Seconds()/max(w.elapsed.Seconds(), 1e-9), w.elapsed.Round(time.Millisecond), w.grew)
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

// next takes the window that just ended, written in c.mode, and returns
// the way to write the next one, whether that window is a trial, and a
// sentence for the log when the way changes.
func (c *chooser) next(w window) (mode writeMode, trial bool, why string) {
	c.seen += w.bytes
	if c.trial {
		c.trial = false
		won := trialWins(w, c.base)
		c.retryAt = c.seen + c.backoff
		c.backoff *= 2
		if won {
			return c.mode, false, fmt.Sprintf("writing %v: it was faster (%v) than %v (%v)", c.mode, w, c.mode.other(), c.base)
		}
		c.mode = c.mode.other()
		return c.mode, false, fmt.Sprintf("back to writing %v (%v): %v was no faster (%v)", c.mode, c.base, c.mode.other(), w)
	}
	if !w.writeBound() || c.seen < c.retryAt {
		return c.mode, false, ""
	}
	c.base, c.trial = w, true
	c.mode = c.mode.other()
	return c.mode, true, fmt.Sprintf("trying %v: %v held the download up (%v)", c.mode, c.mode.other(), w)
}
