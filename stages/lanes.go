package stages

import (
	"sync"

	"github.com/dlflow/dlflow/pipeline"
)

// This file holds what each replica of an http.reader is fetching now,
// for pipeline.RangeReporter: the range of its current fetch, its end as
// the scheduler moves it (a halving lowers it), and its source.

// lane is the range one replica fetches. The replica writes it; whoever
// reads ConnectionRanges reads it. Guarded by mu.
type lane struct {
	mu         sync.Mutex
	on         bool
	start, end int64
	base       int64       // the replica's sent bytes when the range began
	sr         *spanReader // the scheduler's reader of the range, or nil
	src        string      // redacted
}

// begin records that the replica fetches [start, end) from src, as sr
// when the range is a span of the scheduler; sent is its bytes so far.
func (l *lane) begin(start, end int64, sr *spanReader, src string, sent int64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.on, l.start, l.end, l.sr, l.src, l.base = true, start, end, sr, src, sent
	l.mu.Unlock()
}

// source records that the replica moved to src.
func (l *lane) source(src string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.src = src
	l.mu.Unlock()
}

// stop records that the replica fetches nothing.
func (l *lane) stop() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.on, l.sr = false, nil
	l.mu.Unlock()
}

// ranges returns what the lanes fetch now; sent holds each one's bytes.
// A span's end and whether its reader still works on it are read from
// the scheduler, under its lock (taken once per scheduler, not with a
// lane's lock held), so that the ranges returned are of one instant.
func ranges(lanes []*lane, sent []int64) []pipeline.ConnectionRange {
	out := make([]pipeline.ConnectionRange, len(lanes))
	srs := make([]*spanReader, len(lanes))
	for i, l := range lanes {
		l.mu.Lock()
		if l.on {
			var done int64
			if i < len(sent) {
				done = max(sent[i]-l.base, 0)
			}
			out[i] = pipeline.ConnectionRange{Start: l.start, End: l.end, Done: done, Source: l.src}
			srs[i] = l.sr
		}
		l.mu.Unlock()
	}
	var locked *scheduler
	defer func() {
		if locked != nil {
			locked.mu.Unlock()
		}
	}()
	for i, sr := range srs {
		if sr == nil {
			continue
		}
		if sr.s != locked {
			if locked != nil {
				locked.mu.Unlock()
			}
			locked = sr.s
			locked.mu.Lock()
		}
		if sr.replaced || sr.left || sr.sp.done || sr.sp.pos >= sr.sp.end {
			out[i] = pipeline.ConnectionRange{} // replaced, completed or handed back
			continue
		}
		out[i].End = sr.sp.end
	}
	return out
}

// ConnectionRanges returns the range each reader (connection) is
// fetching now, indexed as ConnectionBytes.
func (s *httpReader) ConnectionRanges() []pipeline.ConnectionRange {
	lanes, sent := s.sent.lanesSnapshot()
	return ranges(lanes, sent)
}

var _ pipeline.RangeReporter = (*httpReader)(nil)
