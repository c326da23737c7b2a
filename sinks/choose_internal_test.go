package sinks

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// win is a window of 16 MiB taken in at rate MB/s, of which the writer
// held the download up the share stall, and which took drain to drain.
func win(rate float64, stall float64, drain time.Duration) window {
	elapsed := time.Duration(float64(16<<20) / (rate * 1e6) * float64(time.Second))
	return window{bytes: 16 << 20, elapsed: elapsed, stall: time.Duration(stall * float64(elapsed)), drain: drain}
}

// chooserStep is a window that ended, the bytes left, and the way and
// trial a chooser must lead to; drained is the drain of the way a trial is
// measured against.
type chooserStep struct {
	w         window
	remaining int64
	drained   time.Duration
	mode      writeMode
	trial     bool
}

// The rates (MB/s) and sizes of chooserStepsCases.
const fastRate, slowRate, ms, gib = 1500.0, 600.0, time.Millisecond, 1 << 30

// startWay is the way a chooser starts with, trialWay the one it tries.
var startWay, trialWay = writeCached, writeDirect

// chooserStepsCases are the cases of TestChooserSteps.
var chooserStepsCases = []struct {
	name  string
	steps []chooserStep
}{
	{"the first way keeps up: no trial, ever", []chooserStep{
		{w: win(fastRate, 0, 0), remaining: gib, mode: startWay},
		{w: win(fastRate, 0.09, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.05, 0), remaining: gib, mode: startWay},
	}},
	{"the first way held up, the other is faster: it stays", []chooserStep{
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true},
		{w: win(fastRate, 0, 20*ms), remaining: gib, mode: trialWay},
		{w: win(fastRate, 0, 0), remaining: gib, mode: trialWay},
	}},
	{"the other way is no faster: back to the first", []chooserStep{
		{w: win(fastRate, 0.9, 0), remaining: gib, drained: ms, mode: trialWay, trial: true},
		{w: win(fastRate*1.04, 0, ms), remaining: gib, mode: startWay},
	}},
	{"near the end, the other way's drain outweighs its rate", []chooserStep{
		{w: win(slowRate, 0.5, 0), remaining: 128 << 20, drained: ms, mode: trialWay, trial: true},
		// 32 MiB left: 28 ms + 40 ms against 56 ms + 1 ms
		{w: win(2*slowRate, 0, 40*ms), remaining: 32 << 20, mode: startWay},
	}},
	{"the way that won falls far behind the loser's measure: tried again before the backoff", []chooserStep{
		{w: win(fastRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // 16; first measured at fast
		{w: win(2*fastRate, 0, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate/2, 0.9, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate/2, 0.9, 0), remaining: gib, drained: ms, mode: startWay, trial: true}, // 64: twice in a row
	}},
	{"one window that is not behind resets the count", []chooserStep{
		{w: win(fastRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // 16
		{w: win(2*fastRate, 0, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate/2, 0.9, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate, 0.9, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate/2, 0.9, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate/2, 0.9, 0), remaining: gib, drained: ms, mode: startWay, trial: true}, // 96: the backoff is over anyway
	}},
	{"a clear loss waits four times as long", []chooserStep{
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // seen 16
		{w: win(slowRate/2, 0, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // 96: trial
		{w: win(slowRate/2, 0, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
	}},
	{"no trial with less than four trials' bytes to come", []chooserStep{
		{w: win(slowRate, 0.5, 0), remaining: 4*(24<<20) - 1, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: 16 << 20, mode: startWay},
	}},
	{"far from it, the rate outweighs the drain", []chooserStep{
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true},
		{w: win(2*slowRate, 0, 40*ms), remaining: gib, mode: trialWay},
	}},
	{"the other way held up in turn: the first is tried again after the backoff", []chooserStep{
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // 16 MiB seen
		{w: win(fastRate, 0, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate, 0.5, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate, 0.5, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate, 0.5, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate, 0, 0), remaining: gib, mode: trialWay},
		{w: win(fastRate, 0.5, 0), remaining: gib, drained: ms, mode: startWay, trial: true}, // 112
	}},
	{"backoff doubles after each trial", []chooserStep{
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // seen 16
		{w: win(slowRate/1.2, 0, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // 96: trial
		{w: win(slowRate/1.2, 0, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, mode: startWay},
		{w: win(slowRate, 0.5, 0), remaining: gib, drained: ms, mode: trialWay, trial: true}, // 240: trial
	}},
}

// TestChooserSteps walks direct: auto's choice through the cases it
// decides: it stays where the disk keeps up, tries the other way where it
// does not, keeps the one that would finish sooner (its drain counting
// more as the end nears), and waits longer after each trial. Each step is
// the window that ended, the bytes left, and the way and trial it must
// lead to; drained is the drain of the way a trial is measured against.
func TestChooserSteps(t *testing.T) {
	for _, tc := range chooserStepsCases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChooser(startWay, 256<<10)
			for i, s := range tc.steps {
				mode, trial, why := c.next(s.w, s.remaining)
				if mode != s.mode || trial != s.trial {
					t.Fatalf("step %d (%v): %v, trial %v (%q); want %v, trial %v", i, s.w, mode, trial, why, s.mode, s.trial)
				}
				if trial {
					c.drained(s.drained)
				}
			}
		})
	}
}

// TestWindowTimeFor: a way's time for n bytes is n at the rate it took its
// window in, plus its drain.
func TestWindowTimeFor(t *testing.T) {
	for _, tc := range []struct {
		w     window
		n     int64
		want  time.Duration
		bound bool
	}{
		{window{bytes: 100e6, elapsed: time.Second}, 50e6, 500 * time.Millisecond, false},
		{window{bytes: 100e6, elapsed: time.Second, drain: 30 * time.Millisecond}, 200e6, 2030 * time.Millisecond, false},
		{window{bytes: 100e6, elapsed: time.Second, drain: 30 * time.Millisecond}, 0, 30 * time.Millisecond, false},
		{window{bytes: 100e6, elapsed: time.Second, stall: 100 * time.Millisecond}, 100e6, time.Second, true},
		{window{bytes: 100e6, elapsed: time.Second, stall: 99 * time.Millisecond}, 100e6, time.Second, false},
		{window{}, 1, time.Duration(math.MaxInt64), true},
	} {
		if got := tc.w.timeFor(tc.n); got != tc.want || tc.w.writeBound() != tc.bound {
			t.Errorf("%+v: time for %d bytes %v, held up %v; want %v, %v", tc.w, tc.n, got, tc.w.writeBound(), tc.want, tc.bound)
		}
	}
}

// TestWroteOutOfOrder: in sequential mode, writes in flight complete in
// any order, but the sink's record of what PATH.tmp holds (have, which
// the state saves, and next, where Finish cuts the file after a failure)
// only ever grows as a prefix: a write that completes beyond one still in
// flight waits until the gap is filled. Without that, a failure of the
// earlier write would leave a state that claims bytes after a hole, and a
// PATH.tmp cut after it.
func TestWroteOutOfOrder(t *testing.T) {
	s := &FileSink{}
	s.have.Add(pipeline.Range{Start: 0, End: 100}) // resumed
	s.next = 100
	steps := []struct {
		off, n int64
		next   int64
	}{
		{300, 100, 100}, // [300,400) completes first
		{200, 100, 100}, // then [200,300)
		{500, 50, 100},
		{100, 100, 400}, // the gap closes: [100,400) joins the prefix
		{400, 100, 550}, // and [500,550) with it
		{550, 0, 550},   // a zero-length write changes nothing
	}
	for i, st := range steps {
		s.wrote(st.off, st.n)
		want := []pipeline.Range{{Start: 0, End: st.next}}
		if got := s.have.Ranges(); s.next != st.next || !slices.Equal(got, want) {
			t.Fatalf("after write %d [%d,%d): next %d, have %v; want %d, %v", i, st.off, st.off+st.n, s.next, got, st.next, want)
		}
	}
	if len(s.ahead) != 0 || s.written.Load() != 450 {
		t.Fatalf("ahead %v, written %d; want none, 450", s.ahead, s.written.Load())
	}

	p := &FileSink{positional: true}
	p.wrote(300, 100)
	p.wrote(0, 100)
	if got, want := p.have.Ranges(), []pipeline.Range{{Start: 0, End: 100}, {Start: 300, End: 400}}; !slices.Equal(got, want) {
		t.Fatalf("positional have %v, want %v", got, want)
	}
}
