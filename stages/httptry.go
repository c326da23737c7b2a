package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// This file holds one try of a fetch: a request for the rest of the piece
// (or the probe's open answer, for the bytes at 0), its answer checked
// (httpcheck.go) and its body streamed downstream (httpbody.go).

// try is one request for the rest of j's piece from j.pos. It advances
// j.pos past every byte it sends downstream, also when it fails.
func (f *httpFetcher) try(ctx context.Context, j *fetchJob) (err error) {
	defer func() { // the timeline's record of this request, if any
		if errors.Is(err, errPrefetchEnded) {
			j.treq.Done(nil) // the rest comes with a request of its own
		} else {
			j.treq.Done(err)
		}
		j.treq = nil
	}()
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if j.sr != nil {
		j.sr.s.request(j.sr, cancel, time.Now())
		defer func() {
			if j.sr != nil {
				j.sr.s.request(j.sr, nil, time.Now())
			}
		}()
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
			err = fmt.Errorf("%s: no bytes for %v at offset %d: %w", f.url, f.idle, j.pos, httpx.ErrStalled)
		case errors.Is(cause, errSilent):
			err = fmt.Errorf("%s: %w", f.url, errSilent)
		}
	}()

	if j.pos == 0 && f.src.primary {
		if resp := httpx.TakePrefetched(f.res.Prefetched); resp != nil {
			// The probe's answer holds the first bytes: adopt it.
			j.treq = f.env.Trace.Prefetched(f.env.Stage, f.io.Replica, j.pos, j.p.end)
			return f.tryPrefetched(ctx, reqCtx, resp, j, idle)
		}
	}
	return f.tryRequest(ctx, reqCtx, j, idle)
}

// tryRequest sends the request of a try and reads its answer.
func (f *httpFetcher) tryRequest(ctx, reqCtx context.Context, j *fetchJob, idle *time.Timer) error {
	req, ranged, ifRange, err := f.newRequest(reqCtx, j)
	if err != nil {
		return err
	}
	f.srcs.begin(f.src)
	defer f.srcs.end(f.src)
	j.whole = false
	sent := time.Now()
	j.treq = f.env.Trace.RequestSent(f.env.Stage, f.io.Replica, j.pos, j.p.end)
	resp, err := f.res.HTTP.Do(req) // adds the run's headers
	if err != nil {
		return requestError(err, f.url)
	}
	came := time.Now()
	j.treq.HeaderCame()
	defer resp.Body.Close()

	if e := f.env.Log.Debug(); e.Enabled() {
		e.Int("replica", f.io.Replica).Str("range", req.Header.Get("Range")).Int("status", resp.StatusCode).
			Float64("ttfb_s", came.Sub(sent).Seconds()).Msg("request answered")
	}
	want, whole, err := f.check(resp, j.p, j.pos, ranged, ifRange)
	if err != nil {
		if _, ok := err.(*httpx.HTTPError); ok {
			// A small error body is read so the connection can be reused.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		}
		return err
	}
	j.whole = whole
	return f.streamAnswer(ctx, j, resp.Body, want, resp.StatusCode == http.StatusPartialContent, came.Sub(sent), idle)
}

// newRequest is the request of a try: a plain GET for a plain piece at 0,
// else one for the range from j.pos, with If-Range.
func (f *httpFetcher) newRequest(reqCtx context.Context, j *fetchJob) (req *http.Request, ranged bool, ifRange string, err error) {
	req, err = http.NewRequestWithContext(reqCtx, http.MethodGet, f.target(), nil)
	if err != nil {
		return nil, false, "", fmt.Errorf("request for %s: %w", f.url, err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	ranged = !(j.p.plain && j.pos == 0)
	if ranged {
		spec := "bytes=" + strconv.FormatInt(j.pos, 10) + "-"
		if !j.p.openEnded && j.p.end >= 0 {
			spec += strconv.FormatInt(j.p.end-1, 10)
		}
		req.Header.Set("Range", spec)
		ifRange = f.srcs.ifRange(f.src)
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
	}
	return req, ranged, ifRange, nil
}

// streamAnswer streams a checked answer's body, which ends at want (-1:
// at EOF). Only a 206 for the exact range (partial) of a span is split or
// raced; with any other answer this reader leaves its span and streams on
// alone. ttfb is the time to the answer's header, 0 when not measured.
func (f *httpFetcher) streamAnswer(ctx context.Context, j *fetchJob, body io.Reader, want int64, partial bool, ttfb time.Duration, idle *time.Timer) error {
	if j.sr != nil && (!partial || j.whole) {
		j.alone()
	}
	if j.sr == nil {
		return f.stream(ctx, j, body, want, idle)
	}
	j.sr.s.answer(j.sr, ttfb, time.Now())
	if f.pieces != nil {
		return f.streamPieces(ctx, j, body, want, idle)
	}
	return f.streamSpan(ctx, j, body, want, idle)
}

// tryPrefetched is try on the probe's open answer (Resource.Prefetched):
// a 206 for the resource's first bytes, or a 200 with the whole body. It is
// checked as the answer to a request for exactly what it holds, and read
// as far as the piece goes: when the piece goes further, it returns
// errPrefetchEnded and fetch asks for the rest as usual (on the same
// connection, whose body was read to its end); when the piece ends sooner,
// the rest of the answer is dropped. Cancelling reqCtx (a stall, a stolen
// span) closes the answer, since its own request knows nothing of this
// reader.
func (f *httpFetcher) tryPrefetched(ctx, reqCtx context.Context, resp *http.Response, j *fetchJob, idle *time.Timer) error {
	defer resp.Body.Close()
	stop := context.AfterFunc(reqCtx, func() { resp.Body.Close() })
	defer stop()
	p := j.p
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
	covered, whole, err := f.check(resp, asked, 0, ranged, "")
	if err != nil {
		return err
	}
	if whole {
		j.whole = true
	}
	want, body := covered, io.Reader(resp.Body)
	if p.end >= 0 && (covered < 0 || p.end < covered) {
		want, body = p.end, io.LimitReader(resp.Body, p.end)
	}
	j.prefetched = true
	err = f.streamAnswer(ctx, j, body, want, ranged, 0, idle) // its round trip was the probe's
	j.prefetched = false
	if err == nil && ranged && want == covered && (p.end < 0 || j.pos < p.end) && j.pos < f.res.Size {
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
