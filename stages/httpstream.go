package stages

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/pipeline"
)

// This file holds what http.source and http.reader share: one replica's
// loop that downloads a piece of the resource into pooled buffers, checks
// every answer, and retries from the first missing byte.

// maxReadBuffer bounds the buffer option: a chunk must fit an int and a sane
// amount of memory.
const maxReadBuffer = 1 << 30

// BodyConfig is what the two HTTP stages share: how they read a body and
// retry a broken one. Both embed it with `koanf:",squash"`.
type BodyConfig struct {
	Buffer            pipeline.ByteSize `koanf:"buffer" help:"size of each chunk read from the network"`
	IdleTimeout       time.Duration     `koanf:"idle_timeout" help:"a body that delivers no bytes for this long is retried; 0 disables"`
	httpx.RetryConfig `koanf:",squash"`
}

// DefaultBody is the body config both HTTP stages start from.
var DefaultBody = BodyConfig{Buffer: 256 << 10, IdleTimeout: 30 * time.Second, RetryConfig: httpx.DefaultRetry}

// RetryPolicy is the stage's retry policy, which the probe follows too.
func (c BodyConfig) RetryPolicy() httpx.RetryConfig { return c.RetryConfig }

// SetRetryPolicy replaces the stage's retry policy (dlflow.Request.Retry).
func (c *BodyConfig) SetRetryPolicy(p httpx.RetryConfig) { c.RetryConfig = p }

var (
	_ httpx.RetryPolicy       = BodyConfig{}
	_ httpx.RetryPolicySetter = &HTTPReaderConfig{}
	_ httpx.RetryPolicySetter = &HTTPSourceConfig{}
)

func (c BodyConfig) validate() error {
	if c.Buffer < 1 || c.Buffer > maxReadBuffer {
		return fmt.Errorf("buffer must be between 1B and %v, got %v", pipeline.ByteSize(maxReadBuffer), c.Buffer)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("idle_timeout must not be negative, got %v", c.IdleTimeout)
	}
	return c.RetryConfig.Validate()
}

// memory is what a replica holds: the buffer being filled, besides the
// chunks it already sent.
func (c BodyConfig) memory() pipeline.Memory {
	return pipeline.Memory{ChunkSize: int64(c.Buffer), PerReplica: int64(c.Buffer)}
}

// checkResource is the Start check of both stages: they need a probed
// resource with a client.
func checkResource(res *pipeline.Resource) error {
	switch {
	case res == nil:
		return errors.New("no resource to download; probe the URL first")
	case res.URL == "":
		return errors.New("the resource has no URL")
	case res.HTTP == nil:
		return errors.New("the resource has no HTTP client; build it with httpx.Probe")
	}
	return nil
}

// httpPiece is a unit of work: the bytes [start, end) of the resource, end -1
// meaning to the end of the body.
type httpPiece struct {
	start, end int64
	// plain: the first try at offset 0 is a GET without Range (the stream
	// source, or a reader given Range{0,-1}), expecting 200.
	plain bool
	// openEnded: ranged tries ask for bytes=pos- instead of bytes=pos-last,
	// because the piece runs to the end of the resource.
	openEnded bool
}

// httpFetcher downloads pieces for one replica of a stage. It is not safe for
// concurrent use; each replica makes its own. What one fetch carries is in
// its fetchJob, not here.
type httpFetcher struct {
	env    *pipeline.Env
	res    *pipeline.Resource
	io     pipeline.IO
	pool   *pipeline.Pool
	idle   time.Duration
	retry  httpx.RetryConfig
	budget *httpx.RetryBudget
	url    string // redacted, for messages

	// support is what the answer to the range at 0 showed, shared by the
	// replicas of an http.reader (the stream source has its own); see
	// httpReader.
	support *rangeSupport
	// sent counts the bytes this replica sent downstream.
	sent *atomic.Int64
	// srcs are the sources of the run and src the one this replica
	// fetches from: with mirrors, those of an http.reader (sources.go);
	// else the resource's URL alone (soloSources), which is never
	// dropped.
	srcs *sources
	src  *source
	// pieces are the piece hashes this replica verifies on the spans it
	// fetches (see pieces.go); nil when its stage leaves them to a
	// hash.tap.
	pieces *pipeline.PieceHashes
}

