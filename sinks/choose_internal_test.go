package sinks

import (
	"slices"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// win is a window of 16 MiB written at rate MB/s, of which the writer
// waited for the disk the share stall, and whose backlog grew by grew.
func win(rate float64, stall float64, grew int64) window {
	elapsed := time.Duration(float64(16<<20-grew) / (rate * 1e6) * float64(time.Second))
	return window{bytes: 16 << 20, elapsed: elapsed, stall: time.Duration(stall * float64(elapsed)), grew: grew}
}

// TestChooserSteps walks direct: auto's choice through the cases it
// decides: it stays where the disk keeps up, tries the other way where it
// does not, keeps the faster one, and waits longer after each trial.
// Each step is the window that ended and the way and trial it must lead
// to.
func TestChooserSteps(t *testing.T) {
	type step struct {
		w     window
		mode  writeMode
		trial bool
	}
	fast, slow := 1500.0, 600.0
	cases := []struct {
		name  string
		steps []step
	}{
		{"direct keeps up: no trial, ever", []step{
			{win(fast, 0, 0), writeDirect, false},
			{win(fast, 0.05, 1<<20), writeDirect, false},
			{win(slow, 0.09, 0), writeDirect, false}, // slow input, not the disk
		}},
		{"direct held up, the page cache is faster: it stays", []step{
			{win(slow, 0.5, 0), writeCached, true},
			{win(fast, 0, 2<<20), writeCached, false},
			{win(fast, 0, 0), writeCached, false},
		}},
		{"the page cache is no faster: back to direct", []step{
			{win(fast, 0.9, 0), writeCached, true},
			{win(fast*1.04, 0, 0), writeDirect, false}, // within the margin
		}},
		{"the page cache falls behind: its backlog grows, direct is tried", []step{
			{win(slow, 0.5, 0), writeCached, true},    // 16 MiB seen
			{win(fast, 0, 0), writeCached, false},     // 32: won; no trial before 32+64
			{win(fast, 0, 5<<20), writeCached, false}, // 48
			{win(fast, 0, 5<<20), writeCached, false}, // 64
			{win(fast, 0, 5<<20), writeCached, false}, // 80
			{win(fast, 0, 3<<20), writeCached, false}, // 96, but it kept up
			{win(fast, 0, 5<<20), writeDirect, true},  // 112
		}},
		{"backoff doubles after each trial", []step{
			{win(slow, 0.5, 0), writeCached, true},  // seen 16
			{win(slow, 0, 0), writeDirect, false},   // 32: lost; retry at 32+64
			{win(slow, 0.5, 0), writeDirect, false}, // 48
			{win(slow, 0.5, 0), writeDirect, false}, // 64
			{win(slow, 0.5, 0), writeDirect, false}, // 80
			{win(slow, 0.5, 0), writeCached, true},  // 96: trial
			{win(slow, 0, 0), writeDirect, false},   // 112: lost; retry at 112+128
			{win(slow, 0.5, 0), writeDirect, false}, // 128
			{win(slow, 0.5, 0), writeDirect, false}, // 144 ... 224
			{win(slow, 0.5, 0), writeDirect, false}, // 160
			{win(slow, 0.5, 0), writeDirect, false}, // 176
			{win(slow, 0.5, 0), writeDirect, false}, // 192
			{win(slow, 0.5, 0), writeDirect, false}, // 208
			{win(slow, 0.5, 0), writeDirect, false}, // 224
			{win(slow, 0.5, 0), writeCached, true},  // 240: trial
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChooser()
			if c.mode != writeDirect {
				t.Fatalf("starts with %v, want direct", c.mode)
			}
			for i, s := range tc.steps {
				mode, trial, why := c.next(s.w)
				if mode != s.mode || trial != s.trial {
					t.Fatalf("step %d (%v): %v, trial %v (%q); want %v, trial %v", i, s.w, mode, trial, why, s.mode, s.trial)
				}
			}
		})
	}
}

// TestWindowRate: a window's rate counts the bytes that reached the disk:
// those received less the growth of the backlog, or more when it shrank.
func TestWindowRate(t *testing.T) {
	for _, tc := range []struct {
		w     window
		rate  float64
		bound bool
	}{
		{window{bytes: 100e6, elapsed: time.Second}, 100e6, false},
		{window{bytes: 100e6, elapsed: time.Second, grew: 30e6}, 70e6, true},
		{window{bytes: 100e6, elapsed: time.Second, grew: -20e6}, 120e6, false},
		{window{bytes: 100e6, elapsed: time.Second, stall: 100 * time.Millisecond}, 100e6, true},
		{window{bytes: 100e6, elapsed: time.Second, stall: 99 * time.Millisecond}, 100e6, false},
		{window{bytes: 100e6}, 0, true},
	} {
		if got := tc.w.rate(); got != tc.rate || tc.w.writeBound() != tc.bound {
			t.Errorf("%+v: rate %v, write-bound %v; want %v, %v", tc.w, got, tc.w.writeBound(), tc.rate, tc.bound)
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
