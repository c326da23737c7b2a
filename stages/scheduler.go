package stages

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the state of http.reader's work stealing and the
// reports its replicas make to it: the replicas of one reader stage share
// a scheduler that knows the range each of them is fetching (a span). What
// a replica does next is decided by one call, next (policy.go); the
// replica carries it out and reports what happened through the methods
// below. Every method that needs the time takes it as an argument (now),
// as golang.org/x/time/rate's ReserveN does: the scheduler never reads the
// clock, so a test drives it with a fake one.
//
// A replica with nothing to do (its input is empty or closed) helps the
// others:
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

// scheduler is shared by the replicas of one http.reader in one run. All
// its methods are safe for concurrent use.
type scheduler struct {
	stealMin int64 // 0 disables stealing
	// off: the replicas share no work (steal_min 0, or a size unknown, so
	// that ranges run to the end of the body): next only hands out the
	// input's ranges one at a time.
	off bool

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
	// dropped holds the sources dropped in this run (sources.failed):
	// their replicas move to another.
	dropped map[int]bool
	// align is where spans are split: pieceAlign, or the length of the
	// resource's verified pieces, so that each piece is read whole by
	// one reader.
	align int64
	ttfb  time.Duration // time to the response header (EWMA)
	// heard holds the sources that answered a request of this run, and
	// none since went silent: only their replicas take over a silent
	// request (a source whose request was silent would likely hold the
	// next one too).
	heard  map[int]bool
	counts [stealAdopt + 1]int
	// quiet: no reader is judged before then, because an idle replica
	// woke late: the process is short of CPU, so readers look slow.
	quiet time.Time
}

