package stages

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/pipeline"
)

// HTTPReaderConfig configures http.reader.
type HTTPReaderConfig struct {
	BodyConfig `koanf:",squash"`
	StealMin   pipeline.ByteSize `koanf:"steal_min" help:"smallest range an idle worker takes over from a slower one (work stealing, rounded up to 4KiB); 0 disables stealing and the replacing or racing of slow connections, and asks for one range per request"`
	MaxRequest pipeline.ByteSize `koanf:"max_request" help:"most bytes one request asks for, taking the queued ranges that continue its own; 0 (automatic) is the worker's share: what is left to fetch divided among the workers; a value up to the splitter's piece, or a reorder window that binds, asks for one range per request"`
}

var httpReaderDef = pipeline.Def[HTTPReaderConfig]{
	Type:     "http.reader",
	Provides: []pipeline.Capability{pipeline.ProvidesConnections, pipeline.ProvidesMirrors, pipeline.ProvidesPieces},
	Summary:  "fetches byte ranges with HTTP range requests, one connection per worker",
	Consumes: pipeline.Ranges,
	Produces: pipeline.Bytes,
	Defaults: HTTPReaderConfig{BodyConfig: DefaultBody, StealMin: 1 << 20},
	New: func(cfg HTTPReaderConfig) (pipeline.Stage, error) {
		if err := cfg.validate(); err != nil {
			return nil, err
		}
		if cfg.StealMin < 0 {
			return nil, fmt.Errorf("steal_min must not be negative, got %v", cfg.StealMin)
		}
		if cfg.MaxRequest < 0 {
			return nil, fmt.Errorf("max_request must not be negative, got %v", cfg.MaxRequest)
		}
		return &httpReader{cfg: cfg}, nil
	},
	Memory:   func(cfg HTTPReaderConfig) pipeline.Memory { return cfg.memory() },
	Connects: true,
}

func init() { builtin(httpReaderDef) }

// ShareRequests reports whether a reader with c asks for its whole share of
// the file in one request (max_request automatic, stealing on): the probe
// may then ask for the whole file and leave its answer to the reader of
// the share at offset 0, which reads it to the end of that share.
func (c HTTPReaderConfig) ShareRequests() bool { return c.MaxRequest == 0 && c.StealMin > 0 }

// httpReader turns ranges into bytes. Each replica (workers: N, one
// connection each) takes a range from its input, with the ranges queued
// behind it that continue it up to its share of the download (max_request;
// see rangetake.go), sends `Range: bytes=start-(end-1)` for them with
// If-Range, checks that the answer is a 206 whose Content-Range is exactly
// that range of the probed length with no Content-Encoding, and sends the
// body downstream as chunks at their offsets. A body cut short, broken or stalled is retried from its first
// missing byte; bytes already sent are never sent again.
//
// Range{Start: 0, End: -1} (size unknown, or no range support) is a plain
// GET streamed to EOF. httpx.ErrResourceChanged is the error of a 200 that answers
// a failed If-Range. Permanent errors fail the stage.
//
// A server may advertise ranges and still answer 200 with the whole body
// (nginx with max_ranges 0 behind a proxy that adds Accept-Ranges, some
// CDNs). The replicas share what the answer to the range at offset 0
// showed (rangeSupport): if it was 200 with the whole body, that replica
// streams the whole body to EOF, and every other range is dropped without a
// byte, since that stream covers it; if it was 206, a 200 to any other range
// is a *httpx.RangeError. A 200 is never written at an offset other than 0.
//
// The replicas share the work of the ranges in flight (scheduler.go): a
// replica whose input is empty takes over the upper half of the range that
// will take longest to finish (at least steal_min bytes, on a 4 KiB
// boundary), replaces a connection far slower than the others (its request
// is cancelled and its rest fetched anew), or races the slow tail of a
// range on a second connection, the first to arrive winning. Each byte is
// sent downstream exactly once, and only bytes of ranges the input handed
// out, so reorder windows and hash taps see no duplicates and no extra
// credits. steal_min: 0 turns all of it off. Each replica asks the
// scheduler's policy what to do next (scheduler.next in policy.go: take
// ranges, steal, wait, move to another source, stop), carries it out
// (readerLoop) and reports what happened, with the time, back to it.
type httpReader struct {
	cfg     HTTPReaderConfig
	budget  httpx.RetryBudget
	support *rangeSupport // of the current run; set by Start
	sched   *scheduler    // of the current run; set by Start
	take    *rangeTaker   // of the current run; set by Start
	sent    replicaBytes  // bytes sent per replica, for ReplicaBytes
	// srcs are the sources of the current or last run, nil without
	// mirrors (see sources.go); an atomic for SourceStats.
	srcs atomic.Pointer[sources]
	// pieces are the piece hashes the replicas verify in the current run
	// (set by Start); nil leaves them to the graph's hash.tap.
	pieces *pipeline.PieceHashes
}

