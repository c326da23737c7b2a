package pipeline

import (
	"sync"
	"time"
)

// Trace records a run's timeline: every request of the stages that fetch
// ranges (when it was sent, when its header came, the bytes it delivered
// over time, how it ended), the events that re-plan the work (steals,
// retries, dropped sources), and the intervals each stage that receives
// with IO.Recv was busy. It is for a timeline of where a download's time
// goes (dlflow get --trace-json, dlflow bench --timeline).
//
// A nil *Trace is off: its methods do nothing and return nil handles,
// whose methods do nothing either, so a stage calls them unconditionally
// and pays a nil check per call. A Trace is safe for concurrent use by
// the stages of a run; each *TraceRequest belongs to the goroutine that
// made it until its Done. Read it with Snapshot once the run is over.
type Trace struct {
	start time.Time
	mu    sync.Mutex
	reqs  []*TraceRequest
	evts  []TraceEvent
	busy  []*traceBusy
}

// TraceSample is the bytes a request had delivered downstream At a time
// since the trace started.
type TraceSample struct {
	At    time.Duration `json:"at_ns"`
	Bytes int64         `json:"bytes"`
}

// TraceRequest is one request of a reader: the range it asked for
// ([Start, End), End -1 for open-ended), its times since the trace
// started (Header 0: no header came), the bytes it delivered downstream,
// sampled about every traceSampleEvery, and the error that ended it, "" for
// none. Prefetched is the probe's own answer, which the reader took over:
// its Sent and Header are when the reader took it.
type TraceRequest struct {
	Stage      string        `json:"stage"`
	Reader     int           `json:"reader"`
	Start      int64         `json:"start"`
	End        int64         `json:"end"`
	Prefetched bool          `json:"prefetched,omitempty"`
	Sent       time.Duration `json:"sent_ns"`
	Header     time.Duration `json:"header_ns,omitempty"`
	Ended      time.Duration `json:"ended_ns"`
	Bytes      int64         `json:"bytes"`
	Samples    []TraceSample `json:"samples,omitempty"`
	Err        string        `json:"error,omitempty"`

	t    *Trace
	last time.Duration // of the last sample
}

// traceSampleEvery is how often a request's bytes are sampled, at most.
const traceSampleEvery = 50 * time.Millisecond

// TraceEvent is something that re-planned a reader's work at a time since
// the trace started: Kind is "steal" (Detail says how, such as "split a
// range"; [Start, End) is what the reader took over), "retry" (Detail is
// the error; Start the offset asked next) or "drop" (the reader's source
// was dropped and it moved off).
type TraceEvent struct {
	Stage  string        `json:"stage"`
	Reader int           `json:"reader"`
	Kind   string        `json:"kind"`
	At     time.Duration `json:"at_ns"`
	Start  int64         `json:"start"`
	End    int64         `json:"end"`
	Detail string        `json:"detail,omitempty"`
}

// TraceBusy is when one replica of a stage was busy: the intervals
// between taking a chunk with IO.Recv and asking for the next one, times
// since the trace started, those less than a millisecond apart merged.
type TraceBusy struct {
	Stage     string             `json:"stage"`
	Replica   int                `json:"replica"`
	Intervals [][2]time.Duration `json:"intervals_ns"`
	Total     time.Duration      `json:"total_ns"`
}

// TraceSnapshot is what a Trace recorded: Requests in the order they
// ended.
type TraceSnapshot struct {
	Elapsed  time.Duration  `json:"elapsed_ns"`
	Requests []TraceRequest `json:"requests"`
	Events   []TraceEvent   `json:"events"`
	Busy     []TraceBusy    `json:"busy"`
}

// NewTrace starts a trace; its times count from now.
func NewTrace() *Trace { return &Trace{start: time.Now()} }

func (t *Trace) since() time.Duration { return time.Since(t.start) }

// RequestSent records that reader of stage sent a request for [start,
// end) now, and returns its handle (nil when t is nil).
func (t *Trace) RequestSent(stage string, reader int, start, end int64) *TraceRequest {
	if t == nil {
		return nil
	}
	now := t.since()
	return &TraceRequest{t: t, Stage: stage, Reader: reader, Start: start, End: end, Sent: now, last: now}
}