// fetchJob is the state of one fetch of a piece: how far it got and, while
// the piece is a span of an http.reader's scheduler, its reader there.
type fetchJob struct {
	p   httpPiece
	pos int64 // the first byte not sent yet
	// sr is the reader of the span being fetched, which other replicas
	// may shorten, take over or race (see scheduler.go); nil for a piece
	// fetched alone, and from the time a try got an answer that cannot be
	// shared (a 200; see alone).
	sr *spanReader
	// shared: the piece was a span of a scheduler, which takes its range
	// back if this replica stops (orphan); so the replica moves only to a
	// source with room.
	shared bool
	// whole: the current try streams the whole body from 0 because the
	// server ignored its Range; a cut in it cannot be resumed.
	whole bool
	// prefetched: the current try reads the probe's open answer, whose
	// first bytes waited in the socket's buffers since the probe: its
	// speed is no connection's, and is not sampled (512 KiB in 0.2 ms
	// made every connection of the primary look slow).
	prefetched bool
	// treq is the current try's request in env.Trace; nil when off (its
	// methods then do nothing).
	treq *pipeline.TraceRequest
}

// alone detaches the job from its span: the answer cannot be shared (a
// 200), so this reader streams on alone and the span is left.
func (j *fetchJob) alone() {
	if j.sr != nil {
		j.sr.s.leave(j.sr)
		j.sr = nil
	}
}

// target is the URL of this replica's requests.
func (f *httpFetcher) target() string { return f.src.url }

// useSource makes src this replica's source.
func (f *httpFetcher) useSource(src *source) { f.src, f.url = src, src.name }

// failover records that a request to this replica's source failed with
// err, and when that dropped the source, moves the replica to another
// (within the sources' per-source cap while a scheduler can take its
// range back). It reports whether the replica moved; errSourceGone when it
// must stop, its source dropped and no other with room.
func (f *httpFetcher) failover(j *fetchJob, err error) (moved bool, gone error) {
	if !f.srcs.failed(f.src, err) {
		return false, nil
	}
	return f.moveOff(j)
}

// moveOff moves the replica off its dropped source; see failover.
func (f *httpFetcher) moveOff(j *fetchJob) (moved bool, gone error) {
	next := f.srcs.move(f.src, j.shared)
	if next == nil {
		f.src = nil
		return false, errSourceGone
	}
	f.env.Log.Debug().Str("from", f.url).Str("to", next.name).Msg("moving a connection to another source")
	f.useSource(next)
	if j.sr != nil {
		j.sr.s.setSource(j.sr, next.idx)
	}
	return true, nil
}

// newHTTPFetcher returns the fetcher of one replica. support and sent are
// shared with the stage's other replicas, or the replica's own.
func newHTTPFetcher(env *pipeline.Env, edges pipeline.IO, body BodyConfig, budget *httpx.RetryBudget, support *rangeSupport, sent *atomic.Int64) *httpFetcher {
	srcs := soloSources(env.Resource, env.Log)
	return &httpFetcher{
		env:     env,
		res:     env.Resource,
		io:      edges,
		pool:    env.Buffers.Pool(int(body.Buffer)),
		idle:    body.IdleTimeout,
		retry:   body.RetryConfig,
		budget:  budget,
		url:     httpx.RedactURL(env.Resource.URL),
		support: support,
		sent:    sent,
		srcs:    srcs,
		src:     srcs.list[0],
	}
}

// fetch downloads p and sends its bytes downstream in order, each chunk with
// its offset; sr, when not nil, is the scheduler's reader of p (a span).
// Bytes once sent are never sent again: a retry asks for the first missing
// byte. It returns nil when the piece is complete (or, for a span, needs
// nothing more from this reader), ctx's error when cancelled, or the
// permanent error (or the last transient one once the budgets are spent).
func (f *httpFetcher) fetch(ctx context.Context, p httpPiece, sr *spanReader) error {
	if !p.plain && p.end >= 0 && p.end <= p.start {
		return nil // an empty range; a plain GET still checks the answer
	}
	j := &fetchJob{p: p, pos: p.start, sr: sr, shared: sr != nil}
	r := httpx.Retrier{Config: f.retry, Budget: f.budget}
	for {
		if !f.aim(j) {
			return nil
		}
		if f.srcs.isDropped(f.src) {
			f.env.Trace.Event(f.env.Stage, f.io.Replica, "drop", j.pos, j.p.end, "")
			if _, gone := f.moveOff(j); gone != nil {
				return gone
			}
			r = httpx.Retrier{Config: f.retry, Budget: f.budget}
		}
		before := j.pos
		err := f.try(ctx, j)
		if errors.Is(err, errPrefetchEnded) {
			continue // the rest with a request of its own; no retry spent
		}
		if err == nil || j.pos > before {
			f.srcs.succeeded(f.src)
		}
		if err != nil && j.pos == j.p.start {
			err = f.settle(ctx, err, j.p)
		}
		switch v, err := f.afterTry(ctx, j, err); v {
		case tryDone:
			return err
		case tryMoved:
			// Another server: the retries spent on the dropped one say
			// nothing of it.
			r = httpx.Retrier{Config: f.retry, Budget: f.budget}
			continue
		}
		wait, giveUp := r.Next(ctx, err, j.pos > before)
		if giveUp != nil {
			return giveUp
		}
		f.env.Log.Warn().Err(err).Str("url", f.url).Int64("offset", j.pos).
			Int("attempt", r.Attempt()).Float64("backoff_s", wait.Seconds()).Msg("retrying")
		f.env.Trace.Event(f.env.Stage, f.io.Replica, "retry", j.pos, j.p.end, err.Error())
		if err := f.backoff(ctx, wait); err != nil {
			return err
		}
	}
}

