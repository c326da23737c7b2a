package stages

import (
	"time"
)

// This file holds what the scheduler knows of each source's speed when a
// reader stage fetches from several (mirrors): the samples it takes, the
// share of a request each source asks for, the source too slow to take
// new work, and the ranges a reader hands back when its source is dropped
// (orphans) for the readers of other sources to adopt. The scheduler's
// state and locking are in scheduler.go.

// sample feeds the speed of one request to source src into the typical
// speed and that of the source.
func (s *scheduler) sample(src int, bytes int64, d time.Duration) {
	if bytes < rateSample || d <= 0 {
		return
	}
	rate := float64(bytes) / d.Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.typical == 0 {
		s.typical = rate
	} else {
		s.typical = 0.75*s.typical + 0.25*rate
	}
	if s.multi {
		if old, ok := s.bySource[src]; ok {
			rate = 0.75*old + 0.25*rate
		}
		s.bySource[src] = rate
	}
}

// liveRatesLocked is, with several sources, the mean speed of the
// readers of each source that ran long enough to be judged: a source's
// requests may be too long (or too slow) to have completed one, and an
// unmeasured slow source taken for a typical one would steal work it
// finishes late.
func (s *scheduler) liveRatesLocked(now time.Time) map[int]float64 {
	if !s.multi {
		return nil
	}
	sum, n := map[int]float64{}, map[int]int{}
	for sp := range s.spans {
		for _, r := range sp.readers {
			if rate, ok := s.rateLocked(r, now); ok && r.cancel != nil {
				sum[r.src] += rate
				n[r.src]++
			}
		}
	}
	for src := range sum {
		sum[src] /= float64(n[src])
	}
	return sum
}

// rateOfLocked is the typical speed of a connection to source src: its
// own measured one, else the typical over all.
func (s *scheduler) rateOfLocked(src int) float64 {
	if r, ok := s.bySource[src]; ok && r > 0 {
		return r
	}
	return s.typical
}

// shareOfLocked is the part of a full request (rangeTaker) that a replica of
// source src asks for: 1 with one source; with several, its source's
// speed over the fastest one's, and while its source is not measured 1
// for the primary (the source asked for; a dead or slow mirror then costs
// it nothing) and 0 (one range) for a mirror, so that a slow mirror does
// not start with a large share that the others must take back from it.
func (s *scheduler) shareOfLocked(src int) float64 {
	if !s.multi {
		return 1
	}
	rate, ok := s.bySource[src]
	switch {
	case (!ok || rate <= 0) && src == 0:
		return 1
	case !ok || rate <= 0:
		return 0
	}
	fastest := rate
	for _, r := range s.bySource {
		fastest = max(fastest, r)
	}
	return rate / fastest
}

// tooSlowLocked reports, with several sources, whether source src is
// measured slowFactor times slower per connection than the fastest one:
// its replicas then take no work while others are busy, and steal none.
func (s *scheduler) tooSlowLocked(src int) bool {
	rate, ok := s.bySource[src]
	if !s.multi || !ok || rate <= 0 {
		return false
	}
	for _, r := range s.bySource {
		if rate*slowFactor < r {
			return true
		}
	}
	return false
}

// drop reports that source src was dropped: its replicas move to
// another (next), and what is known of its speed is forgotten, so that it
// does not make the others look fast or slow.
func (s *scheduler) drop(src int) {
	s.mu.Lock()
	delete(s.bySource, src)
	s.dropped[src] = true
	s.mu.Unlock()
}

// setSource records that r now fetches from source src (a failover).
func (s *scheduler) setSource(r *spanReader, src int) {
	s.mu.Lock()
	r.src = src
	s.mu.Unlock()
}