var (
	_ pipeline.Starter  = (*httpReader)(nil)
	_ pipeline.Finisher = (*httpReader)(nil)
)

// Start resets the retry budget and the range support of the run and checks
// the resource.
func (s *httpReader) Start(ctx context.Context, env *pipeline.Env) error {
	s.budget.Reset(s.cfg.Total)
	s.sent.reset()
	s.support = newRangeSupport()
	s.sched = newScheduler(alignPiece(s.cfg.StealMin))
	s.take = newRunTaker(env, int64(s.cfg.MaxRequest))
	if !env.Resource.SizeKnown() {
		s.sched.off = true // nothing to steal: ranges run to the end of the body
	}
	if s.sched.off {
		// A large request would have nobody to share its tail.
		s.take = newRangeTaker(0)
	}
	srcs := newSources(env.Resource, env.Workers, env.Log)
	s.srcs.Store(srcs)
	s.sched.multi = srcs != nil
	if srcs != nil {
		srcs.onDrop = s.sched.drop
	}
	s.pieces = nil
	if env.Resource != nil && env.Resource.Pieces != nil {
		switch p := env.Resource.Pieces; {
		case p.Length > maxVerifiedPiece:
			env.Log.Debug().Int64("piece", p.Length).Msg("pieces too long for the reader to hold; the hash.tap verifies them")
		case s.cfg.StealMin == 0:
			env.Log.Debug().Msg("with steal_min 0 the reader does not verify pieces; the hash.tap does")
		default:
			if err := checkPieces(env.Resource); err != nil {
				return err
			}
			s.sched.align, s.pieces = p.Length, p
		}
	}
	if env.Have != nil && env.Have.Skip(0) > 0 {
		// Byte 0 is on disk from an earlier run, so no reader will ask for
		// the range at 0 and nothing could cover a range answered with the
		// whole body: such an answer is an error.
		s.support.decide(false)
	}
	return checkResource(env.Resource)
}

// rangeSupport records, once per run, whether the server honoured the
// Range request for offset 0. Replicas that got a 200 to another range
// wait for it: they cannot tell on their own whether that 200 is a server
// that ignores ranges (the stream from 0 covers their range) or a broken
// answer.
//
// The wait cannot hang: range.splitter hands out the range at 0 first, so
// by the time a 200 comes back for a later range, some replica holds the
// range at 0 (zeroTaken) and will decide. A range source that never hands
// out offset 0 (a resume that has byte 0, a custom source) leaves zeroTaken
// false, and the 200 is an error at once.
type rangeSupport struct {
	once      sync.Once
	decided   chan struct{} // closed once ignored is set
	ignored   bool          // the range at 0 was answered with the whole body
	zeroTaken atomic.Bool   // a replica received the range at 0
}

func newRangeSupport() *rangeSupport { return &rangeSupport{decided: make(chan struct{})} }

// decide records whether ranges are ignored; only the first call counts,
// and it returns what was recorded. A 206 to any range decides false (bytes
// at offsets are being written, so a whole body from 0 would duplicate
// them); a 200 to the range at 0 decides true.
func (s *rangeSupport) decide(ignored bool) bool {
	s.once.Do(func() {
		s.ignored = ignored
		close(s.decided)
	})
	return s.ignored
}

// known returns whether the server ignores ranges, and false for ok while
// that is not decided yet.
func (s *rangeSupport) known() (ignored, ok bool) {
	select {
	case <-s.decided:
		return s.ignored, true
	default:
		return false, false
	}
}

