package stages

import (
	"sync"
	"sync/atomic"
)

// This file holds the counters the HTTP stages expose to whoever runs the
// graph (the CLI's progress bar and summary): bytes per connection and
// retries. They are read with Graph.StagesOfType and a type assertion on
// the interfaces below, at any time from any goroutine.

// ReplicaCounter is implemented by stages that count the bytes each replica
// (each connection, for http.reader) sent downstream in the current or last
// run.
type ReplicaCounter interface {
	// ReplicaBytes returns the bytes sent by each replica, indexed by
	// replica number; replicas that have not started yet are missing or 0.
	ReplicaBytes() []int64
}

// RetryCounter is implemented by stages that retry requests.
type RetryCounter interface {
	// Retries returns the number of retries taken in the current or last
	// run, over all replicas.
	Retries() int64
}

// replicaBytes is a counter per replica, grown on demand: a stage does not
// know its worker count.
type replicaBytes struct {
	mu       sync.Mutex
	counters []*atomic.Int64
}

func (r *replicaBytes) reset() {
	r.mu.Lock()
	r.counters = nil
	r.mu.Unlock()
}

// counter returns the counter of replica i, creating it (and those before
// it) if needed. Each replica calls it once, at the start of Run.
func (r *replicaBytes) counter(i int) *atomic.Int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.counters) <= i {
		r.counters = append(r.counters, new(atomic.Int64))
	}
	return r.counters[i]
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

// ReplicaBytes returns the bytes each reader (connection) sent downstream
// in the current or last run; see ReplicaCounter.
func (s *httpReader) ReplicaBytes() []int64 { return s.sent.snapshot() }

// Retries returns the retries the readers took in the current or last run.
func (s *httpReader) Retries() int64 { return s.budget.Used() }

// Retries returns the retries the source took in the current or last run.
func (s *httpSource) Retries() int64 { return s.budget.Used() }

var (
	_ ReplicaCounter = (*httpReader)(nil)
	_ RetryCounter   = (*httpReader)(nil)
	_ RetryCounter   = (*httpSource)(nil)
)
