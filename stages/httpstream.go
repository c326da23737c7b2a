package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
// concurrent use; each replica makes its own.
type httpFetcher struct {
	env    *pipeline.Env
	res    *pipeline.Resource
	io     pipeline.IO
	pool   *pipeline.Pool
	idle   time.Duration
	retry  httpx.RetryConfig
	budget *httpx.RetryBudget
	url    string // redacted, for messages

	// support is shared by the replicas of an http.reader (nil for the
	// stream source); see httpReader.
	support *rangeSupport
	// whole: the current try streams the whole body from 0 because the
	// server ignored its Range; a cut in it cannot be resumed.
	whole bool
	// sent, when set, counts the bytes this replica sent downstream.
	sent *atomic.Int64
	// sched and sr: the piece being fetched is a span of an http.reader's
	// scheduler, which other replicas may shorten, take over or race (see
	// scheduler.go); nil for a piece fetched alone.
	sched *scheduler
	sr    *spanReader
	// prefetched: the current try reads the probe's open answer, whose
	// first bytes waited in the socket's buffers since the probe: its
	// speed is no connection's, and is not sampled (512 KiB in 0.2 ms
	// made every connection of the primary look slow).
	prefetched bool
	// srcs and src: the sources of an http.reader with mirrors, and the
	// one this replica fetches from; nil for the resource's URL alone.
	srcs *sources
	src  *source
	// pieces are the piece hashes this replica verifies on the spans it
	// fetches (see pieces.go); nil when its stage leaves them to a
	// hash.tap.
	pieces *pipeline.PieceHashes
	// treq is the current try's request in env.Trace; nil when off.
	treq *pipeline.TraceRequest
}

// target is the URL of this replica's requests.
func (f *httpFetcher) target() string {
	if f.src != nil {
		return f.src.url
	}
	return f.res.URL
}

// useSource makes src this replica's source.
func (f *httpFetcher) useSource(src *source) {
	f.src, f.url = src, src.name
	if f.sr != nil {
		f.sched.setSource(f.sr, src.idx)
	}
}

// failover records that a request to this replica's source failed with
// err, and when that dropped the source, moves the replica to another
// (within the sources' per-source cap while a scheduler can take its
// range back). It reports whether the replica moved; errSourceGone when it
// must stop, its source dropped and no other with room.
func (f *httpFetcher) failover(err error) (moved bool, gone error) {
	if f.src == nil || !f.srcs.failed(f.src, err) {
		return false, nil
	}
	return f.moveOff()
}

// moveOff moves the replica off its dropped source; see failover.
func (f *httpFetcher) moveOff() (moved bool, gone error) {
	next := f.srcs.move(f.src, f.sched != nil)
	if next == nil {
		f.src = nil
		return false, errSourceGone
	}
	f.env.Log.Debug().Str("from", f.url).Str("to", next.name).Msg("moving a connection to another source")
	f.useSource(next)
	return true, nil
}

func newHTTPFetcher(env *pipeline.Env, edges pipeline.IO, buffer pipeline.ByteSize, idle time.Duration, retry httpx.RetryConfig, budget *httpx.RetryBudget) *httpFetcher {
	return &httpFetcher{
		env:    env,
		res:    env.Resource,
		io:     edges,
		pool:   env.Buffers.Pool(int(buffer)),
		idle:   idle,
		retry:  retry,
		budget: budget,
		url:    httpx.RedactURL(env.Resource.URL),
	}
}

