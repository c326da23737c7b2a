package stages

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// The scheduler's policy driven by hand with a fake clock: every call that
// needs the time is given it, so nothing here sleeps or back-dates a field.

// t0 is the fake clock's start.
var t0 = time.Unix(1_000_000, 0)

const mib = 1 << 20

// newTestScheduler is a scheduler of steal_min 1 MiB, with several
// sources when multi.
func newTestScheduler(multi bool) *scheduler {
	s := newScheduler(1 << 20)
	s.multi = multi
	return s
}

// reading registers a span [start, end) of source src whose request was
// sent at t0 and answered (a 206) ttfb later, and returns its reader and a
// function that returns the cause its request was cancelled with.
func reading(s *scheduler, src int, start, end int64, ttfb time.Duration) (*spanReader, func() error) {
	r := s.begin(src, start, end, t0)
	var cause error
	s.request(r, func(err error) { cause = err }, t0)
	if ttfb >= 0 {
		s.answer(r, ttfb, t0.Add(ttfb))
	}
	return r, func() error { return cause }
}

// policyWant is what a case of TestPolicyNext expects of an action.
type policyWant struct {
	kind       actionKind
	how        int
	start, end int64
	input      bool
	poll       bool
	share      float64
}

// policyCases: a scheduler set up by hand, a replica's query at t0+at, and
// the action it must get.
var policyCases = []struct {
	name  string
	multi bool
	setup func(s *scheduler)
	q     query
	at    time.Duration // after t0
	want  policyWant
}{
	{name: "off: takes one range at a time", setup: func(s *scheduler) { s.off = true },
		want: policyWant{kind: actTake, share: 1}},
	{name: "off: an empty input is waited for alone", setup: func(s *scheduler) { s.off = true },
		q: query{empty: true}, want: policyWant{kind: actWait, input: true, share: 1}},
	{name: "off: a closed input stops", setup: func(s *scheduler) { s.off = true },
		q: query{closed: true}, want: policyWant{kind: actStop}},
	{name: "a range carried is fetched", setup: func(s *scheduler) { reading(s, 0, 0, 64*mib, 0) },
		q: query{carry: true}, want: policyWant{kind: actTake}},
	{name: "a dropped source moves, carry or not", multi: true, setup: func(s *scheduler) { s.drop(1) },
		q: query{src: 1, carry: true}, want: policyWant{kind: actMove}},
	{name: "with the input open, takes from it first", setup: func(s *scheduler) { reading(s, 0, 0, 64*mib, 0) },
		want: policyWant{kind: actTake, share: 1}},
	{name: "empty input: halves the span that takes longest", setup: func(s *scheduler) {
		reading(s, 0, 0, 8*mib, 0)
		reading(s, 0, 8*mib, 72*mib, 0)
	}, q: query{empty: true}, want: policyWant{kind: actSteal, how: stealHalve, start: 40 * mib, end: 72 * mib}},
	{name: "empty input: a span not answered yet is not split", setup: func(s *scheduler) { reading(s, 0, 0, 64*mib, -1) },
		q: query{empty: true}, want: policyWant{kind: actWait, input: true, poll: true, share: 1}},
	{name: "empty input: half of what is left would not pay the time to a first byte", setup: func(s *scheduler) {
		s.sample(0, 64*mib, time.Second)
		reading(s, 0, 0, 8*mib, 100*time.Millisecond) // 0.125s to go at 64 MiB/s
	}, q: query{empty: true}, want: policyWant{kind: actWait, input: true, poll: true, share: 1}},
	{name: "closed input, a span left: waits for it", setup: func(s *scheduler) { reading(s, 0, 0, 1*mib, 0) },
		q: query{closed: true}, want: policyWant{kind: actWait, poll: true, share: 1}},
	{name: "closed input, nothing left: stops", q: query{closed: true}, want: policyWant{kind: actStop}},
	{name: "a slow reader is not judged before it ran long enough", setup: slowReader,
		q: query{empty: true}, at: 50 * time.Millisecond, want: policyWant{kind: actWait, input: true, poll: true, share: 1}},
	{name: "a slow reader is replaced once judged", setup: slowReader,
		q: query{empty: true}, at: time.Second, want: policyWant{kind: actSteal, how: stealReplace, start: 4096, end: 1 * mib}},
	{name: "after a late wake-up no reader is judged", setup: func(s *scheduler) {
		slowReader(s)
		s.woke(t0.Add(time.Second), t0.Add(1100*time.Millisecond)) // 90ms late
	}, q: query{empty: true}, at: 1200 * time.Millisecond, want: policyWant{kind: actWait, input: true, poll: true, share: 1}},
	{name: "a slow tail too short to halve is raced", setup: func(s *scheduler) {
		// Typical 8 MiB/s; the reader goes at 3 MiB/s, not slow enough
		// to replace, with 1.5 MiB left: 0.5s, where a fresh
		// connection takes 0.19s.
		s.sample(0, 8*mib, time.Second)
		r, _ := reading(s, 0, 0, 1*mib+512<<10, time.Millisecond)
		r.received(3 * mib)
	}, q: query{empty: true}, at: time.Second, want: policyWant{kind: actSteal, how: stealRace, start: 0, end: 1*mib + 512<<10}},
	{name: "several sources: an orphan is adopted before the input", multi: true, setup: func(s *scheduler) {
		s.orphanRange(8*mib, 12*mib)
	}, want: policyWant{kind: actSteal, how: stealAdopt, start: 8 * mib, end: 12 * mib}},
	{name: "several sources: a source far too slow waits while others work", multi: true, setup: func(s *scheduler) {
		s.sample(0, 40*mib, time.Second)
		s.sample(1, 8*mib, time.Second)
		reading(s, 0, 0, 64*mib, 0)
		s.orphanRange(100*mib, 104*mib)
	}, q: query{src: 1}, want: policyWant{kind: actWait, poll: true}},
	{name: "several sources: a source far too slow stops once nothing is left", multi: true, setup: func(s *scheduler) {
		s.sample(0, 40*mib, time.Second)
		s.sample(1, 8*mib, time.Second)
	}, q: query{src: 1, closed: true}, want: policyWant{kind: actStop}},
	{name: "several sources: a source far too slow takes from the input when nobody works", multi: true, setup: func(s *scheduler) {
		s.sample(0, 40*mib, time.Second)
		s.sample(1, 8*mib, time.Second)
	}, q: query{src: 1}, want: policyWant{kind: actTake, share: 0.2}},
	{name: "several sources: an unmeasured mirror probes the tail of a span", multi: true, setup: func(s *scheduler) {
		reading(s, 0, 0, 32*mib, 50*time.Millisecond)
	}, q: query{src: 1}, want: policyWant{kind: actSteal, how: stealHalve, start: 32*mib - mirrorProbe, end: 32 * mib}},
	{name: "several sources: an unmeasured mirror probes no more than a probe of a span that ends unaligned", multi: true, setup: func(s *scheduler) {
		reading(s, 0, 0, 12*mib+513, 50*time.Millisecond) // the file's end
	}, q: query{src: 1}, want: policyWant{kind: actSteal, how: stealHalve, start: 12*mib - mirrorProbe + pieceAlign, end: 12*mib + 513}},
	{name: "several sources: an unmeasured mirror adopts no more than a probe of an orphan that starts unaligned", multi: true, setup: func(s *scheduler) {
		s.orphanRange(8*mib+100, 12*mib) // a dropped reader stopped at 8MiB+100
	}, q: query{src: 1}, want: policyWant{kind: actSteal, how: stealAdopt, start: 8*mib + 100, end: 8*mib + mirrorProbe}},
	{name: "several sources: an unmeasured mirror takes one range", multi: true,
		q: query{src: 1}, want: policyWant{kind: actTake, share: 0}},
	{name: "several sources: an unmeasured primary takes its whole share", multi: true,
		q: query{src: 0}, want: policyWant{kind: actTake, share: 1}},
	{name: "several sources: a measured mirror takes its part by speed", multi: true, setup: func(s *scheduler) {
		s.sample(0, 10*mib, time.Second)
		s.sample(1, 4*mib, time.Second)
	}, q: query{src: 1}, want: policyWant{kind: actTake, share: 0.4}},
	{name: "several sources: a silent request is not taken over before silentMin", multi: true, setup: func(s *scheduler) { silentMirror(s) },
		q: query{src: 0, empty: true}, at: time.Second, want: policyWant{kind: actWait, input: true, poll: true, share: 1}},
	{name: "several sources: a silent request is taken over by a source that answered", multi: true, setup: func(s *scheduler) { silentMirror(s) },
		q: query{src: 0, empty: true}, at: 3 * time.Second, want: policyWant{kind: actSteal, how: stealReplace, start: 0, end: 4 * mib}},
	{name: "several sources: an unmeasured mirror does not probe a silent request before the silent wait", multi: true, setup: silentPrimary,
		q: query{src: 1, empty: true}, at: time.Second, want: policyWant{kind: actWait, input: true, poll: true, share: 0}},
	{name: "several sources: an unmeasured mirror that never answered probes the head of a silent request", multi: true, setup: silentPrimary,
		q: query{src: 1, empty: true}, at: 3 * time.Second, want: policyWant{kind: actSteal, how: stealRace, start: 0, end: mirrorProbe}},
	{name: "several sources: an unmeasured mirror probes a silent request before it takes from the input", multi: true, setup: silentPrimary,
		q: query{src: 1}, at: 3 * time.Second, want: policyWant{kind: actSteal, how: stealRace, start: 0, end: mirrorProbe}},
	{name: "several sources: an unmeasured mirror probes the head of an answer that delivers nothing", multi: true, setup: func(s *scheduler) {
		s.sample(0, 10*mib, time.Second)
		reading(s, 0, 8*mib, 16*mib, 10*time.Millisecond)
	}, q: query{src: 1, empty: true}, at: 3 * time.Second, want: policyWant{kind: actSteal, how: stealRace, start: 8 * mib, end: 8*mib + mirrorProbe}},
	{name: "several sources: an unmeasured mirror races the whole of a stalled span no longer than a probe", multi: true, setup: func(s *scheduler) {
		s.sample(0, 10*mib, time.Second)
		reading(s, 0, 8*mib, 8*mib+256<<10, -1)
	}, q: query{src: 1, empty: true}, at: 3 * time.Second, want: policyWant{kind: actSteal, how: stealRace, start: 8 * mib, end: 8*mib + 256<<10}},
	{name: "several sources: a source far too slow takes over a silent request", multi: true, setup: func(s *scheduler) {
		s.sample(0, 40*mib, time.Second)
		s.sample(1, 8*mib, time.Second)
		done, _ := reading(s, 1, 8*mib, 8*mib+64<<10, 10*time.Millisecond) // source 1 answers
		s.claim(done, 8*mib, 64<<10)
		s.leave(done)
		reading(s, 0, 0, 4*mib, -1)
	}, q: query{src: 1}, at: 3 * time.Second, want: policyWant{kind: actSteal, how: stealReplace, start: 0, end: 4 * mib}},
}

