package stages

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// This file holds how a try reads a checked answer's body into pooled
// buffers and sends it downstream: alone (stream), or as a reader of a
// scheduler's span (streamSpan; streamPieces in pieces.go), whose bytes
// another reader may emit first.

// stream reads body into pooled buffers, each filled as far as the body
// allows before it is sent, and advances j.pos past every byte sent. want
// is the offset where the body must end, or -1 for "at EOF".
func (f *httpFetcher) stream(ctx context.Context, j *fetchJob, body io.Reader, want int64, idle *time.Timer) error {
	for {
		c := f.pool.Get(j.pos)
		n, rerr := f.fill(j, body, c.Data, idle)
		end := j.pos + int64(n)
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
			j.pos = end
			f.delivered(j, int64(n))
		}
		switch {
		case rerr == io.EOF:
			if want >= 0 && j.pos < want {
				return fmt.Errorf("%s: body ended at byte %d of %d: %w", f.url, j.pos, want, io.ErrUnexpectedEOF)
			}
			return nil
		case rerr != nil:
			return fmt.Errorf("%s: reading body at byte %d: %w", f.url, j.pos, rerr)
		}
	}
}

// delivered counts n bytes sent downstream.
func (f *httpFetcher) delivered(j *fetchJob, n int64) {
	j.treq.Delivered(n)
	f.sent.Add(n)
	f.src.bytes.Add(n)
}

// streamSpan is stream for a reader of a scheduler's span: it reads no
// further than the span's end (which another replica may lower), and emits
// only the bytes the scheduler lets it claim, so that bytes a racing reader
// already emitted are dropped. It returns nil once the span needs nothing
// more from it: complete, or taken over by another reader.
func (f *httpFetcher) streamSpan(ctx context.Context, j *fetchJob, body io.Reader, want int64, idle *time.Timer) error {
	sr := j.sr
	sched := sr.s
	for {
		limit := sched.limit(sr)
		if limit <= j.pos {
			// A halving moved the end to what this reader already read:
			// the span is complete.
			sched.claim(sr, j.pos, 0)
			return nil
		}
		c := f.pool.Get(j.pos)
		buf := c.Data
		if left := limit - j.pos; left < int64(len(buf)) {
			buf = buf[:left]
		}
		n, rerr := f.fill(j, body, buf, idle)
		end := j.pos + int64(n)
		if want >= 0 && end > want {
			c.Release()
			return fmt.Errorf("%w: %s sent more than the %d bytes expected", httpx.ErrResourceChanged, f.url, want)
		}
		from, to, done := sched.claim(sr, j.pos, n)
		if to > from {
			c.Data = c.Data[from-j.pos : to-j.pos]
			c.Offset = from
			if err := f.sendSpan(ctx, j, c, idle); err != nil {
				return err
			}
		} else {
			c.Release()
		}
		j.pos = end
		if done || rerr == io.EOF && j.pos >= want {
			if rerr == nil && want > j.pos && want-j.pos <= drainLimit {
				// Keep the connection for the next request.
				_, _ = io.CopyN(io.Discard, body, want-j.pos)
			}
			if rerr == nil || rerr == io.EOF {
				sched.finished(sr, j.prefetched, time.Now())
			}
			return nil
		}
		switch {
		case rerr == io.EOF:
			return fmt.Errorf("%s: body ended at byte %d of %d: %w", f.url, j.pos, want, io.ErrUnexpectedEOF)
		case rerr != nil:
			return fmt.Errorf("%s: reading body at byte %d: %w", f.url, j.pos, rerr)
		}
	}
}

// sendSpan sends a chunk a span's reader claimed, and reports the time it
// waited for room downstream, which is not the connection's.
func (f *httpFetcher) sendSpan(ctx context.Context, j *fetchJob, c pipeline.Chunk, idle *time.Timer) error {
	if idle != nil {
		idle.Stop()
	}
	t := time.Now()
	err := f.io.Send(ctx, c)
	j.sr.s.sent(j.sr, time.Since(t))
	if idle != nil {
		idle.Reset(f.idle)
	}
	if err == nil {
		f.delivered(j, int64(len(c.Data)))
	}
	return err
}

// fill reads into buf until it is full, the body ends or a read fails. A
// full buffer returns a nil error; an ended body io.EOF.
func (f *httpFetcher) fill(j *fetchJob, body io.Reader, buf []byte, idle *time.Timer) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if m > 0 && idle != nil {
			idle.Reset(f.idle)
		}
		if j.sr != nil {
			j.sr.received(m)
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
