package stages

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the work stealing of http.reader: the replicas of one
// reader stage share a scheduler that knows the range each of them is
// fetching (a span). A replica with nothing to do (its input is empty or
// closed) helps the others:
//
//   - replace: a reader far below the typical speed (a trickling
//     connection) has its request cancelled and its remaining range taken
//     over by the idle replica;
//   - halve: the idle replica takes over the upper half of the span that
//     will take longest to finish, when that half is at least stealMin
//     bytes;
//   - race: a span too short to halve whose reader is clearly slower than
//     a fresh connection would be is fetched a second time from where it
//     stands; the first reader to deliver a byte emits it, and the first to
//     reach the end cancels the other.
//
// Every byte is emitted exactly once: a reader claims the bytes it read
// under the scheduler's lock and emits only those beyond the span's pos (the
// first byte nobody emitted yet) and below its end (which a halving lowers).
// So duplicates never reach a reorder heap or a hash tap, and stolen ranges
// lie inside ranges the splitter already acquired from the window: the
// credits stay correct.

// Scheduler tuning.
const (
	// stealPoll is how often an idle replica looks for work to steal.
	stealPoll = 10 * time.Millisecond
	// A reader's speed is judged (to replace or race it) once it ran for
	// as long as a typical reader takes to deliver judgeBytes, within
	// [judgeMin, judgeMax], and at least four times the time to a first
	// byte. Shorter judgements mistake a reader that did not get the CPU
	// for a slow connection, and a replaced reader's bytes in flight are
	// fetched twice.
	judgeBytes = 16 << 20
	judgeMin   = 100 * time.Millisecond
	judgeMax   = 250 * time.Millisecond
	// slowFactor: a reader this many times slower than typical is replaced.
	slowFactor = 4
	// raceMinETA: a span that ends within this is not raced.
	raceMinETA = 250 * time.Millisecond
	// rateSample is the least a request must deliver for its speed to
	// count towards the typical speed.
	rateSample = 256 << 10
	// A request with no answer yet is silent (see silentLocked) once it
	// waited silentFactor times the typical time to a header, and at
	// least silentMin: a server that takes seconds to answer on a link
	// where others answer in milliseconds is not worth waiting for, and
	// silentMin leaves a slow but honest answer (a cold cache, a busy
	// machine) its time.
	silentMin    = 2 * time.Second
	silentFactor = 8
)

var (
	// errSpanDone cancels a reader whose span another reader completed.
	errSpanDone = errors.New("range completed by another connection")
	// errReplaced cancels a reader that was too slow and replaced.
	errReplaced = errors.New("connection too slow; its range was handed to another")
	// errSilent cancels a reader whose request got no answer while other
	// sources answered; its range was handed to one of them.
	errSilent = errors.New("no answer while the other sources answered; its range was handed to another source")
)

// scheduler is shared by the replicas of one http.reader in one run.
type scheduler struct {
	stealMin int64 // 0 disables stealing

	mu      sync.Mutex
	spans   map[*span]struct{}
	changed chan struct{} // closed and replaced when a span ends
	typical float64       // bytes/s of one connection (EWMA), 0 while unknown
	// bySource is typical per source (index of sources.list), with
	// several sources: a thief's speed is that of its own source.
	bySource map[int]float64
	// multi: the replicas fetch from several sources, so a span is split
	// where the two readers finish together, not in the middle.
	multi bool
	// align is where spans are split: pieceAlign, or the length of the
	// resource's verified pieces, so that each piece is read whole by
	// one reader.
	align int64
	ttfb  time.Duration // time to the response header (EWMA)
	// heard holds the sources that answered a request of this run: only
	// their replicas take over a silent request.
	heard  map[int]bool
	counts [stealAdopt + 1]int
	// quiet: no reader is judged before then, because an idle replica
	// woke late: the process is short of CPU, so readers look slow.
	quiet time.Time
}

func newScheduler(stealMin int64) *scheduler {
	return &scheduler{stealMin: stealMin, spans: make(map[*span]struct{}), changed: make(chan struct{}), align: pieceAlign}
}

// span is a range being fetched: [pos, end) is still to emit. Guarded by
// the scheduler's lock.
type span struct {
	pos, end  int64
	stealable bool // a reader got a 206 for it: it may be split or raced
	done      bool
	readers   []*spanReader
}

// spanReader is one replica working on a span. Guarded by the scheduler's
// lock.
type spanReader struct {
	sp       *span
	src      int                     // the index of its source
	cancel   context.CancelCauseFunc // of the request in flight, or nil
	replaced bool                    // a faster reader took over
	started  time.Time               // attached, or sent its latest request
	blocked  time.Duration           // time since started spent handing chunks on
	// read counts the bytes its latest request delivered, as they arrive;
	// the only field written without the lock.
	read atomic.Int64
}

// begin registers a new span [start, end) fetched by the calling replica
// from source src.
func (s *scheduler) begin(start, end int64, src int) *spanReader {
	sp := &span{pos: start, end: end}
	r := &spanReader{sp: sp, started: time.Now(), src: src}
	sp.readers = []*spanReader{r}
	s.mu.Lock()
	s.spans[sp] = struct{}{}
	s.mu.Unlock()
	return r
}