// wait blocks until the answer to the range at 0 is known; false at once
// when no replica took the range at 0.
func (s *rangeSupport) wait(ctx context.Context) (ignored bool, err error) {
	if !s.zeroTaken.Load() {
		s.decide(false)
	}
	select {
	case <-s.decided:
		return s.ignored, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// errRangeCovered is what try returns for a range whose bytes the whole
// body streamed from offset 0 carries; fetch drops the range.
var errRangeCovered = errors.New("range covered by the whole body streamed from offset 0")

// Run fetches ranges until its input is closed; see httpReader.
func (s *httpReader) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	if err := checkResource(env.Resource); err != nil {
		return err
	}
	sched, take, support := s.sched, s.take, s.support
	if sched == nil {
		// Run without Start: one range per request, nothing shared, and
		// no replica can tell the others, so a whole body is accepted
		// only for a range at 0.
		sched, take, support = newScheduler(0), newRangeTaker(0), newRangeSupport()
		support.decide(false)
	}
	f := newHTTPFetcher(env, edges, s.cfg.BodyConfig, &s.budget, support, s.sent.counter(edges.Replica))
	f.pieces = s.pieces
	f.lane = s.sent.lane(edges.Replica)
	if srcs := s.srcs.Load(); srcs != nil && s.sched != nil {
		src := srcs.assign(edges.Replica)
		if src == nil {
			return nil // more replicas than the sources have room for
		}
		f.srcs = srcs
		f.useSource(src)
		defer func() {
			if f.src != nil {
				srcs.release(f.src)
			}
		}()
	}
	l := &readerLoop{env: env, edges: edges, f: f, sched: sched, take: take, in: edges.Ranges}
	defer l.stopPoll()
	return l.run(ctx)
}

// readerLoop is one replica of http.reader at work: it asks its scheduler
// what to do next (scheduler.next), carries that out, and asks again. It
// decides nothing itself.
type readerLoop struct {
	env   *pipeline.Env
	edges pipeline.IO
	f     *httpFetcher
	sched *scheduler
	take  *rangeTaker
	in    <-chan pipeline.Range // nil once closed
	// carry is a range received while extending a range; fetched next.
	carry *pipeline.Range
	// empty: the last take found the input empty.
	empty bool
	poll  *time.Timer // bounds a wait for work to steal; made on first use
}

func (l *readerLoop) run(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		q := query{src: l.f.src.idx, carry: l.carry != nil, empty: l.empty, closed: l.in == nil}
		l.empty = false
		var err error
		switch a := l.sched.next(q, time.Now()); a.kind {
		case actStop:
			return nil
		case actMove:
			if !l.move() {
				return l.gone()
			}
		case actSteal:
			err = l.f.takeOver(ctx, a)
		case actTake:
			if r, ok := l.takeRange(ctx, a.share); ok {
				err = l.fetchRange(ctx, r)
			}
		case actWait:
			var r pipeline.Range
			var ok bool
			if r, ok, err = l.wait(ctx, a); ok {
				err = l.fetchRange(ctx, r)
			}
		}
		switch {
		case errors.Is(err, errSourceGone):
			return l.gone()
		case err != nil:
			return err
		}
	}
}

// move moves the replica off its dropped source; false when no other
// source has room.
func (l *readerLoop) move() bool {
	l.env.Trace.Event(l.env.Stage, l.edges.Replica, "drop", -1, -1, "")
	next := l.f.srcs.move(l.f.src, true)
	if l.f.src = next; next == nil {
		return false
	}
	l.f.useSource(next)
	return true
}

// gone ends a replica whose source was dropped with no other to move to:
// what it took from the input goes back to the others.
func (l *readerLoop) gone() error {
	if l.carry != nil {
		l.sched.orphanRange(l.carry.Start, l.carry.End)
	}
	return nil
}

// takeRange takes the range the replica carries, or ranges from the input
// without waiting, asking for share of a full request. ok is false when it
// took none: the input is empty (l.empty) or closed (l.in nil).
func (l *readerLoop) takeRange(ctx context.Context, share float64) (r pipeline.Range, ok bool) {
	if l.carry != nil {
		r = *l.carry
		l.carry = nil
		return r, true
	}
	r, c, res := l.take.try(ctx, l.in, share)
	switch res {
	case takeRange:
		l.carry = c
		return r, true
	case takeClosed:
		l.in = nil
	default:
		l.empty = true
	}
	return r, false
}