func TestPolicyNext(t *testing.T) {
	for _, tt := range policyCases {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestScheduler(tt.multi)
			if tt.setup != nil {
				tt.setup(s)
			}
			a := s.next(tt.q, t0.Add(tt.at))
			got := policyWant{kind: a.kind, how: a.how, start: a.start, end: a.end, input: a.input, poll: a.poll, share: a.share}
			if got != tt.want {
				t.Fatalf("next = %+v, want %+v", got, tt.want)
			}
			if a.kind == actSteal && (a.sr == nil || !a.ok || a.sr.src != tt.q.src) {
				t.Fatalf("steal of reader %+v ok %v, want one of source %d", a.sr, a.ok, tt.q.src)
			}
			if a.kind == actWait && a.poll && a.changed == nil {
				t.Fatal("a wait for the others has no channel to wake on")
			}
		})
	}
}

// slowReader: typical 64 MiB/s, a reader of 1 MiB (too short to halve)
// that read 4 KiB since t0.
func slowReader(s *scheduler) {
	s.sample(0, 64*mib, time.Second)
	r, _ := reading(s, 0, 0, 1*mib, time.Millisecond)
	r.received(4096)
	s.claim(r, 0, 4096)
}

// silentPrimary: the primary measured, and its request for [0, 4MiB)
// sent at t0 has no answer; source 1, a mirror, was never asked.
func silentPrimary(s *scheduler) {
	s.sample(0, 10*mib, time.Second)
	reading(s, 0, 0, 4*mib, -1)
}

