package stages

import "time"

// This file holds the policy of http.reader's scheduler: next, one call
// under the scheduler's lock that tells a replica what to do, given what
// the scheduler knows and the time (now). The replica carries the action
// out and reports back (scheduler.go): it never reads the scheduler's
// state to decide for itself.
//
// In order, a replica
//
//  1. moves to another source when its own was dropped;
//  2. fetches the range it carries, received while extending its last;
//  3. with several sources, adopts a dropped source's span, the lowest
//     first, since it lies below the new ranges and may hold a reorder
//     window back; waits while its source is far slower than another and
//     others are busy (what it took, a faster connection would take back
//     from it), unless a request of another source is silent; and, while
//     its mirror is not measured yet, probes the head of a span whose
//     requests stall (probeStalledLocked), else the tail of a span the
//     others hold, rather than take (and cut) a range of the input;
//  4. takes ranges from the input, as many as its source's share;
//  5. when the input is empty or closed, steals (steal), or waits for a
//     span to end, the input or the poll, or stops once the input is
//     closed and no span is left.

// query is what a replica tells next of itself.
type query struct {
	src int // the index of its source (0: the resource's URL)
	// carry: it holds a range received while extending its last one.
	carry bool
	// empty: its last take found the input empty; closed: the input is
	// closed.
	empty, closed bool
}

// actionKind is what next tells a replica to do.
type actionKind int

const (
	// actTake: take ranges from the input (without waiting), asking for
	// share of a full request, or fetch the range it carries.
	actTake actionKind = iota
	// actSteal: fetch [start, end) as sr, another's work found by how;
	// ok false: nothing is left of it (sr is left at once).
	actSteal
	// actWait: wait until changed is closed, stealPoll passed (poll), or,
	// with input, a range comes (taken as actTake does) or the input
	// closes; then ask again.
	actWait
	// actMove: the replica's source was dropped: move to another source,
	// or stop when none has room, handing back the range it carries.
	actMove
	// actStop: nothing is left for the replica to do.
	actStop
)

// action is what next tells a replica to do.
type action struct {
	kind  actionKind
	share float64 // actTake and actWait with input: see shareOfLocked

	sr         *spanReader // actSteal
	how        int         // actSteal: stealReplace, stealHalve, ...
	start, end int64       // actSteal
	ok         bool        // actSteal

	changed <-chan struct{} // actWait; nil never closes
	poll    bool            // actWait
	input   bool            // actWait
}

// next returns what the replica q describes does next, at now. It is the
// scheduler's one decision per step of a replica; everything it changes
// (a span split, a reader replaced and cancelled, an orphan adopted) it
// changes under the same lock.
func (s *scheduler) next(q query, now time.Time) action {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.dropped[q.src]:
		return action{kind: actMove}
	case q.carry:
		return action{kind: actTake}
	case s.off && q.closed:
		return action{kind: actStop}
	case s.off && q.empty:
		return action{kind: actWait, input: true, share: 1} // blocks for a range
	case s.off:
		return action{kind: actTake, share: 1}
	}
	if a, ok := s.beforeTakeLocked(q, now); ok {
		return a
	}
	if !q.empty && !q.closed {
		return action{kind: actTake, share: s.shareOfLocked(q.src)}
	}
	if r, how := s.stealLocked(q.src, now); r != nil {
		return s.stolenLocked(r, how)
	}
	if q.closed && len(s.spans) == 0 {
		return action{kind: actStop}
	}
	return action{kind: actWait, changed: s.changed, poll: true, input: !q.closed, share: s.shareOfLocked(q.src)}
}

// beforeTakeLocked is what a replica of several sources does before it
// takes from the input (step 3 of next); ok false when it takes.
func (s *scheduler) beforeTakeLocked(q query, now time.Time) (a action, ok bool) {
	if !s.multi || q.empty {
		return a, false
	}
	switch slow := s.tooSlowLocked(q.src); {
	case !slow:
		if r := s.adoptLocked(q.src, now); r != nil {
			return s.stolenLocked(r, stealAdopt), true
		}
	case len(s.spans) > 0:
		// A slow source is better than one that does not answer.
		if r := s.silentLocked(q.src, now); r != nil {
			return s.stolenLocked(r, stealReplace), true
		}
		return action{kind: actWait, changed: s.changed, poll: true}, true
	case q.closed:
		return action{kind: actStop}, true
	}
	if s.probeLocked(q.src) > 0 {
		if r, how := s.stealLocked(q.src, now); r != nil {
			return s.stolenLocked(r, how), true
		}
	}
	return a, false
}

// stolenLocked is the action that runs r, found by how.
func (s *scheduler) stolenLocked(r *spanReader, how int) action {
	start, end, ok := s.nextLocked(r)
	return action{kind: actSteal, sr: r, how: how, start: start, end: end, ok: ok}
}

// The ways steal finds work.
const (
	stealNone = iota
	stealReplace
	stealHalve
	stealRace
	stealAdopt
)

