package stages

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// This file holds the sources of http.reader: the primary URL of the
// resource and its mirrors (Resource.Mirrors). The replicas of one run
// share a sources value. Each replica works on one source at a time, at
// most perSource replicas on each (the worker count spread over the
// sources, so that --connections is per source); the scheduler
// (scheduler.go) moves ranges between them by speed.
//
// A mirror is checked on each answer: a 206 whose Content-Range total is
// not the primary's size, a 200 to a range (a server that ignores ranges,
// or an If-Range that did not match), or validators (ETag, Last-Modified)
// that differ from the primary's when nothing guards the bytes
// (Resource.Guarded), or from the mirror's own first answer, drop it. So
// does a permanent error, or sourceFailLimit failed requests in a row of
// any source. A dropped source is never asked again in the run; its
// replicas move to a source with room, or hand their range back to the
// others (scheduler.orphan) and stop. The last source left is never
// dropped: its errors follow the retry policy and fail the run, as with
// one URL.

// sourceFailLimit is how many requests to one source may fail in a row
// (over all its replicas) before it is dropped while another serves.
const sourceFailLimit = 3

// errSourceGone ends a replica whose source was dropped when no other
// source has room for another connection; its range went back to the
// scheduler.
var errSourceGone = errors.New("source dropped and no other source has room")

// SourceMismatchError is an answer of a source that does not fit the
// resource: a mirror's size, validators or ranges that differ from the
// primary's, or a piece of any source that fails its digest. It drops the
// source (while another serves); it is never an httpx.ErrResourceChanged,
// which would restart the whole download.
type SourceMismatchError struct {
	URL    string // redacted
	Reason string
}

func (e *SourceMismatchError) Error() string {
	return fmt.Sprintf("%s does not serve the same file: %s", e.URL, e.Reason)
}

// source is one server of the resource. url never changes; the rest is
// guarded by sources.mu unless atomic. Its requests go through the
// resource's HTTP, which adds the run's headers: its client sends the
// credentials among them only to the origin that owns them
// (httpx.NewClientOn), and a mirror's own userinfo to the mirror.
type source struct {
	idx     int
	url     string // as given: may hold credentials
	name    string // redacted
	primary bool

	bytes  atomic.Int64
	errors atomic.Int64
	// gone is closed when the source is dropped: it wakes its replicas
	// that wait to retry it.
	gone chan struct{}

	conns   int
	fails   int
	dropped string
	// etag and lastMod are the validators of the mirror's first answer;
	// learned says they were read.
	etag, lastMod string
	learned       bool
	open          int // requests in flight
	openSince     time.Time
	active        time.Duration
}

// sources is shared by the replicas of one http.reader in one run.
type sources struct {
	res       *pipeline.Resource
	log       zerolog.Logger
	perSource int
	// onDrop, when set, is told the index of a source dropped (the
	// scheduler forgets its speed). Set before the run, called under mu.
	onDrop func(idx int)

	mu   sync.Mutex
	list []*source
}

// newSources returns the sources of a run over workers replicas, or nil
// when there is only the primary (or the size is unknown, so that no
// answer of a mirror could be checked).
func newSources(res *pipeline.Resource, workers int, log zerolog.Logger) *sources {
	if res == nil || len(res.Mirrors) == 0 || !res.SizeKnown() {
		return nil
	}
	urls := res.Sources()
	s := &sources{res: res, log: log, perSource: max((workers+len(urls)-1)/len(urls), 1)}
	for i, u := range urls {
		s.list = append(s.list, &source{idx: i, url: u, name: httpx.RedactURL(u), primary: i == 0, gone: make(chan struct{})})
	}
	return s
}

// soloSources returns the sources of a fetch from the resource's URL
// alone: one, the primary, which is never dropped (the last source left
// never is), so that a fetcher treats one URL and several alike.
func soloSources(res *pipeline.Resource, log zerolog.Logger) *sources {
	return &sources{res: res, log: log, perSource: 1, list: []*source{
		{idx: 0, url: res.URL, name: httpx.RedactURL(res.URL), primary: true, gone: make(chan struct{})}}}
}

// assign returns the source replica starts on: replicas are dealt round
// the sources in order, and a source without room passes to the live one
// with the fewest connections. Nil when every live source is full.
func (s *sources) assign(replica int) *source {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src := s.list[replica%len(s.list)]; src.dropped == "" && src.conns < s.perSource {
		src.conns++
		return src
	}
	return s.roomLocked(nil, true)
}

// roomLocked takes a connection of the live source other than but with
// the fewest connections (within perSource when capped).
func (s *sources) roomLocked(but *source, capped bool) *source {
	var best *source
	for _, o := range s.list {
		if o == but || o.dropped != "" || capped && o.conns >= s.perSource {
			continue
		}
		if best == nil || o.conns < best.conns {
			best = o
		}
	}
	if best != nil {
		best.conns++
	}
	return best
}