func newScheduler(stealMin int64) *scheduler {
	return &scheduler{stealMin: stealMin, off: stealMin <= 0, spans: make(map[*span]struct{}), changed: make(chan struct{}),
		align: pieceAlign, dropped: make(map[int]bool), heard: make(map[int]bool), bySource: make(map[int]float64)}
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
// lock, but read.
type spanReader struct {
	s        *scheduler
	sp       *span
	src      int                     // the index of its source
	cancel   context.CancelCauseFunc // of the request in flight, or nil
	replaced bool                    // a faster reader took over
	left     bool                    // detached from its span (leave, orphan)
	started  time.Time               // attached, or sent its latest request
	answered time.Time               // its latest request's header came (header), or it was sent
	header   bool                    // its latest request's header came
	blocked  time.Duration           // time since started spent handing chunks on
	// read counts the bytes its latest request delivered, as they arrive;
	// the only field written without the lock (received).
	read atomic.Int64
}

// received reports n more bytes read by r's request in flight. It takes
// no lock: it is called on every read of the body.
func (r *spanReader) received(n int) { r.read.Add(int64(n)) }

// newReaderLocked registers a reader of sp from source src.
func (s *scheduler) newReaderLocked(sp *span, src int, now time.Time) *spanReader {
	r := &spanReader{s: s, sp: sp, started: now, src: src}
	sp.readers = append(sp.readers, r)
	return r
}

// newSpanLocked registers a span [start, end) read by one new reader.
func (s *scheduler) newSpanLocked(start, end int64, src int, now time.Time) *spanReader {
	sp := &span{pos: start, end: end}
	s.spans[sp] = struct{}{}
	return s.newReaderLocked(sp, src, now)
}

// begin registers a span [start, end), a range the calling replica of
// source src took from the input, and returns its reader. An unmeasured
// mirror's replica reads only a probe of it (probeLocked): the rest is
// registered without a reader, for the others to adopt.
func (s *scheduler) begin(src int, start, end int64, now time.Time) *spanReader {
	s.mu.Lock()
	defer s.mu.Unlock()
	if probe := s.probeLocked(src); probe > 0 {
		// Rounded down: the probe asks for no more than probe bytes.
		if cut := (start + probe) / s.align * s.align; cut < end {
			s.orphanRangeLocked(cut, end)
			end = cut
		}
	}
	return s.newSpanLocked(start, end, src, now)
}

// remaining returns where the reader's next request starts and ends: the span's
// pos and end. ok is false when it has nothing left to do.
func (s *scheduler) remaining(r *spanReader) (start, end int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextLocked(r)
}

func (s *scheduler) nextLocked(r *spanReader) (start, end int64, ok bool) {
	if r.replaced || r.left || r.sp.done || r.sp.pos >= r.sp.end {
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

// request records the cancel function of the reader's request sent at
// now, or nil when it ended. A new request starts the window over which
// the reader's speed is measured: the time a failed request and the
// backoff before its retry took says nothing of the connection's speed. A
// reader already replaced, or whose span is done, is cancelled at once.
func (s *scheduler) request(r *spanReader, cancel context.CancelCauseFunc, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.cancel = cancel
	if cancel != nil {
		r.started, r.answered, r.blocked, r.header = now, now, 0, false
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

// answer reports that r's request got a 206 for its span at now, ttfb
// after it was sent (0: not measured): the span may be split or raced
// from now on.
func (s *scheduler) answer(r *spanReader, ttfb time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.sp.stealable = true
	r.answered, r.header = now, true
	s.heard[r.src] = true
	switch {
	case ttfb <= 0: // not measured
	case s.ttfb == 0:
		s.ttfb = ttfb
	default:
		s.ttfb = (3*s.ttfb + ttfb) / 4
	}
}

// finished reports that r's request read all it was to read at now: its
// speed since its answer, less the time spent handing chunks on, is a
// sample of its source's speed. A prefetched answer's is not: its first
// bytes waited in the socket's buffers since the probe.
func (s *scheduler) finished(r *spanReader, prefetched bool, now time.Time) {
	if prefetched {
		return
	}
	s.mu.Lock()
	d := now.Sub(r.answered) - r.blocked
	s.mu.Unlock()
	s.sample(r.src, r.read.Load(), d)
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
	s.wakeLocked()
}

// wakeLocked wakes the idle replicas: a span ended or work appeared.
func (s *scheduler) wakeLocked() {
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
// left), replaced, answered with the whole body, or failing the run. A
// span whose last reader leaves unfinished is unregistered too; that only
// happens when the run fails. A reader that left already is left alone.
func (s *scheduler) leave(r *spanReader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.left {
		return
	}
	sp := s.detachLocked(r)
	if !sp.done && (len(sp.readers) == 0 || sp.pos >= sp.end) {
		s.completeLocked(sp, r)
	}
}

// detachLocked removes r from its span's readers and returns the span.
func (s *scheduler) detachLocked(r *spanReader) *span {
	sp := r.sp
	r.cancel, r.left = nil, true
	for i, o := range sp.readers {
		if o == r {
			sp.readers = append(sp.readers[:i], sp.readers[i+1:]...)
			break
		}
	}
	return sp
}

// orphan detaches a reader whose source was dropped and that stops: its
// span stays registered without readers, and the first idle replica
// adopts it (next), so that its bytes are fetched from another source.
func (s *scheduler) orphan(r *spanReader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.left {
		return
	}
	sp := s.detachLocked(r)
	if sp.done || sp.pos >= sp.end {
		if !sp.done {
			s.completeLocked(sp, r)
		}
		return
	}
	s.wakeLocked() // there is work to adopt
}

// orphanRange registers [start, end), taken from the input by a replica
// that stops before fetching it, for the others to adopt.
func (s *scheduler) orphanRange(start, end int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orphanRangeLocked(start, end)
}

func (s *scheduler) orphanRangeLocked(start, end int64) {
	if end <= start {
		return
	}
	s.spans[&span{pos: start, end: end}] = struct{}{}
	s.wakeLocked()
}

// busy reports whether any span is still being fetched, and returns a
// channel closed when one ends.
func (s *scheduler) busy() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.spans) > 0, s.changed
}

// woke reports that an idle replica that began to wait at armed for at
// most stealPoll woke at now. After a late wake-up (by more than
// stealPoll) readers are not judged for judgeMax: the process is short of
// CPU, so readers look slow.
func (s *scheduler) woke(armed, now time.Time) {
	if now.Sub(armed)-stealPoll <= stealPoll {
		return
	}
	s.mu.Lock()
	s.quiet = now.Add(judgeMax)
	s.mu.Unlock()
}

// rateLocked is r's speed in bytes/s at now and whether it ran long
// enough to be judged.
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

// stealCounts are how often each way of stealing was used in a run.
type stealCounts struct{ Replaced, Halved, Raced, Adopted int }

func (s *scheduler) stats() stealCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return stealCounts{Replaced: s.counts[stealReplace], Halved: s.counts[stealHalve], Raced: s.counts[stealRace],
		Adopted: s.counts[stealAdopt]}
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
