package stages

import (
	"errors"
	"testing"
	"time"
)

// The scheduler's policy when requests stall, driven with a fake clock as
// in policy_test.go.

// TestPolicyProbesStalledSpan: the primary's request has no answer; an
// unmeasured mirror that never answered is given the head of its span (a
// probe) and the silent request keeps the rest. Once the probe answered
// and measured the mirror, the mirror takes the rest over, and the silent
// request is cancelled.
func TestPolicyProbesStalledSpan(t *testing.T) {
	s := newTestScheduler(true)
	s.sample(0, 10*mib, time.Second)
	victim, cause := reading(s, 0, 0, 4*mib, -1)
	at := t0.Add(3 * time.Second)
	a := s.next(query{src: 1, empty: true}, at)
	if a.kind != actSteal || a.how != stealRace || a.start != 0 || a.end != mirrorProbe || a.sr.src != 1 {
		t.Fatalf("the mirror's next = %+v, want a probe of [0,%d)", a, mirrorProbe)
	}
	if start, end, ok := s.remaining(victim); !ok || start != mirrorProbe || end != 4*mib {
		t.Fatalf("the silent request keeps [%d,%d) ok %v, want [%d,%d)", start, end, ok, mirrorProbe, 4*mib)
	}
	// A second replica of the mirror probes the next head.
	b := s.next(query{src: 1, empty: true}, at)
	if b.kind != actSteal || b.start != mirrorProbe || b.end != 2*mirrorProbe {
		t.Fatalf("the mirror's second next = %+v, want [%d,%d)", b, mirrorProbe, 2*mirrorProbe)
	}
	// The first probe comes whole; the mirror is measured.
	s.request(a.sr, func(error) {}, at)
	s.answer(a.sr, 10*time.Millisecond, at.Add(10*time.Millisecond))
	a.sr.received(mirrorProbe)
	if _, _, done := s.claim(a.sr, 0, mirrorProbe); !done {
		t.Fatal("the probe's span is not done")
	}
	s.finished(a.sr, false, at.Add(110*time.Millisecond))
	s.leave(a.sr)
	if s.probeLocked(1) != 0 {
		t.Fatal("the mirror is not measured after its probe")
	}
	c := s.next(query{src: 1, empty: true}, at.Add(200*time.Millisecond))
	if c.kind != actSteal || c.how != stealReplace || c.start != 2*mirrorProbe || c.end != 4*mib || c.sr.src != 1 {
		t.Fatalf("the measured mirror's next = %+v, want the rest [%d,%d) taken over", c, 2*mirrorProbe, 4*mib)
	}
	if !errors.Is(cause(), errSilent) {
		t.Fatalf("the silent request was cancelled with %v, want errSilent", cause())
	}
	if st := s.stats(); st.Raced != 2 || st.Replaced != 1 {
		t.Fatalf("stats %+v, want 2 probes raced and 1 replaced", st)
	}
}

// TestPolicySilentSourceTakesNone: a source whose request went silent and
// was taken over takes over no other silent request until it answers
// again: it would likely hold that one too.
func TestPolicySilentSourceTakesNone(t *testing.T) {
	s := newTestScheduler(true)
	answered := func(src int, start int64) {
		r, _ := reading(s, src, start, start+64<<10, 10*time.Millisecond)
		s.claim(r, start, 64<<10)
		s.leave(r)
	}
	answered(1, 40*mib)                           // source 1 answered
	silentMirror(s)                               // then its request for [0,4MiB), silent since t0
	other, _ := reading(s, 0, 16*mib, 20*mib, -1) // and source 0's, since t0
	at := t0.Add(3 * time.Second)
	if a := s.next(query{src: 0, empty: true}, at); a.kind != actSteal || a.how != stealReplace || a.start != 0 {
		t.Fatalf("source 0's next = %+v, want source 1's silent request taken over", a)
	}
	// Source 0's own request is silent too; source 1 went silent.
	if a := s.next(query{src: 1, empty: true}, at); a.kind != actWait {
		t.Fatalf("source 1's next = %+v, want a wait: it went silent", a)
	}
	// Source 1 answers again: it takes source 0's silent request over.
	answered(1, 32*mib)
	if a := s.next(query{src: 1, empty: true}, at); a.kind != actSteal || a.how != stealReplace || a.sr.sp != other.sp {
		t.Fatalf("source 1's next = %+v, want source 0's silent request taken over", a)
	}
}

// TestPolicySilentRaceTakenOver: a span whose two readers are both silent
// (a mirror's request, and another unmeasured mirror's probe that raced
// it) is taken over by an idle replica of a source that answers, and both
// silent requests are cancelled. Taking over only spans of one reader left
// it held until the idle timeout.
func TestPolicySilentRaceTakenOver(t *testing.T) {
	s := newTestScheduler(true)
	s.sample(0, 10*mib, time.Second)
	done, _ := reading(s, 0, 8*mib, 8*mib+64<<10, 10*time.Millisecond) // the primary answers
	s.claim(done, 8*mib, 64<<10)
	s.leave(done)
	first, cause1 := reading(s, 1, 0, mirrorProbe, -1) // mirror 1's probe: silent since t0
	second := s.newReaderLocked(first.sp, 2, t0)       // mirror 2 races it: silent too
	var cause2 error
	s.request(second, func(err error) { cause2 = err }, t0)
	a := s.next(query{src: 0, empty: true}, t0.Add(3*time.Second))
	if a.kind != actSteal || a.how != stealReplace || a.start != 0 || a.end != mirrorProbe || a.sr.src != 0 {
		t.Fatalf("the primary's next = %+v, want the silent span [0,%d) taken over", a, mirrorProbe)
	}
	if !errors.Is(cause1(), errSilent) || !errors.Is(cause2, errSilent) {
		t.Fatalf("the silent requests were cancelled with %v and %v, want errSilent both", cause1(), cause2)
	}
}