// move gives up src's connection and takes one of another live source:
// within perSource when capped. Nil when there is none; the connection is
// given up all the same.
func (s *sources) move(src *source, capped bool) *source {
	s.mu.Lock()
	defer s.mu.Unlock()
	src.conns--
	return s.roomLocked(src, capped)
}

// release gives up a connection of src.
func (s *sources) release(src *source) {
	s.mu.Lock()
	src.conns--
	s.mu.Unlock()
}

// isDropped reports whether src was dropped.
func (s *sources) isDropped(src *source) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return src.dropped != ""
}

// begin and end bracket a request to src, for its active time.
func (s *sources) begin(src *source) {
	s.mu.Lock()
	if src.open == 0 {
		src.openSince = time.Now()
	}
	src.open++
	s.mu.Unlock()
}

func (s *sources) end(src *source) {
	s.mu.Lock()
	src.open--
	if src.open == 0 {
		src.active += time.Since(src.openSince)
	}
	s.mu.Unlock()
}

// succeeded records that a request to src delivered bytes.
func (s *sources) succeeded(src *source) {
	s.mu.Lock()
	src.fails = 0
	s.mu.Unlock()
}

// failed records a failed request to src and reports whether src is
// dropped (now or before). A permanent error or a mismatch drops a
// mirror at once, sourceFailLimit transient ones in a row any source; the
// primary's permanent errors are the download's (a changed file restarts
// it). A source is dropped only while another is live.
func (s *sources) failed(src *source, err error) bool {
	src.errors.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.dropped != "" {
		return true
	}
	src.fails++
	transient := httpx.IsTransient(err)
	mismatch := errors.As(err, new(*SourceMismatchError))
	if !(mismatch || transient && src.fails >= sourceFailLimit || !transient && !src.primary) {
		return false
	}
	live := 0
	for _, o := range s.list {
		if o.dropped == "" {
			live++
		}
	}
	if live < 2 {
		return false
	}
	src.dropped = err.Error()
	if transient {
		src.dropped = fmt.Sprintf("%d failed requests in a row: %v", src.fails, err)
	}
	close(src.gone)
	if s.onDrop != nil {
		s.onDrop(src.idx)
	}
	s.log.Warn().Str("url", src.name).Str("reason", src.dropped).
		Msg("source dropped; the others fetch its ranges")
	if live == 2 {
		// A need the request stated (several sources) is no longer met:
		// said at the default level, as the rule asks.
		for _, o := range s.list {
			if o.dropped == "" {
				s.log.Warn().Str("url", o.name).Msg("one source left: the rest of the download comes from it alone")
			}
		}
	}
	return true
}

// ifRange is the If-Range value of a request to src: the primary's
// validator for the primary, and for a mirror its own once its first
// answer was read. Before that, an unguarded download sends the
// primary's, so that a mirror with other validators answers 200 (and is
// dropped); a guarded one sends none and learns them.
func (s *sources) ifRange(src *source) string {
	if src.primary {
		return s.res.Validator()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.learned {
		if src.etag != "" && len(src.etag) >= 2 && src.etag[:2] != "W/" {
			return src.etag
		}
		return src.lastMod
	}
	if s.res.Guarded {
		return ""
	}
	return s.res.Validator()
}

// checkAnswer checks the validators of a mirror's 206: against its own
// first answer, and, unless the bytes are guarded, against the primary's.
func (s *sources) checkAnswer(src *source, resp *http.Response) error {
	if src.primary {
		return nil
	}
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.learned {
		if etag != src.etag || lastMod != src.lastMod {
			return &SourceMismatchError{URL: src.name, Reason: fmt.Sprintf("its validators changed during the download (ETag %s, Last-Modified %s; were %s, %s)",
				etag, lastMod, src.etag, src.lastMod)}
		}
		return nil
	}
	if !s.res.Guarded {
		switch {
		case etag != "" && s.res.ETag != "" && etag != s.res.ETag:
			return &SourceMismatchError{URL: src.name, Reason: fmt.Sprintf("ETag %s differs from the primary's %s and no checksum guards the bytes", etag, s.res.ETag)}
		case (etag == "" || s.res.ETag == "") && lastMod != "" && s.res.LastModified != "" && lastMod != s.res.LastModified:
			return &SourceMismatchError{URL: src.name, Reason: fmt.Sprintf("Last-Modified %s differs from the primary's %s and no checksum guards the bytes", lastMod, s.res.LastModified)}
		}
	}
	src.etag, src.lastMod, src.learned = etag, lastMod, true
	return nil
}

// stats is what SourceStats reports.
func (s *sources) stats() []pipeline.SourceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]pipeline.SourceStats, len(s.list))
	for i, src := range s.list {
		active := src.active
		if src.open > 0 {
			active += time.Since(src.openSince)
		}
		out[i] = pipeline.SourceStats{URL: src.name, Bytes: src.bytes.Load(), Errors: src.errors.Load(),
			Connections: src.conns, Active: active, Dropped: src.dropped}
	}
	return out
}
