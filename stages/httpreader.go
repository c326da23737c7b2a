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
// credits. steal_min: 0 turns all of it off.
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
	srcs := newSources(env.Resource, env.Workers, env.Log)
	s.srcs.Store(srcs)
	s.sched.multi = srcs != nil
	if srcs != nil {
		srcs.onDrop = s.sched.forget
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
	f := newHTTPFetcher(env, edges, s.cfg.Buffer, s.cfg.IdleTimeout, s.cfg.RetryConfig, &s.budget)
	f.support = s.support
	f.sent = s.sent.counter(edges.Replica)
	f.pieces = s.pieces
	if f.support == nil {
		// Run without Start: no replica can tell the others, so a whole
		// body is accepted only for a range at 0.
		f.support = newRangeSupport()
		f.support.decide(false)
	}
	size := env.Resource.Size
	if srcs := s.srcs.Load(); srcs != nil && s.sched != nil {
		f.srcs = srcs
		src := srcs.assign(edges.Replica)
		if src == nil {
			return nil // more replicas than the sources have room for
		}
		f.useSource(src)
		defer func() {
			if f.src != nil {
				srcs.release(f.src)
			}
		}()
	}
	sched := s.sched
	if s.cfg.StealMin == 0 || !env.Resource.SizeKnown() {
		sched = nil // nothing to steal: ranges run to the end of the body
	}
	var poll *time.Timer
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	take := s.take
	if take == nil || sched == nil {
		// Run without Start, or nothing to steal: a large request would
		// have nobody to share its tail, so one range per request.
		take = newRangeTaker(0)
	}
	in := edges.Ranges
	var carry *pipeline.Range // received while extending a range; taken next
	// gone ends a replica whose source was dropped with no other to move
	// to: what it took from the input goes back to the others.
	gone := func() error {
		if carry != nil {
			s.sched.orphanRange(carry.Start, carry.End)
		}
		return nil
	}
	// ended is what Run returns after a fetch failed with err.
	ended := func(err error) error {
		if errors.Is(err, errSourceGone) {
			return gone()
		}
		return err
	}
	// armPoll (re)starts the timer that bounds a wait for work to steal.
	armPoll := func() <-chan time.Time {
		if poll == nil {
			poll = time.NewTimer(stealPoll)
		} else {
			poll.Reset(stealPoll)
		}
		return poll.C
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if f.src != nil && f.srcs.isDropped(f.src) {
			env.Trace.Event(env.Stage, edges.Replica, "drop", -1, -1, "")
			next := f.srcs.move(f.src, true)
			if f.src = next; next == nil {
				return gone()
			}
			f.useSource(next)
		}
		if sched != nil && carry == nil && f.srcs != nil && !sched.tooSlow(f.srcIndex()) {
			// A dropped source's ranges first: they lie below the new ones.
			if sr := sched.adopt(f.srcIndex()); sr != nil {
				if err := f.takeOver(ctx, sched, sr, stealAdopt); err != nil {
					return ended(err)
				}
				continue
			}
		}
		if sched != nil && carry == nil && f.srcs != nil && sched.tooSlow(f.srcIndex()) {
			// Its source is far slower than another: what it took, a
			// faster connection would take back from it. It waits, and
			// takes work only when no other connection is busy.
			if busy, changed := sched.busy(); busy {
				tick := armPoll()
				armed := time.Now()
				select {
				case <-changed:
				case <-tick:
				case <-ctx.Done():
					return ctx.Err()
				}
				edges.Waited(time.Since(armed))
				continue
			} else if in == nil {
				return nil
			}
		}
		if sched != nil && carry == nil && f.srcs != nil && sched.probing(f.srcIndex()) {
			// A mirror not measured yet probes the tail of a range the
			// others hold rather than take one from the input (and cut
			// it, probeRange): see probeTailLocked.
			if sr, how := sched.steal(f.srcIndex()); sr != nil {
				if err := f.takeOver(ctx, sched, sr, how); err != nil {
					return ended(err)
				}
				continue
			}
		}
		var r pipeline.Range
		got := false
		if carry != nil {
			r, got, carry = *carry, true, nil
		} else if in != nil {
			next, c, res := take.try(ctx, in, s.sched.shareOf(f.srcIndex()))
			switch {
			case res == takeRange:
				r, carry, got = next, c, true
			case res == takeClosed && sched == nil:
				return nil
			case res == takeClosed:
				in = nil
			}
		}
		if !got && sched == nil {
			// Block for the next range.
			next, c, res, err := take.wait(ctx, in, nil, nil, 1)
			if err != nil || res == takeClosed {
				return err
			}
			r, carry = next, c
			got = res == takeRange
		}
		if !got {
			// Nothing queued: help the other replicas, or wait for work
			// (or for the others to finish, once the input is closed).
			if sr, how := sched.steal(f.srcIndex()); sr != nil {
				if err := f.takeOver(ctx, sched, sr, how); err != nil {
					return ended(err)
				}
				continue
			}
			busy, changed := sched.busy()
			if in == nil && !busy {
				return nil
			}
			tick := armPoll()
			armed := time.Now()
			next, c, res, err := take.wait(ctx, in, changed, tick, sched.shareOf(f.srcIndex()))
			edges.Waited(time.Since(armed)) // idle, for the metrics' busy time
			switch {
			case err != nil:
				return err
			case res == takeClosed:
				in = nil
				continue
			case res == takeNone:
				sched.late(time.Since(armed) - stealPoll)
				continue
			}
			r, carry = next, c
		}
		if r.Start == 0 {
			f.support.zeroTaken.Store(true)
		}
		switch {
		case r.Start < 0 || (r.End >= 0 && r.End < r.Start):
			return fmt.Errorf("invalid range [%d, %d)", r.Start, r.End)
		case size >= 0 && (r.End > size || r.Start > size):
			return fmt.Errorf("range [%d, %d) lies beyond the resource's %d bytes", r.Start, r.End, size)
		}
		if ignored, ok := f.support.known(); ok && ignored && r.Start > 0 {
			// The stream of the range at 0 carries these bytes.
			continue
		}
		if sched != nil && f.srcs != nil {
			r.End = sched.probeRange(f.srcIndex(), r.Start, r.End)
		}
		p := httpPiece{start: r.Start, end: r.End}
		if r.End < 0 {
			// To the end of the body: plain GET from 0, open-ended Range
			// otherwise.
			p.plain, p.openEnded = r.Start == 0, true
		}
		var err error
		if sched != nil && r.End >= 0 {
			err = f.fetchSpan(ctx, sched, sched.begin(r.Start, r.End, f.srcIndex()), p, true)
		} else {
			err = f.fetch(ctx, p)
		}
		if err != nil {
			return ended(err)
		}
	}
}