// fetch downloads p and sends its bytes downstream in order, each chunk with
// its offset. Bytes once sent are never sent again: a retry asks for the
// first missing byte. It returns nil when the piece is complete, ctx's error
// when cancelled, or the permanent error (or the last transient one once the
// budgets are spent).
func (f *httpFetcher) fetch(ctx context.Context, p httpPiece) error {
	if !p.plain && p.end >= 0 && p.end <= p.start {
		return nil // an empty range; a plain GET still checks the answer
	}
	r := httpx.Retrier{Config: f.retry, Budget: f.budget}
	pos := p.start
	for {
		if f.sr != nil {
			// Each try asks for what is left of the span: another reader
			// may have emitted bytes of it or taken its upper part.
			start, end, ok := f.sched.next(f.sr)
			if !ok {
				return nil
			}
			if f.pieces != nil {
				// Whole pieces, to verify them; the bytes outside the
				// span are read for the digest alone.
				start, end = widen(f.pieces, f.res.Size, start, end)
			}
			pos, p.end = start, end
		}
		if f.src != nil && f.srcs.isDropped(f.src) {
			f.env.Trace.Event(f.env.Stage, f.io.Replica, "drop", pos, p.end, "")
			if _, gone := f.moveOff(); gone != nil {
				return gone
			}
			r = httpx.Retrier{Config: f.retry, Budget: f.budget}
		}
		before := pos
		err := f.try(ctx, p, &pos)
		if errors.Is(err, errPrefetchEnded) {
			continue // the rest with a request of its own; no retry spent
		}
		if f.src != nil && (err == nil || pos > before) {
			f.srcs.succeeded(f.src)
		}
		if err != nil && pos == p.start && f.support != nil {
			err = f.settle(ctx, err, p)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errSilent) {
			// Its span went to a source that answers; a silent mirror
			// is dropped (failed), and the replica moves on.
			if f.src != nil {
				if _, gone := f.failover(err); gone != nil {
					return gone
				}
			}
			return nil
		}
		if f.sr != nil {
			if _, _, ok := f.sched.next(f.sr); !ok {
				return nil // completed by another reader, or replaced
			}
		}
		if f.src != nil {
			moved, gone := f.failover(err)
			if gone != nil {
				return gone
			}
			if moved {
				// Another server: the retries spent on the dropped one
				// say nothing of it.
				r = httpx.Retrier{Config: f.retry, Budget: f.budget}
				continue
			}
			if mm := (*SourceMismatchError)(nil); errors.As(err, &mm) {
				return err // the last source left does not fit
			}
		}
		if pos > 0 && (f.whole || p.plain && !f.res.AcceptRanges) && httpx.IsTransient(err) {
			return fmt.Errorf("cannot resume at byte %d: the server does not accept ranges: %w", pos, err)
		}
		wait, giveUp := r.Next(ctx, err, pos > before)
		if giveUp != nil {
			return giveUp
		}
		f.env.Log.Warn().Err(err).Str("url", f.url).Int64("offset", pos).
			Int("attempt", r.Attempt()).Float64("backoff_s", wait.Seconds()).Msg("retrying")
		if f.env.Trace != nil {
			f.env.Trace.Event(f.env.Stage, f.io.Replica, "retry", pos, p.end, err.Error())
		}
		if err := f.backoff(ctx, wait); err != nil {
			return err
		}
	}
}