// adoptLocked attaches a replica of source src to a span left without
// readers (orphan), the lowest first: a replica takes such work before new
// ranges, since it lies below them and may hold a reorder window back. Nil
// when there is none.
func (s *scheduler) adoptLocked(src int, now time.Time) *spanReader {
	var lowest *span
	for sp := range s.spans {
		if len(sp.readers) == 0 && !sp.done && sp.pos < sp.end && (lowest == nil || sp.pos < lowest.pos) {
			lowest = sp
		}
	}
	if lowest == nil {
		return nil
	}
	if probe := s.probeLocked(src); probe > 0 {
		// An unmeasured mirror adopts a probe; the rest stays an orphan.
		// Rounded down: an orphan may start unaligned (where a dropped
		// reader stopped), and a probe asks for no more than probe bytes.
		if cut := (lowest.pos + probe) / s.align * s.align; cut < lowest.end {
			s.spans[&span{pos: cut, end: lowest.end}] = struct{}{}
			lowest.end = cut
		}
	} else {
		// The orphans that continue it go with it, in one request: a
		// probe that failed lies just below the rest of its range.
		for merged := true; merged; {
			merged = false
			for sp := range s.spans {
				if sp != lowest && len(sp.readers) == 0 && !sp.done && sp.pos == lowest.end && sp.end > sp.pos {
					lowest.end = sp.end
					delete(s.spans, sp)
					merged = true
					break
				}
			}
		}
	}
	s.counts[stealAdopt]++
	return s.newReaderLocked(lowest, src, now)
}

// mirrorProbe is the most an unmeasured mirror's request asks for (rounded
// up to the scheduler's align): enough for a sample (rateSample), little
// enough that a mirror far slower than the primary holds few bytes that
// the primary must fetch again. A 4 MiB piece at 256 KiB/s holds 16 s of
// work; 512 KiB holds 2 s, less than the primary takes for 256 MiB.
const mirrorProbe = 512 << 10

// probeLocked is the most a request of a replica of source src may ask
// for while its source is not measured: 0 (no limit) with one source, for
// the primary, and for a measured mirror.
func (s *scheduler) probeLocked(src int) int64 {
	if !s.multi || src == 0 {
		return 0
	}
	if r, ok := s.bySource[src]; ok && r > 0 {
		return 0
	}
	return (int64(mirrorProbe) + s.align - 1) / s.align * s.align
}

// probeTailLocked gives an unmeasured mirror's replica the last probe
// bytes of the span with the most left (a halving that leaves the other
// reader almost all of it): the other reader's request stops where it
// would have ended anyway, so the probe costs the others no request,
// unlike a range taken from the input, whose rest must be fetched by a
// request of its own. Nil when no span is long enough.
func (s *scheduler) probeTailLocked(src int, probe int64, now time.Time) *spanReader {
	var (
		best *span
		cut  int64
	)
	for sp := range s.spans {
		if !sp.stealable || sp.done || len(sp.readers) == 0 {
			continue
		}
		// The span's reader keeps at least the probe's length: a probe
		// slower than it must not become what it waits for. The cut is
		// rounded up, so that the probe of a span that ends unaligned
		// (at the end of the file) asks for no more than probe bytes.
		at := (sp.end - probe + s.align - 1) / s.align * s.align
		if at-sp.pos < 2*probe || at >= sp.end {
			continue
		}
		if best == nil || sp.end-sp.pos > best.end-best.pos {
			best, cut = sp, at
		}
	}
	if best == nil {
		return nil
	}
	end := best.end
	best.end = cut
	s.counts[stealHalve]++
	return s.newSpanLocked(cut, end, src, now)
}