// silentMirror: both sources measured, source 0 answered in 10ms, and a
// request to source 1 for [0, 4MiB) sent at t0 has no answer.
func silentMirror(s *scheduler) (*spanReader, func() error) {
	s.sample(0, 10*mib, time.Second)
	s.sample(1, 10*mib, time.Second)
	done, _ := reading(s, 0, 8*mib, 8*mib+64<<10, 10*time.Millisecond)
	s.claim(done, 8*mib, 64<<10)
	s.leave(done)
	return reading(s, 1, 0, 4*mib, -1)
}

// TestPolicyReplaceCancels: the reader a steal replaces is cancelled with
// errReplaced, a silent one with errSilent, and the replaced reader has
// nothing left to do.
func TestPolicyReplaceCancels(t *testing.T) {
	for _, tt := range []struct {
		name  string
		multi bool
		src   int
		at    time.Duration
		want  error
		setup func(s *scheduler) (*spanReader, func() error)
	}{
		{"slow", false, 0, time.Second, errReplaced, func(s *scheduler) (*spanReader, func() error) {
			s.sample(0, 64*mib, time.Second)
			r, cause := reading(s, 0, 0, 1*mib, time.Millisecond)
			r.received(4096)
			return r, cause
		}},
		{"silent", true, 0, 3 * time.Second, errSilent, func(s *scheduler) (*spanReader, func() error) {
			s.sample(0, 10*mib, time.Second)
			s.sample(1, 10*mib, time.Second)
			return silentMirror(s)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestScheduler(tt.multi)
			victim, cause := tt.setup(s)
			a := s.next(query{src: tt.src, empty: true}, t0.Add(tt.at))
			if a.kind != actSteal || a.how != stealReplace {
				t.Fatalf("next = %+v, want a replacement", a)
			}
			if !errors.Is(cause(), tt.want) {
				t.Fatalf("victim cancelled with %v, want %v", cause(), tt.want)
			}
			if _, _, ok := s.remaining(victim); ok {
				t.Fatal("the replaced reader still has work")
			}
			if st := s.stats(); st.Replaced != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestPolicySplitsBySourceSpeed: with several sources, an idle replica
// splits a slower source's span where both end together, not in the
// middle; with one source, in the middle.
func TestPolicySplitsBySourceSpeed(t *testing.T) {
	for _, tt := range []struct {
		multi bool
		want  int64
	}{{false, 32 * mib}, {true, 16 * mib}} {
		t.Run(fmt.Sprint("multi=", tt.multi), func(t *testing.T) {
			s := newTestScheduler(tt.multi)
			// Source 1 goes at 4 MiB/s per connection, source 0 at 12.
			s.sample(1, 4*mib, time.Second)
			s.sample(0, 12*mib, time.Second)
			victim, _ := reading(s, 1, 0, 64*mib, 0)
			victim.received(4 * mib)
			a := s.next(query{src: 0, empty: true}, t0.Add(time.Second))
			if a.kind != actSteal || a.how != stealHalve || a.start != tt.want || a.end != 64*mib || a.sr.src != 0 {
				t.Fatalf("next = %+v, want [%d,%d) halved for source 0", a, tt.want, 64*mib)
			}
			if _, vend, _ := s.remaining(victim); vend != tt.want {
				t.Fatalf("victim ends at %d, want %d", vend, tt.want)
			}
		})
	}
}

// TestPolicyAdoptsOrphans: a span whose reader's source was dropped, and a
// range taken but not fetched, stay registered (busy) until an idle
// replica adopts them, before any halving, and wake the idle replicas.
func TestPolicyAdoptsOrphans(t *testing.T) {
	s := newTestScheduler(true)
	s.sample(1, 4*mib, time.Second)
	r, _ := reading(s, 1, 8*mib, 16*mib, 0)
	s.claim(r, 8*mib, 1*mib)
	_, changed := s.busy()
	s.orphan(r)
	select {
	case <-changed:
	default:
		t.Fatal("orphan did not wake the idle replicas")
	}
	s.orphanRange(32*mib, 36*mib)
	var got []pipeline.Range
	for range 2 {
		a := s.next(query{src: 0, empty: true}, t0)
		if a.kind != actSteal || a.how != stealAdopt || a.sr.src != 0 || !a.ok {
			t.Fatalf("next = %+v, want an adoption by source 0", a)
		}
		got = append(got, pipeline.Range{Start: a.start, End: a.end})
		s.claim(a.sr, a.start, int(a.end-a.start))
		s.leave(a.sr)
	}
	if fmt.Sprint(got) != fmt.Sprint([]pipeline.Range{{Start: 9 * mib, End: 16 * mib}, {Start: 32 * mib, End: 36 * mib}}) {
		t.Fatalf("adopted %v, the lowest first", got)
	}
	if a := s.next(query{src: 0, closed: true}, t0); a.kind != actStop {
		t.Fatalf("next = %+v after the orphans completed, want a stop", a)
	}
	if st := s.stats(); st.Adopted != 2 {
		t.Fatalf("stats %+v, want 2 adopted", st)
	}
}

// TestPolicyProbesUnmeasuredMirror: until its speed is measured, a
// mirror's range taken from the input is cut to a probe, the rest an
// orphan whose first probe the mirror may adopt and the rest the primary
// adopts whole; once measured, the mirror fetches whole ranges.
func TestPolicyProbesUnmeasuredMirror(t *testing.T) {
	s := newTestScheduler(true)
	r := s.begin(1, 40*mib, 44*mib, t0)
	if start, end, _ := s.remaining(r); start != 40*mib || end != 40*mib+mirrorProbe {
		t.Fatalf("a taken range is cut to [%d,%d), want a probe", start, end)
	}
	s.leave(r) // as if fetched
	a := s.next(query{src: 1, empty: true}, t0)
	if a.kind != actSteal || a.how != stealAdopt || a.start != 40*mib+mirrorProbe || a.end != 41*mib {
		t.Fatalf("the mirror's next = %+v, want a probe of the rest adopted", a)
	}
	b := s.next(query{src: 0, empty: true}, t0)
	if b.kind != actSteal || b.how != stealAdopt || b.start != 41*mib || b.end != 44*mib {
		t.Fatalf("the primary's next = %+v, want the rest adopted", b)
	}
	s.sample(1, 4*mib, time.Second)
	if r := s.begin(1, 48*mib, 52*mib, t0); r.sp.end != 52*mib {
		t.Fatalf("a measured mirror's range ends at %d, want it whole", r.sp.end)
	}
}

// TestSchedulerClaimsOnce: an owner and a racer read the same span at
// different speeds, a halving lowers its end, and every byte is emitted
// exactly once, by whoever read it first.
func TestSchedulerClaimsOnce(t *testing.T) {
	s := newTestScheduler(false)
	const start, end = 4 * mib, 12 * mib
	owner, _ := reading(s, 0, start, end, 0) // no time to a first byte: any split pays
	var emitted pipeline.RangeSet
	var total int64
	emit := func(r *spanReader, from int64, n int) bool {
		a, b, done := s.claim(r, from, n)
		if b > a {
			if a < from || b > from+int64(n) {
				t.Fatalf("emits [%d,%d) outside what was read [%d,%d)", a, b, from, from+int64(n))
			}
			if emitted.Contains(pipeline.Range{Start: a, End: a + 1}) {
				t.Fatalf("[%d,%d) emitted twice", a, b)
			}
			emitted.Add(pipeline.Range{Start: a, End: b})
			total += b - a
		}
		return done
	}
	emit(owner, start, 1*mib)
	// A racer attaches at the owner's position.
	s.mu.Lock()
	racer := s.newReaderLocked(owner.sp, 0, t0)
	s.mu.Unlock()
	rpos, _, ok := s.remaining(racer)
	if !ok || rpos != start+1*mib {
		t.Fatalf("racer starts at %d", rpos)
	}
	// The owner reads on a little, then the racer overtakes it.
	emit(owner, start+1*mib, 100)
	if emit(racer, rpos, 3*mib) {
		t.Fatal("done too early")
	}
	rpos += 3 * mib
	if a, b, _ := s.claim(owner, start+1*mib+100, 1000); b > a {
		t.Fatalf("owner emitted [%d,%d) after the racer", a, b)
	}
	// An idle replica halves what is left.
	a := s.next(query{empty: true}, t0)
	if a.kind != actSteal || a.how != stealHalve || a.start%pieceAlign != 0 || a.end != end || a.start <= rpos {
		t.Fatalf("next = %+v, racer at %d", a, rpos)
	}
	half := a.sr
	// The racer reads up to the new end (and beyond: it asked for more).
	if !emit(racer, rpos, int(a.start-rpos)+4096) {
		t.Fatal("span not done at its new end")
	}
	s.answer(half, 0, t0)
	if !emit(half, a.start, int(a.end-a.start)) {
		t.Fatal("half not done")
	}
	s.leave(owner)
	s.leave(racer)
	s.leave(half)
	s.leave(half) // a second leave is no-op
	if total != end-start || emitted.Len() != end-start {
		t.Fatalf("emitted %d bytes (%v), want %d", total, emitted.Ranges(), end-start)
	}
	if busy, _ := s.busy(); busy {
		t.Fatal("spans left")
	}
}

// TestSchedulerFinishedSamples: a request's speed counts from its answer,
// less the time it waited to hand chunks on; a prefetched answer's does
// not count.
func TestSchedulerFinishedSamples(t *testing.T) {
	s := newTestScheduler(false)
	r, _ := reading(s, 0, 0, 64*mib, 100*time.Millisecond)
	r.received(8 * mib)
	s.sent(r, time.Second)
	s.finished(r, true, t0.Add(2100*time.Millisecond))
	if s.typical != 0 {
		t.Fatalf("a prefetched answer was sampled: %v", s.typical)
	}
	s.finished(r, false, t0.Add(2100*time.Millisecond))
	if s.typical != 8*mib {
		t.Fatalf("typical %v B/s, want 8 MiB in 1s (2s from the answer, less 1s blocked)", s.typical)
	}
}