// next returns where the reader's next request starts and ends: the span's
// pos and end. ok is false when it has nothing left to do.
func (s *scheduler) next(r *spanReader) (start, end int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.replaced || r.sp.done || r.sp.pos >= r.sp.end {
		return 0, 0, false
	}
	return r.sp.pos, r.sp.end, true
}

// limit is the end of the reader's span as it stands.
func (s *scheduler) limit(r *spanReader) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.sp.end
}

// request records the cancel function of the reader's request in flight
// (nil when it ended). A new request starts the window over which the
// reader's speed is measured: the time a failed request and the backoff
// before its retry took says nothing of the connection's speed. A reader
// already replaced, or whose span is done, is cancelled at once.
func (s *scheduler) request(r *spanReader, cancel context.CancelCauseFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.cancel = cancel
	if cancel != nil {
		r.started, r.blocked = time.Now(), 0
		r.read.Store(0)
	}
	switch {
	case cancel == nil:
	case r.replaced:
		cancel(errReplaced)
	case r.sp.done:
		cancel(errSpanDone)
	}
}

// answered marks the span stealable after a 206 and records the time to
// the header.
func (s *scheduler) answered(r *spanReader, ttfb time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.sp.stealable = true
	if s.heard == nil {
		s.heard = make(map[int]bool)
	}
	s.heard[r.src] = true
	switch {
	case ttfb <= 0: // not measured
	case s.ttfb == 0:
		s.ttfb = ttfb
	default:
		s.ttfb = (3*s.ttfb + ttfb) / 4
	}
}

// claim records that the reader's request delivered the bytes [from,
// from+n) and returns the part of them to emit, [emitFrom, emitTo), which
// may be empty. done reports that the reader must stop: its span is
// complete or it was replaced. The reader that completes the span cancels
// the other readers of it and unregisters it.
func (s *scheduler) claim(r *spanReader, from int64, n int) (emitFrom, emitTo int64, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := r.sp
	to := min(from+int64(n), sp.end)
	emitFrom, emitTo = sp.pos, sp.pos
	if !sp.done && from <= sp.pos && to > sp.pos {
		emitTo = to
		sp.pos = to
	}
	if !sp.done && sp.pos >= sp.end {
		s.completeLocked(sp, r)
	}
	return emitFrom, emitTo, sp.done || r.replaced
}

// completeLocked ends sp and cancels its readers other than r.
func (s *scheduler) completeLocked(sp *span, r *spanReader) {
	sp.done = true
	for _, o := range sp.readers {
		if o != r && o.cancel != nil {
			o.cancel(errSpanDone)
		}
	}
	delete(s.spans, sp)
	close(s.changed)
	s.changed = make(chan struct{})
}

// sent adds the time the reader waited to hand a chunk on.
func (s *scheduler) sent(r *spanReader, d time.Duration) {
	s.mu.Lock()
	r.blocked += d
	s.mu.Unlock()
}

// leave detaches a reader that stops working on its span: done (nothing
// left), replaced, or failing the run. A span whose last reader leaves
// unfinished is unregistered too; that only happens when the run fails.
func (s *scheduler) leave(r *spanReader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.detachLocked(r)
	if !sp.done && (len(sp.readers) == 0 || sp.pos >= sp.end) {
		s.completeLocked(sp, r)
	}
}

// detachLocked removes r from its span's readers and returns the span.
func (s *scheduler) detachLocked(r *spanReader) *span {
	sp := r.sp
	r.cancel = nil
	for i, o := range sp.readers {
		if o == r {
			sp.readers = append(sp.readers[:i], sp.readers[i+1:]...)
			break
		}
	}
	return sp
}

// busy reports whether any span is still being fetched, and returns a
// channel closed when one ends.
func (s *scheduler) busy() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.spans) > 0, s.changed
}

// late reports that an idle replica's poll woke up late by d. Readers
// are not judged for a while after a late wake-up of more than stealPoll.
func (s *scheduler) late(d time.Duration) {
	if d <= stealPoll {
		return
	}
	s.mu.Lock()
	s.quiet = time.Now().Add(judgeMax)
	s.mu.Unlock()
}

// rateLocked is r's speed in bytes/s and whether it ran long enough to be
// judged.
func (s *scheduler) rateLocked(r *spanReader, now time.Time) (float64, bool) {
	active := now.Sub(r.started) - r.blocked
	judge := judgeMax
	if s.typical > 0 {
		judge = time.Duration(float64(judgeBytes) / s.typical * float64(time.Second))
		judge = min(max(judge, judgeMin), judgeMax)
	}
	judge = max(judge, 4*s.ttfb)
	if active <= 0 {
		return 0, false
	}
	return float64(r.read.Load()) / active.Seconds(), active >= judge
}

// The ways steal finds work.
const (
	stealNone = iota
	stealReplace
	stealHalve
	stealRace
	stealAdopt
)