// silentLocked hands a replica of source src, one that answered, the span
// whose readers are all other sources' requests with no answer after
// silentMin, or silentFactor times the typical time to a header: a
// server that takes requests and never answers would hold that span
// until the idle timeout. The requests are cancelled with errSilent, which
// drops their sources (see httpFetcher.fetch). The lowest such span first;
// nil when there is none, with one source, or while the process is short
// of CPU (s.quiet).
func (s *scheduler) silentLocked(src int, now time.Time) *spanReader {
	if !s.multi || s.ttfb <= 0 || !s.heard[src] || now.Before(s.quiet) {
		return nil
	}
	wait := s.silentWaitLocked()
	var victim *span
	for sp := range s.spans {
		if sp.stealable || sp.done || sp.pos >= sp.end || !s.allSilentLocked(sp, src, wait, now) {
			continue
		}
		if victim == nil || sp.pos < victim.pos {
			victim = sp
		}
	}
	if victim == nil {
		return nil
	}
	for _, r := range victim.readers {
		r.replaced = true
		r.cancel(errSilent)
		s.heard[r.src] = false // until it answers again
	}
	s.counts[stealReplace]++
	return s.newReaderLocked(victim, src, now)
}

// allSilentLocked reports whether every reader of sp, one at least, has a
// request of another source than src in flight, unanswered for wait or
// longer. A span may have two such readers: an unmeasured mirror's probe
// raced a stalled one (probeStalledLocked) and went silent too; taking
// over only spans of one reader left such a span held until the idle
// timeout (TestMirrorSilentLosesItsRange, 1 run in 6).
func (s *scheduler) allSilentLocked(sp *span, src int, wait time.Duration, now time.Time) bool {
	for _, r := range sp.readers {
		if r.cancel == nil || r.replaced || r.src == src || now.Sub(r.started) < wait {
			return false
		}
	}
	return len(sp.readers) > 0
}

// silentWaitLocked is how long a request may go without an answer before
// it is silent: silentFactor times the typical time to a header, at least
// silentMin.
func (s *scheduler) silentWaitLocked() time.Duration { return max(silentMin, silentFactor*s.ttfb) }

// stalledLocked reports whether r's request in flight stalls at now: it
// delivered no byte (no header, or a header and no body) for the silent
// wait since it was sent, or, answered and judged, it goes slowFactor
// times slower than typical (what makes a reader replaced, see judge). A
// reader waiting to retry does not stall: its retry policy governs it.
func (s *scheduler) stalledLocked(r *spanReader, now time.Time) bool {
	if r.cancel == nil || r.replaced {
		return false
	}
	if r.read.Load() == 0 && now.Sub(r.started) >= s.silentWaitLocked() {
		return true
	}
	if !r.header || s.typical <= 0 {
		return false
	}
	rate, judged := s.rateLocked(r, now)
	return judged && rate*slowFactor < s.typical
}

// probeStalledLocked gives a replica of source src, an unmeasured mirror,
// the head of the lowest span whose every reader is another source's
// request that stalls (stalledLocked): probe bytes of it, split off as a
// span of its own, or the whole rest, raced, when that is no longer. Such
// a mirror may never have answered, so it takes over no silent request
// (silentLocked): the stalled request goes on and keeps the rest of its
// span. Once the probe measured the mirror, the mirror takes over the rest
// as any source does. Without this, a download whose measured sources all
// stall waits for them, its unmeasured mirrors never asked. Nil when no
// span stalls, or while the process is short of CPU (s.quiet).
func (s *scheduler) probeStalledLocked(src int, probe int64, now time.Time) *spanReader {
	if now.Before(s.quiet) {
		return nil
	}
	var lowest *span
	for sp := range s.spans {
		if sp.done || sp.pos >= sp.end || len(sp.readers) == 0 || lowest != nil && sp.pos >= lowest.pos {
			continue
		}
		stalled := true
		for _, r := range sp.readers {
			stalled = stalled && r.src != src && s.stalledLocked(r, now)
		}
		if stalled {
			lowest = sp
		}
	}
	if lowest == nil {
		return nil
	}
	s.counts[stealRace]++
	// Rounded down, as an adopted probe is: a span may start unaligned.
	if cut := (lowest.pos + probe) / s.align * s.align; cut < lowest.end {
		// The stalled reader drops what it reads below its span's pos.
		start := lowest.pos
		lowest.pos = cut
		return s.newSpanLocked(start, cut, src, now)
	}
	return s.newReaderLocked(lowest, src, now)
}