// aim sets what the job's next try asks for. A span's is what is left of
// it, since another reader may have emitted bytes of it or taken its upper
// part, widened to whole pieces to verify them (the bytes outside the span
// are read for the digest alone). False: nothing is left for this reader.
func (f *httpFetcher) aim(j *fetchJob) bool {
	if j.sr == nil {
		return true
	}
	start, end, ok := j.sr.s.remaining(j.sr)
	if !ok {
		return false
	}
	if f.pieces != nil {
		start, end = widen(f.pieces, f.res.Size, start, end)
	}
	j.pos, j.p.end = start, end
	return true
}

// What fetch does after a try that did not read the probe's answer to its
// end.
const (
	tryDone  = iota // return the error (nil: the piece needs nothing more)
	tryMoved        // retry at once: the replica moved to another source
	tryRetry        // retry as the retry policy says
)

// afterTry decides what fetch does after a try that failed with err (nil
// when it succeeded), and the error to return or retry.
func (f *httpFetcher) afterTry(ctx context.Context, j *fetchJob, err error) (int, error) {
	switch {
	case err == nil:
		return tryDone, nil
	case ctx.Err() != nil:
		return tryDone, ctx.Err()
	case errors.Is(err, errSilent):
		// Its span went to a source that answers; a silent mirror is
		// dropped (failed), and the replica moves on.
		_, gone := f.failover(j, err)
		return tryDone, gone
	}
	if j.sr != nil {
		if _, _, ok := j.sr.s.remaining(j.sr); !ok {
			return tryDone, nil // completed by another reader, or replaced
		}
	}
	moved, gone := f.failover(j, err)
	switch mm := (*SourceMismatchError)(nil); {
	case gone != nil:
		return tryDone, gone
	case moved:
		return tryMoved, nil
	case errors.As(err, &mm):
		return tryDone, err // the last source left does not fit
	case j.pos > 0 && (j.whole || j.p.plain && !f.res.AcceptRanges) && httpx.IsTransient(err):
		return tryDone, fmt.Errorf("cannot resume at byte %d: the server does not accept ranges: %w", j.pos, err)
	}
	return tryRetry, err
}

// backoff waits d before a retry, or less when the replica's source is
// dropped meanwhile (the next try fails over at once).
func (f *httpFetcher) backoff(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-f.src.gone:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// settle resolves the answers that depend on what the range at 0 showed,
// for a range of which nothing was sent: a range covered by the whole body
// from 0 is done (nil); a 200 with the whole body to another range waits for
// the answer at 0 and is then dropped, or stays a *httpx.RangeError when the
// server does honour ranges.
func (f *httpFetcher) settle(ctx context.Context, err error, p httpPiece) error {
	if errors.Is(err, errRangeCovered) {
		return nil
	}
	var re *httpx.RangeError
	if p.start == 0 || !errors.As(err, &re) || re.Status != http.StatusOK {
		return err
	}
	ignored, werr := f.support.wait(ctx)
	switch {
	case werr != nil:
		return werr
	case !ignored:
		return err
	}
	f.env.Log.Debug().Int64("start", p.start).Int64("end", p.end).
		Msg("server ignores ranges; the stream from offset 0 carries this range")
	return nil
}

// requestError turns a client error into one that names the URL redacted and
// keeps the cause for errors.Is/As.
func requestError(err error, redacted string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("GET %s: %w", redacted, err)
}