// steal finds work for an idle replica fetching from source src: it
// adopts a span whose reader's source was dropped, replaces a slow reader,
// halves the span that will take longest, or races a slow tail, in that
// order of preference. It returns the reader to run and how it was found,
// or nil.
func (s *scheduler) steal(src int) (*spanReader, int) {
	if s.stealMin <= 0 {
		return nil, stealNone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.tooSlowLocked(src) {
		return nil, stealNone // a faster source's replica will
	}
	if r := s.adoptLocked(src, now); r != nil {
		return r, stealAdopt
	}
	if r := s.silentLocked(src, now); r != nil {
		return r, stealReplace
	}
	if probe := s.probeLocked(src); probe > 0 {
		// An unmeasured mirror takes a probe, never a half: it may be far
		// slower than the reader it would take the half from.
		if r := s.probeTailLocked(src, probe, now); r != nil {
			return r, stealHalve
		}
		return nil, stealNone
	}
	live := s.liveRatesLocked(now)
	rateOf := func(src int) float64 {
		if r, ok := s.bySource[src]; ok && r > 0 {
			return r
		}
		if r, ok := live[src]; ok {
			// Kept: the readers that showed it may be replaced before
			// one of its requests completes.
			s.bySource[src] = r
			return r
		}
		return s.typical
	}
	thief := rateOf(src)
	judging := now.After(s.quiet)
	var (
		slow      *span // to replace: slowest live reader, most bytes left
		slowLeft  int64
		half      *span // to halve: longest time to finish
		halfETA   float64
		halfSpeed float64
		race      *span
		raceETA   float64
	)
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
			speed = max(speed, rateOf(sp.readers[0].src))
		}
		eta := float64(left) / max(speed, 1)
		if judging && len(sp.readers) == 1 && judged && s.typical > 0 && sp.readers[0].cancel != nil {
			// Only a reader with a request in flight is judged: one
			// waiting to retry is not slow, its retry policy governs it.
			// A new connection must save real time: a replaced reader's
			// bytes in flight are wasted, and a race fetches twice.
			fresh := s.ttfb.Seconds() + float64(left)/thief
			gain := eta - fresh
			if best*slowFactor < s.typical && gain > raceMinETA.Seconds() && left > slowLeft {
				slow, slowLeft = sp, left
			}
			if eta > 2*fresh && gain > raceMinETA.Seconds() && eta > raceETA {
				race, raceETA = sp, eta
			}
		}
		if split := s.splitLocked(sp, speed, thief); sp.end-split >= s.stealMin && eta > halfETA {
			// Worth a new request only when half of the time left is well
			// beyond the time to a first byte.
			if eta/2 > 2*s.ttfb.Seconds() {
				half, halfETA, halfSpeed = sp, eta, speed
			}
		}
	}
	switch {
	case slow != nil:
		victim := slow.readers[0]
		victim.replaced = true
		if victim.cancel != nil {
			victim.cancel(errReplaced)
		}
		s.counts[stealReplace]++
		r := s.attachLocked(slow, now)
		r.src = src
		return r, stealReplace
	case half != nil:
		split := s.splitLocked(half, halfSpeed, thief)
		sp := &span{pos: split, end: half.end}
		half.end = split
		r := &spanReader{sp: sp, started: now, src: src}
		sp.readers = []*spanReader{r}
		s.spans[sp] = struct{}{}
		s.counts[stealHalve]++
		return r, stealHalve
	case race != nil:
		s.counts[stealRace]++
		r := s.attachLocked(race, now)
		r.src = src
		return r, stealRace
	}
	return nil, stealNone
}

// stealCounts are how often each way of stealing was used in a run.
type stealCounts struct{ Replaced, Halved, Raced, Adopted int }

func (s *scheduler) stats() stealCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return stealCounts{Replaced: s.counts[stealReplace], Halved: s.counts[stealHalve], Raced: s.counts[stealRace],
		Adopted: s.counts[stealAdopt]}
}

func (s *scheduler) attachLocked(sp *span, now time.Time) *spanReader {
	r := &spanReader{sp: sp, started: now}
	sp.readers = append(sp.readers, r)
	return r
}

// splitLocked is where an idle replica of speed thief splits sp, whose
// reader goes at victim bytes/s: the middle with one source; with several,
// where both end together, the thief starting a time to first byte later,
// so that a slow source keeps only what it finishes as soon as the fast
// one. Either is rounded up to pieceAlign.
func (s *scheduler) splitLocked(sp *span, victim, thief float64) int64 {
	if (!s.multi || victim <= 0 || thief <= 0) && s.align == pieceAlign {
		return splitPoint(sp.pos, sp.end)
	}
	at := sp.pos + (sp.end-sp.pos)/2
	if s.multi && victim > 0 && thief > 0 {
		left := float64(sp.end - sp.pos)
		keep := victim * (left + thief*s.ttfb.Seconds()) / (victim + thief)
		at = sp.pos + int64(min(max(keep, 0), left))
	}
	return min((at+s.align-1)/s.align*s.align, sp.end)
}

// splitPoint is the middle of [pos, end) rounded up to pieceAlign.
func splitPoint(pos, end int64) int64 {
	mid := pos + (end-pos)/2
	return (mid + pieceAlign - 1) / pieceAlign * pieceAlign
}