// Prefetched records that reader of stage took over the probe's answer
// for [start, end) now; its header came with the probe.
func (t *Trace) Prefetched(stage string, reader int, start, end int64) *TraceRequest {
	r := t.RequestSent(stage, reader, start, end)
	if r != nil {
		r.Prefetched, r.Header = true, r.Sent
	}
	return r
}

// Event records a steal, retry or drop of reader of stage now.
func (t *Trace) Event(stage string, reader int, kind string, start, end int64, detail string) {
	if t == nil {
		return
	}
	e := TraceEvent{Stage: stage, Reader: reader, Kind: kind, At: t.since(), Start: start, End: end, Detail: detail}
	t.mu.Lock()
	t.evts = append(t.evts, e)
	t.mu.Unlock()
}

// HeaderCame records that the request's response header came now.
func (r *TraceRequest) HeaderCame() {
	if r != nil {
		r.Header = r.t.since()
	}
}

// Delivered records that the request delivered n more bytes downstream.
func (r *TraceRequest) Delivered(n int64) {
	if r == nil {
		return
	}
	r.Bytes += n
	if now := r.t.since(); now-r.last >= traceSampleEvery {
		r.Samples = append(r.Samples, TraceSample{At: now, Bytes: r.Bytes})
		r.last = now
	}
}

// Done records that the request ended now, with err (nil: it did what was
// asked of it, or was cut short by a steal). The handle is not used after.
func (r *TraceRequest) Done(err error) {
	if r == nil {
		return
	}
	r.Ended = r.t.since()
	if len(r.Samples) == 0 || r.Samples[len(r.Samples)-1].Bytes != r.Bytes {
		r.Samples = append(r.Samples, TraceSample{At: r.Ended, Bytes: r.Bytes})
	}
	if err != nil {
		r.Err = err.Error()
	}
	r.t.mu.Lock()
	r.t.reqs = append(r.t.reqs, r)
	r.t.mu.Unlock()
}

// traceBusy is one replica's busy intervals, owned by its goroutine.
type traceBusy struct {
	t     *Trace
	b     TraceBusy
	since time.Duration // when the current busy interval began; -1 none
}

// busyOf returns the recorder of a replica of stage (nil when t is nil).
func (t *Trace) busyOf(stage string, replica int) *traceBusy {
	if t == nil {
		return nil
	}
	b := &traceBusy{t: t, b: TraceBusy{Stage: stage, Replica: replica}, since: -1}
	t.mu.Lock()
	t.busy = append(t.busy, b)
	t.mu.Unlock()
	return b
}

// idle ends the current busy interval: the replica asks for input.
func (b *traceBusy) idle() {
	if b == nil || b.since < 0 {
		return
	}
	now := b.t.since()
	if n := len(b.b.Intervals); n > 0 && b.since-b.b.Intervals[n-1][1] < time.Millisecond {
		b.b.Intervals[n-1][1] = now
	} else {
		b.b.Intervals = append(b.b.Intervals, [2]time.Duration{b.since, now})
	}
	b.b.Total += now - b.since
	b.since = -1
}

// working starts a busy interval: the replica took a chunk.
func (b *traceBusy) working() {
	if b != nil {
		b.since = b.t.since()
	}
}

// Snapshot returns what t recorded (the zero snapshot for nil). Call it
// once the run is over: a request still open is not in it.
func (t *Trace) Snapshot() TraceSnapshot {
	if t == nil {
		return TraceSnapshot{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TraceSnapshot{Elapsed: t.since(), Requests: make([]TraceRequest, 0, len(t.reqs)), Events: append([]TraceEvent{}, t.evts...), Busy: []TraceBusy{}}
	for _, r := range t.reqs {
		s.Requests = append(s.Requests, *r)
	}
	for _, b := range t.busy {
		if len(b.b.Intervals) > 0 {
			s.Busy = append(s.Busy, b.b)
		}
	}
	return s
}