// wait carries out actWait: it returns a range taken from the input, or
// ok false when woken by the scheduler or the poll, or the input closed.
func (l *readerLoop) wait(ctx context.Context, a action) (r pipeline.Range, ok bool, err error) {
	in := l.in
	if !a.input {
		in = nil
	}
	var tick <-chan time.Time
	if a.poll {
		tick = l.armPoll()
	}
	armed := time.Now()
	r, c, res, err := l.take.wait(ctx, in, a.changed, tick, a.share)
	now := time.Now()
	l.edges.Waited(now.Sub(armed)) // idle, for the metrics' busy time
	switch {
	case err != nil:
		return r, false, err
	case res == takeClosed:
		l.in = nil
	case res == takeNone && a.poll:
		l.sched.woke(armed, now)
	case res == takeRange:
		l.carry = c
		return r, true, nil
	}
	return r, false, nil
}

// armPoll (re)starts the timer that bounds a wait for work to steal.
func (l *readerLoop) armPoll() <-chan time.Time {
	if l.poll == nil {
		l.poll = time.NewTimer(stealPoll)
	} else {
		l.poll.Reset(stealPoll)
	}
	return l.poll.C
}

func (l *readerLoop) stopPoll() {
	if l.poll != nil {
		l.poll.Stop()
	}
}

// fetchRange checks and fetches a range the replica took from the input:
// as a span of the scheduler, or alone while nothing is shared.
func (l *readerLoop) fetchRange(ctx context.Context, r pipeline.Range) error {
	f := l.f
	if r.Start == 0 {
		f.support.zeroTaken.Store(true)
	}
	switch size := f.res.Size; {
	case r.Start < 0 || (r.End >= 0 && r.End < r.Start):
		return fmt.Errorf("invalid range [%d, %d)", r.Start, r.End)
	case size >= 0 && (r.End > size || r.Start > size):
		return fmt.Errorf("range [%d, %d) lies beyond the resource's %d bytes", r.Start, r.End, size)
	}
	if ignored, ok := f.support.known(); ok && ignored && r.Start > 0 {
		return nil // the stream of the range at 0 carries these bytes
	}
	p := httpPiece{start: r.Start, end: r.End}
	if r.End < 0 {
		// To the end of the body: plain GET from 0, open-ended Range
		// otherwise.
		p.plain, p.openEnded = r.Start == 0, true
	}
	if l.sched.off || r.End < 0 {
		return f.fetch(ctx, p, nil)
	}
	sr := l.sched.begin(f.src.idx, r.Start, r.End, time.Now())
	_, p.end, _ = l.sched.remaining(sr) // an unmeasured mirror's is cut to a probe
	return f.fetchSpan(ctx, sr, p, true)
}

var stealNames = [...]string{stealReplace: "replaced a slow connection", stealHalve: "split a range", stealRace: "racing a slow or stalled range",
	stealAdopt: "adopted the range of a dropped source"}

// takeOver fetches what is left of the span another reader worked on,
// which next attached a.sr to.
func (f *httpFetcher) takeOver(ctx context.Context, a action) error {
	f.env.Trace.Event(f.env.Stage, f.io.Replica, "steal", a.start, a.end, stealNames[a.how])
	f.env.Log.Debug().Int64("start", a.start).Int64("end", a.end).Str("how", stealNames[a.how]).
		Msg("took over work of a slower connection")
	return f.fetchSpan(ctx, a.sr, httpPiece{start: a.start, end: a.end}, a.ok)
}

// fetchSpan fetches p as the reader sr of a span; ok false means there is
// nothing left of it to fetch. The reader leaves the span when done, or
// hands it back to the others (orphan) when its source is gone.
func (f *httpFetcher) fetchSpan(ctx context.Context, sr *spanReader, p httpPiece, ok bool) error {
	var err error
	if ok {
		err = f.fetch(ctx, p, sr)
	}
	if errors.Is(err, errSourceGone) {
		sr.s.orphan(sr)
	} else {
		sr.s.leave(sr)
	}
	return err
}

// Finish logs how the replicas shared the work of the run.
func (s *httpReader) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	if s.sched != nil {
		if st := s.sched.stats(); st != (stealCounts{}) {
			env.Log.Debug().Int("replaced", st.Replaced).Int("split", st.Halved).Int("raced", st.Raced).Int("adopted", st.Adopted).
				Msg("work stealing")
		}
	}
	return nil
}