// stealLocked finds work at now for an idle replica fetching from source
// src: it adopts a span whose reader's source was dropped, replaces a
// silent or slow reader, halves the span that will take longest, or races
// a slow tail, in that order of preference. It returns the reader to run
// and how it was found, or nil. A source far slower than another takes
// over only silent requests: it delivers, they do not.
func (s *scheduler) stealLocked(src int, now time.Time) (*spanReader, int) {
	if s.stealMin <= 0 {
		return nil, stealNone
	}
	slow := s.tooSlowLocked(src)
	if !slow {
		if r := s.adoptLocked(src, now); r != nil {
			return r, stealAdopt
		}
	}
	if r := s.silentLocked(src, now); r != nil {
		return r, stealReplace
	}
	if slow {
		return nil, stealNone // a faster source's replica will
	}
	if probe := s.probeLocked(src); probe > 0 {
		// An unmeasured mirror takes a probe, never a half: it may be far
		// slower than the reader it would take the half from. The head of
		// a stalled span first: nothing else gets it going.
		if r := s.probeStalledLocked(src, probe, now); r != nil {
			return r, stealRace
		}
		if r := s.probeTailLocked(src, probe, now); r != nil {
			return r, stealHalve
		}
		return nil, stealNone
	}
	return s.takeLocked(s.pickLocked(src, now), src, now)
}

// stealPick is what pickLocked found worth taking over, each the best of
// its kind.
type stealPick struct {
	thief     float64 // the idle replica's expected speed
	slow      *span   // to replace: slowest live reader, most bytes left
	slowLeft  int64
	half      *span // to halve: longest time to finish
	halfETA   float64
	halfSpeed float64
	race      *span
	raceETA   float64
}

// knownRateLocked is the speed of a connection to source src: its
// measured one, else the live speed of its readers (live, kept: the
// readers that showed it may be replaced before one of its requests
// completes), else the typical one.
func (s *scheduler) knownRateLocked(src int, live map[int]float64) float64 {
	if r, ok := s.bySource[src]; ok && r > 0 {
		return r
	}
	if r, ok := live[src]; ok {
		s.bySource[src] = r
		return r
	}
	return s.typical
}

// pickLocked looks at every span for one to replace, halve or race.
func (s *scheduler) pickLocked(src int, now time.Time) stealPick {
	live := s.liveRatesLocked(now)
	p := stealPick{thief: s.knownRateLocked(src, live)}
	judging := now.After(s.quiet)
	for sp := range s.spans {
		left := sp.end - sp.pos
		if !sp.stealable || sp.done || left <= 0 || len(sp.readers) == 0 {
			continue
		}
		// The span's speed is that of its fastest reader.
		var best float64
		judged := true
		for _, r := range sp.readers {
			rate, ok := s.rateLocked(r, now)
			best = max(best, rate)
			judged = judged && ok
		}
		speed := best
		if !judged && s.typical > 0 {
			// Too young to tell: assume typical (of its own source).
			speed = max(speed, s.knownRateLocked(sp.readers[0].src, live))
		}
		eta := float64(left) / max(speed, 1)
		if judging && len(sp.readers) == 1 && judged && s.typical > 0 && sp.readers[0].cancel != nil {
			p.judge(sp, left, best, eta, s.typical, s.ttfb)
		}
		if split := s.splitLocked(sp, speed, p.thief); sp.end-split >= s.stealMin && eta > p.halfETA {
			// Worth a new request only when half of the time left is well
			// beyond the time to a first byte.
			if eta/2 > 2*s.ttfb.Seconds() {
				p.half, p.halfETA, p.halfSpeed = sp, eta, speed
			}
		}
	}
	return p
}

// judge weighs replacing or racing sp, whose one reader was judged at
// best bytes/s with left bytes to go (eta seconds). Only a reader with a
// request in flight is judged: one waiting to retry is not slow, its
// retry policy governs it. A new connection must save real time: a
// replaced reader's bytes in flight are wasted, and a race fetches twice.
func (p *stealPick) judge(sp *span, left int64, best, eta, typical float64, ttfb time.Duration) {
	fresh := ttfb.Seconds() + float64(left)/p.thief
	gain := eta - fresh
	if best*slowFactor < typical && gain > raceMinETA.Seconds() && left > p.slowLeft {
		p.slow, p.slowLeft = sp, left
	}
	if eta > 2*fresh && gain > raceMinETA.Seconds() && eta > p.raceETA {
		p.race, p.raceETA = sp, eta
	}
}

// takeLocked carries out the best of what pickLocked found for a replica
// of source src: it cancels a replaced reader, or splits a span.
func (s *scheduler) takeLocked(p stealPick, src int, now time.Time) (*spanReader, int) {
	switch {
	case p.slow != nil:
		victim := p.slow.readers[0]
		victim.replaced = true
		if victim.cancel != nil {
			victim.cancel(errReplaced)
		}
		s.counts[stealReplace]++
		return s.newReaderLocked(p.slow, src, now), stealReplace
	case p.half != nil:
		split := s.splitLocked(p.half, p.halfSpeed, p.thief)
		end := p.half.end
		p.half.end = split
		s.counts[stealHalve]++
		return s.newSpanLocked(split, end, src, now), stealHalve
	case p.race != nil:
		s.counts[stealRace]++
		return s.newReaderLocked(p.race, src, now), stealRace
	}
	return nil, stealNone
}