var stealNames = [...]string{stealReplace: "replaced a slow connection", stealHalve: "split a range", stealRace: "racing a slow tail",
	stealAdopt: "adopted the range of a dropped source"}

// takeOver fetches what is left of the span another reader worked on,
// which steal or adopt (how) attached sr to.
func (f *httpFetcher) takeOver(ctx context.Context, sched *scheduler, sr *spanReader, how int) error {
	start, end, ok := sched.next(sr)
	f.env.Trace.Event(f.env.Stage, f.io.Replica, "steal", start, end, stealNames[how])
	f.env.Log.Debug().Int64("start", start).Int64("end", end).Str("how", stealNames[how]).
		Msg("took over work of a slower connection")
	return f.fetchSpan(ctx, sched, sr, httpPiece{start: start, end: end}, ok)
}

// srcIndex is the index of the replica's source, 0 for the resource's URL.
func (f *httpFetcher) srcIndex() int {
	if f.src == nil {
		return 0
	}
	return f.src.idx
}

// fetchSpan fetches p as the reader sr of a span of sched; ok false means
// there is nothing left of it to fetch.
func (f *httpFetcher) fetchSpan(ctx context.Context, sched *scheduler, sr *spanReader, p httpPiece, ok bool) error {
	f.sched, f.sr = sched, sr
	var err error
	if ok {
		err = f.fetch(ctx, p)
	}
	switch {
	case f.sr == nil: // the answer could not be shared (a 200)
	case errors.Is(err, errSourceGone):
		sched.orphan(f.sr)
	default:
		sched.leave(f.sr)
	}
	f.sched, f.sr = nil, nil
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
