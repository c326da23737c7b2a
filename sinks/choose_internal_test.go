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

// TestChooserSteps walks direct: auto's choice through the cases it
// decides: it stays where the disk keeps up, tries the other way where it
// does not, keeps the one that would finish sooner (its drain counting
// more as the end nears), and waits longer after each trial. Each step is
// the window that ended, the bytes left, and the way and trial it must
// lead to; drained is the drain of the way a trial is measured against.
func TestChooserSteps(t *testing.T) {
	type step struct {
		w         window
		remaining int64
		drained   time.Duration
		mode      writeMode
		trial     bool
	}
	const fast, slow, ms, gib = 1500.0, 600.0, time.Millisecond, 1 << 30
	first, other := writeCached, writeDirect
	cases := []struct {
		name  string
		steps []step
	}{
		{"the first way keeps up: no trial, ever", []step{
			{w: win(fast, 0, 0), remaining: gib, mode: first},
			{w: win(fast, 0.09, 0), remaining: gib, mode: first},
			{w: win(slow, 0.05, 0), remaining: gib, mode: first}, // slow input, not the disk
		}},
		{"the first way held up, the other is faster: it stays", []step{
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true},
			{w: win(fast, 0, 20*ms), remaining: gib, mode: other},
			{w: win(fast, 0, 0), remaining: gib, mode: other},
		}},
		{"the other way is no faster: back to the first", []step{
			{w: win(fast, 0.9, 0), remaining: gib, drained: ms, mode: other, trial: true},
			{w: win(fast*1.04, 0, ms), remaining: gib, mode: first}, // within the margin
		}},
		{"near the end, the other way's drain outweighs its rate", []step{
			{w: win(slow, 0.5, 0), remaining: 128 << 20, drained: ms, mode: other, trial: true},
			// 32 MiB left: 28 ms + 40 ms against 56 ms + 1 ms
			{w: win(2*slow, 0, 40*ms), remaining: 32 << 20, mode: first},
		}},
		{"the way that won falls far behind the loser's measure: tried again before the backoff", []step{
			{w: win(fast, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true},   // 16; first measured at fast
			{w: win(2*fast, 0, 0), remaining: gib, mode: other},                             // 32: won (a burst); no retry before 96
			{w: win(fast/2, 0.9, 0), remaining: gib, mode: other},                           // 48: twice first's time, once
			{w: win(fast/2, 0.9, 0), remaining: gib, drained: ms, mode: first, trial: true}, // 64: twice in a row
		}},
		{"one window that is not behind resets the count", []step{
			{w: win(fast, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true},   // 16
			{w: win(2*fast, 0, 0), remaining: gib, mode: other},                             // 32
			{w: win(fast/2, 0.9, 0), remaining: gib, mode: other},                           // 48: behind
			{w: win(fast, 0.9, 0), remaining: gib, mode: other},                             // 64: held up, not behind
			{w: win(fast/2, 0.9, 0), remaining: gib, mode: other},                           // 80: behind, once
			{w: win(fast/2, 0.9, 0), remaining: gib, drained: ms, mode: first, trial: true}, // 96: the backoff is over anyway
		}},
		{"a clear loss waits four times as long", []step{
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true}, // seen 16
			{w: win(slow/2, 0, 0), remaining: gib, mode: first},                           // 32: lost by 2x; retry at 32+64, then +256
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 48
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 64
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 80
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true}, // 96: trial
			{w: win(slow/2, 0, 0), remaining: gib, mode: first},                           // 112: lost by 2x; retry at 112+256
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 128
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 144
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 160
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 176
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 192
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 208
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 224
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 240: a doubled backoff would try here
		}},
		{"no trial with less than four trials' bytes to come", []step{
			{w: win(slow, 0.5, 0), remaining: 4*(24<<20) - 1, mode: first},
			{w: win(slow, 0.5, 0), remaining: 16 << 20, mode: first},
		}},
		{"far from it, the rate outweighs the drain", []step{
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true},
			{w: win(2*slow, 0, 40*ms), remaining: gib, mode: other},
		}},
		{"the other way held up in turn: the first is tried again after the backoff", []step{
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true}, // 16 MiB seen
			{w: win(fast, 0, 0), remaining: gib, mode: other},                             // 32: won; no trial before 32+64
			{w: win(fast, 0.5, 0), remaining: gib, mode: other},                           // 48
			{w: win(fast, 0.5, 0), remaining: gib, mode: other},                           // 64
			{w: win(fast, 0.5, 0), remaining: gib, mode: other},                           // 80
			{w: win(fast, 0, 0), remaining: gib, mode: other},                             // 96, but it kept up
			{w: win(fast, 0.5, 0), remaining: gib, drained: ms, mode: first, trial: true}, // 112
		}},
		{"backoff doubles after each trial", []step{
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true}, // seen 16
			{w: win(slow/1.2, 0, 0), remaining: gib, mode: first},                         // 32: lost; retry at 32+64
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 48
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 64
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 80
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true}, // 96: trial
			{w: win(slow/1.2, 0, 0), remaining: gib, mode: first},                         // 112: lost; retry at 112+128
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 128
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 144
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 160
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 176
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 192
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 208
			{w: win(slow, 0.5, 0), remaining: gib, mode: first},                           // 224
			{w: win(slow, 0.5, 0), remaining: gib, drained: ms, mode: other, trial: true}, // 240: trial
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChooser(first, 256<<10)
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
