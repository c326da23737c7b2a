package stages

import (
	"sync"
	"sync/atomic"

	"github.com/dlflow/dlflow/pipeline"
)

// This file holds the counters the HTTP stages expose to whoever runs the
// graph (the library's progress and result): bytes per connection and
// retries, through pipeline.ConnectionReporter and pipeline.RetryReporter.

// replicaBytes is a counter per replica, grown on demand: a stage does not
// know its worker count.
type replicaBytes struct {
	mu       sync.Mutex
	counters []*atomic.Int64
	// lanes holds what each replica fetches now (lanes.go), grown with
	// counters.
	lanes []*lane
}

func (r *replicaBytes) reset() {
	r.mu.Lock()
	r.counters, r.lanes = nil, nil
	r.mu.Unlock()
}

// counter returns the counter of replica i, creating it (and those before
// it) if needed. Each replica calls it once, at the start of Run.
func (r *replicaBytes) counter(i int) *atomic.Int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.growLocked(i)
	return r.counters[i]
}

// lane returns the lane of replica i, creating it as counter does.
func (r *replicaBytes) lane(i int) *lane {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.growLocked(i)
	return r.lanes[i]
}

func (r *replicaBytes) growLocked(i int) {
	for len(r.counters) <= i {
		r.counters = append(r.counters, new(atomic.Int64))
		r.lanes = append(r.lanes, new(lane))
	}
}

// lanesSnapshot returns the lanes and each one's bytes, of one length.
func (r *replicaBytes) lanesSnapshot() ([]*lane, []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sent := make([]int64, len(r.counters))
	for i, c := range r.counters {
		sent[i] = c.Load()
	}
	return append([]*lane(nil), r.lanes...), sent
}

func (r *replicaBytes) snapshot() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int64, len(r.counters))
	for i, c := range r.counters {
		out[i] = c.Load()
	}
	return out
}

// ConnectionBytes returns the bytes each reader (connection) sent
// downstream in the current or last run.
func (s *httpReader) ConnectionBytes() []int64 { return s.sent.snapshot() }

// Retries returns the retries the readers took in the current or last run.
func (s *httpReader) Retries() int64 { return s.budget.Used() }

// Retries returns the retries the source took in the current or last run.
func (s *httpSource) Retries() int64 { return s.budget.Used() }

// SourceStats returns what each source did in the current or last run;
// nil when the resource had no mirrors.
func (s *httpReader) SourceStats() []pipeline.SourceStats {
	if srcs := s.srcs.Load(); srcs != nil {
		return srcs.stats()
	}
	return nil
}

var (
	_ pipeline.SourceReporter     = (*httpReader)(nil)
	_ pipeline.ConnectionReporter = (*httpReader)(nil)
	_ pipeline.RetryReporter      = (*httpReader)(nil)
	_ pipeline.RetryReporter      = (*httpSource)(nil)
)