// backoff waits d before a retry, or less when the replica's source is
// dropped meanwhile (the next try fails over at once).
func (f *httpFetcher) backoff(ctx context.Context, d time.Duration) error {
	if f.src == nil {
		return httpx.Sleep(ctx, d)
	}
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

// try is one request for the rest of p from *pos. It advances *pos past
// every byte it sends downstream, also when it fails.
func (f *httpFetcher) try(ctx context.Context, p httpPiece, pos *int64) (err error) {
	defer func() { // the timeline's record of this request, if any
		if f.treq != nil && errors.Is(err, errPrefetchEnded) {
			f.treq.Done(nil) // the rest comes with a request of its own
		} else if f.treq != nil {
			f.treq.Done(err)
		}
		f.treq = nil
	}()
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if f.sr != nil {
		f.sched.request(f.sr, cancel)
		defer f.sched.request(f.sr, nil)
	}
	var idle *time.Timer
	if f.idle > 0 {
		// Reset on every read; firing cancels the request, which unblocks a
		// read that waits forever on a silent connection.
		idle = time.AfterFunc(f.idle, func() { cancel(httpx.ErrStalled) })
		defer idle.Stop()
	}
	defer func() {
		switch cause := context.Cause(reqCtx); {
		case err == nil || ctx.Err() != nil:
		case errors.Is(cause, httpx.ErrStalled):
			err = fmt.Errorf("%s: no bytes for %v at offset %d: %w", f.url, f.idle, *pos, httpx.ErrStalled)
		case errors.Is(cause, errSilent):
			err = fmt.Errorf("%s: %w", f.url, errSilent)
		}
	}()

	if *pos == 0 && (f.src == nil || f.src.primary) {
		if resp := httpx.TakePrefetched(f.res.Prefetched); resp != nil {
			f.treq = f.env.Trace.Prefetched(f.env.Stage, f.io.Replica, *pos, p.end)
			return f.tryPrefetched(ctx, reqCtx, resp, p, pos, idle)
		}
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, f.target(), nil)
	if err != nil {
		return fmt.Errorf("request for %s: %w", f.url, err)
	}
	if f.src != nil {
		f.srcs.begin(f.src)
		defer f.srcs.end(f.src)
	}
	req.Header.Set("Accept-Encoding", "identity")
	ranged := !(p.plain && *pos == 0)
	f.whole = false
	ifRange := ""
	if ranged {
		spec := "bytes=" + strconv.FormatInt(*pos, 10) + "-"
		if !p.openEnded && p.end >= 0 {
			spec += strconv.FormatInt(p.end-1, 10)
		}
		req.Header.Set("Range", spec)
		ifRange = f.res.Validator()
		if f.src != nil {
			ifRange = f.srcs.ifRange(f.src)
		}
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
	}

	sent := time.Now()
	f.treq = f.env.Trace.RequestSent(f.env.Stage, f.io.Replica, *pos, p.end)
	resp, err := f.res.HTTP.Do(req) // adds the run's headers
	if err != nil {
		return requestError(err, f.url)
	}
	f.treq.HeaderCame()
	defer resp.Body.Close()

	if e := f.env.Log.Debug(); e.Enabled() {
		e.Int("replica", f.io.Replica).Str("range", req.Header.Get("Range")).Int("status", resp.StatusCode).
			Float64("ttfb_s", time.Since(sent).Seconds()).Msg("request answered")
	}
	want, err := f.check(resp, p, *pos, ranged, ifRange)
	if err != nil {
		if _, ok := err.(*httpx.HTTPError); ok {
			// A small error body is read so the connection can be reused.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		}
		return err
	}
	if f.sr != nil {
		if resp.StatusCode != http.StatusPartialContent || f.whole {
			// Only a 206 for the exact range is split or raced; this
			// reader streams on alone.
			f.sched.leave(f.sr)
			f.sr = nil
		} else {
			f.sched.answered(f.sr, time.Since(sent))
			if f.pieces != nil {
				return f.streamPieces(ctx, resp.Body, pos, want, idle)
			}
			return f.streamSpan(ctx, resp.Body, pos, want, idle)
		}
	}
	return f.stream(ctx, resp.Body, pos, want, idle)
}

// tryPrefetched is try on the probe's open answer (Resource.Prefetched):
// a 206 for the resource's first bytes, or a 200 with the whole body. It is
// checked as the answer to a request for exactly what it holds, and read
// as far as p goes: when p goes further, it returns errPrefetchEnded and
// fetch asks for the rest as usual (on the same connection, whose body was
// read to its end); when p ends sooner, the rest of the answer is dropped.
// Cancelling reqCtx (a stall, a stolen span) closes the answer, since its
// own request knows nothing of this reader.
func (f *httpFetcher) tryPrefetched(ctx, reqCtx context.Context, resp *http.Response, p httpPiece, pos *int64, idle *time.Timer) error {
	defer resp.Body.Close()
	stop := context.AfterFunc(reqCtx, func() { resp.Body.Close() })
	defer stop()
	ranged := resp.StatusCode == http.StatusPartialContent
	asked := p
	if ranged {
		_, last, _, err := httpx.ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return &httpx.RangeError{Range: pipeline.Range{Start: 0, End: p.end}, Status: resp.StatusCode,
				ContentRange: resp.Header.Get("Content-Range"), Reason: err.Error(), URL: f.url}
		}
		asked = httpPiece{start: 0, end: last + 1}
	}
	covered, err := f.check(resp, asked, 0, ranged, "")
	if err != nil {
		return err
	}
	want, body := covered, io.Reader(resp.Body)
	if p.end >= 0 && (covered < 0 || p.end < covered) {
		want, body = p.end, io.LimitReader(resp.Body, p.end)
	}
	if f.sr != nil {
		if !ranged || f.whole {
			f.sched.leave(f.sr)
			f.sr = nil
		} else {
			f.sched.answered(f.sr, 0) // its round trip was the probe's
			f.prefetched = true
			defer func() { f.prefetched = false }()
			if f.pieces != nil {
				err = f.streamPieces(ctx, body, pos, want, idle)
			} else {
				err = f.streamSpan(ctx, body, pos, want, idle)
			}
		}
	}
	if f.sr == nil {
		err = f.stream(ctx, body, pos, want, idle)
	}
	if err == nil && ranged && want == covered && (p.end < 0 || *pos < p.end) && *pos < f.res.Size {
		return errPrefetchEnded
	}
	return err
}

// errPrefetchEnded: the probe's answer ended before the piece; fetch asks
// for the rest.
var errPrefetchEnded = errors.New("the probe's answer ended before the piece")

// drainLimit is the most of an unwanted body read to keep its connection
// for the next request; a longer rest closes the connection instead.
const drainLimit = 64 << 10

// stream reads body into pooled buffers, each filled as far as the body
// allows before it is sent, and advances *pos past every byte sent. want is
// the offset where the body must end, or -1 for "at EOF".
func (f *httpFetcher) stream(ctx context.Context, body io.Reader, pos *int64, want int64, idle *time.Timer) error {
	for {
		c := f.pool.Get(*pos)
		n, rerr := f.fill(body, c.Data, idle)
		end := *pos + int64(n)
		if want >= 0 && end > want {
			c.Release()
			return fmt.Errorf("%w: %s sent more than the %d bytes expected", httpx.ErrResourceChanged, f.url, want)
		}
		if n == 0 {
			c.Release()
		} else {
			c.Data = c.Data[:n]
			// Waiting for room downstream is not a stall of the server.
			if idle != nil {
				idle.Stop()
			}
			if err := f.io.Send(ctx, c); err != nil {
				return err
			}
			if idle != nil {
				idle.Reset(f.idle)
			}
			*pos = end
			f.treq.Delivered(int64(n))
			if f.sent != nil {
				f.sent.Add(int64(n))
			}
			if f.src != nil {
				f.src.bytes.Add(int64(n))
			}
		}
		switch {
		case rerr == io.EOF:
			if want >= 0 && *pos < want {
				return fmt.Errorf("%s: body ended at byte %d of %d: %w", f.url, *pos, want, io.ErrUnexpectedEOF)
			}
			return nil
		case rerr != nil:
			return fmt.Errorf("%s: reading body at byte %d: %w", f.url, *pos, rerr)
		}
	}
}

// streamSpan is stream for a reader of a scheduler's span: it reads no
// further than the span's end (which another replica may lower), and emits
// only the bytes the scheduler lets it claim, so that bytes a racing reader
// already emitted are dropped. It returns nil once the span needs nothing
// more from it: complete, or taken over by another reader.
func (f *httpFetcher) streamSpan(ctx context.Context, body io.Reader, pos *int64, want int64, idle *time.Timer) error {
	first, began := *pos, time.Now()
	var blocked time.Duration
	for {
		limit := f.sched.limit(f.sr)
		if limit <= *pos {
			// A halving moved the end to what this reader already read:
			// the span is complete.
			f.sched.claim(f.sr, *pos, 0)
			return nil
		}
		c := f.pool.Get(*pos)
		buf := c.Data
		if left := limit - *pos; left < int64(len(buf)) {
			buf = buf[:left]
		}
		n, rerr := f.fill(body, buf, idle)
		end := *pos + int64(n)
		if want >= 0 && end > want {
			c.Release()
			return fmt.Errorf("%w: %s sent more than the %d bytes expected", httpx.ErrResourceChanged, f.url, want)
		}
		from, to, done := f.sched.claim(f.sr, *pos, n)
		if to > from {
			c.Data = c.Data[from-*pos : to-*pos]
			c.Offset = from
			if idle != nil {
				idle.Stop()
			}
			t := time.Now()
			if err := f.io.Send(ctx, c); err != nil {
				return err
			}
			d := time.Since(t)
			blocked += d
			f.sched.sent(f.sr, d)
			if idle != nil {
				idle.Reset(f.idle)
			}
			f.treq.Delivered(to - from)
			if f.sent != nil {
				f.sent.Add(to - from)
			}
			if f.src != nil {
				f.src.bytes.Add(to - from)
			}
		} else {
			c.Release()
		}
		*pos = end
		if done || rerr == io.EOF && *pos >= want {
			if rerr == nil && want > *pos && want-*pos <= drainLimit {
				// Keep the connection for the next request.
				_, _ = io.CopyN(io.Discard, body, want-*pos)
			}
			if (rerr == nil || rerr == io.EOF) && !f.prefetched {
				f.sched.sample(f.sr.src, *pos-first, time.Since(began)-blocked)
			}
			return nil
		}
		switch {
		case rerr == io.EOF:
			return fmt.Errorf("%s: body ended at byte %d of %d: %w", f.url, *pos, want, io.ErrUnexpectedEOF)
		case rerr != nil:
			return fmt.Errorf("%s: reading body at byte %d: %w", f.url, *pos, rerr)
		}
	}
}

// fill reads into buf until it is full, the body ends or a read fails. A
// full buffer returns a nil error; an ended body io.EOF.
func (f *httpFetcher) fill(body io.Reader, buf []byte, idle *time.Timer) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if m > 0 && idle != nil {
			idle.Reset(f.idle)
		}
		if f.sr != nil {
			f.sr.read.Add(int64(m))
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
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
