package pipeline

import (
	"sync"
	"sync/atomic"
	"time"
)

// defaultSampleInterval is how often a run with Metrics samples the fill of
// every queue, unless Metrics.Interval says otherwise.
const defaultSampleInterval = 10 * time.Millisecond

// Metrics collects per-stage counters of runs, for benchmarks and tuning:
// what each stage sent, how long its sends waited for room downstream, how
// long it waited for input (when it receives with IO.Recv), so how busy it
// was, and how full its input queue was on average. Pass one in RunOptions.Metrics;
// the runner fills it, and Snapshot reads it (also during a run). A Metrics
// may serve several runs of a graph (a restart): the counters add up.
//
// The cost on the chunk path is an atomic add per send, an atomic load per
// receive, and two clock reads for a send or receive that has to wait;
// without Metrics there is none.
type Metrics struct {
	// Interval is the sampling period of queue fills; 0 means
	// defaultSampleInterval. Set it before the run.
	Interval time.Duration

	mu          sync.Mutex
	windowOwner string // the stage that reorders with a window, or ""
	stages      []*stageMetrics
	byID        map[string]*stageMetrics
	elapsed     time.Duration
}

// NewMetrics returns an empty Metrics.
func NewMetrics() *Metrics { return &Metrics{byID: make(map[string]*stageMetrics)} }

// stageMetrics are the live counters of one stage, shared by its replicas.
type stageMetrics struct {
	id, typ  string
	workers  int
	inputs   []string
	consumer string
	queueCap int
	in, out  Flow

	bytes        atomic.Int64 // bytes of chunks sent
	chunks       atomic.Int64
	ranges       atomic.Int64
	blockedNanos atomic.Int64 // time sends waited for room
	blockedSends atomic.Int64
	runNanos     atomic.Int64 // time the replicas ran, from start to return
	waitNanos    atomic.Int64 // time IO.Recv and IO.RecvRange waited for input
	windowNanos  atomic.Int64 // time Window.Acquire waited for the reorder window
	waitsSeen    atomic.Bool  // the stage receives with Recv or RecvRange, or reports waits with Waited
	// Input queue fill, written by the run's sampler only.
	samples  atomic.Int64
	fillPPM  atomic.Int64 // sum over samples of len/cap, in parts per million
	fullHits atomic.Int64 // samples that found the queue full
}

func (s *stageMetrics) ran(start time.Time) {
	s.runNanos.Add(int64(time.Since(start)))
}

// seesWaits marks that the stage's input waits are measured. It writes
// only the first time, so replicas do not contend on it per chunk.
func (s *stageMetrics) seesWaits() {
	if !s.waitsSeen.Load() {
		s.waitsSeen.Store(true)
	}
}

func (s *stageMetrics) waited(start time.Time) {
	s.waitNanos.Add(int64(time.Since(start)))
}

func (s *stageMetrics) blocked(start time.Time) {
	s.blockedNanos.Add(int64(time.Since(start)))
	s.blockedSends.Add(1)
}

// stage returns the counters of n, creating them on the first run.
func (m *Metrics) stage(n *node) *stageMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil {
		m.byID = make(map[string]*stageMetrics)
	}
	s := m.byID[n.ID]
	if s == nil {
		s = &stageMetrics{id: n.ID, typ: n.Type, workers: n.Workers, inputs: n.Inputs, queueCap: n.queue, in: n.in, out: n.out}
		if len(n.inputs) == 0 {
			s.queueCap, s.in = 0, None
		}
		if n.consumer != nil {
			s.consumer = n.consumer.ID
		}
		m.byID[n.ID] = s
		m.stages = append(m.stages, s)
	}
	return s
}

func (m *Metrics) addElapsed(d time.Duration) {
	m.mu.Lock()
	m.elapsed += d
	m.mu.Unlock()
}

func (m *Metrics) interval() time.Duration {
	if m.Interval > 0 {
		return m.Interval
	}
	return defaultSampleInterval
}

// StageMetrics is a snapshot of one stage's counters.
type StageMetrics struct {
	Stage   string   `json:"stage"`
	Type    string   `json:"type"`
	Workers int      `json:"workers"`
	Inputs  []string `json:"inputs,omitempty"`
	// Output is the id of the stage this one feeds; "" for a sink.
	Output string `json:"output,omitempty"`
	// Consumes and Produces are what flows in and out (Flow.String).
	Consumes string `json:"consumes"`
	Produces string `json:"produces"`
	// BytesSent, ChunksSent and RangesSent count what the stage handed on.
	BytesSent  int64 `json:"bytes_sent"`
	ChunksSent int64 `json:"chunks_sent"`
	RangesSent int64 `json:"ranges_sent"`
	// SendBlocked is the total time (over all replicas) sends waited for
	// room in the next stage's queue; BlockedSends counts such sends.
	SendBlocked  time.Duration `json:"send_blocked_ns"`
	BlockedSends int64         `json:"blocked_sends"`
	// QueueCap is the capacity of the stage's input queue (0 for a source).
	QueueCap int `json:"queue_cap"`
	// QueueFill is the average of len/cap of the input queue over the
	// samples (0 to 1); QueueFull is the share of samples that found it
	// full. QueueSamples is how many samples there were.
	QueueFill    float64 `json:"queue_fill"`
	QueueFull    float64 `json:"queue_full"`
	QueueSamples int64   `json:"queue_samples"`
	// Ran is the total time its replicas ran, from start to return.
	// InputWait is the part of it that IO.Recv and IO.RecvRange waited for
	// input, and WindowWait the part that Env.Window.Acquire waited for the
	// reorder window to move. Busy is the rest that did not wait to send
	// either: Ran - InputWait - WindowWait - SendBlocked; BusyShare is Busy over Workers x Elapsed,
	// so a replica that returned early counts as idle after. For a source
	// (no input) Busy includes waiting for the network. BusyKnown is false
	// for a stage that receives from its input channel itself rather than
	// through Recv (and does not report its waits with IO.Waited): its
	// waits are not seen, and its Busy is 0.
	Ran        time.Duration `json:"ran_ns"`
	InputWait  time.Duration `json:"input_wait_ns"`
	WindowWait time.Duration `json:"window_wait_ns"`
	Busy       time.Duration `json:"busy_ns"`
	BusyShare  float64       `json:"busy_share"`
	BusyKnown  bool          `json:"busy_known"`
}

// MetricsSnapshot is every stage's counters, in graph order (sources first).
type MetricsSnapshot struct {
	// Elapsed is the time the stages ran, summed over runs.
	Elapsed time.Duration  `json:"elapsed_ns"`
	Stages  []StageMetrics `json:"stages"`
	// WindowOwner is the stage that reorders with a window, whose room
	// the WindowWait of the stages handing out ranges waits for; "" for a
	// graph without one.
	WindowOwner string `json:"window_owner,omitempty"`
}

// Snapshot copies the counters. It is safe to call during a run.
func (m *Metrics) Snapshot() MetricsSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := MetricsSnapshot{Elapsed: m.elapsed, Stages: make([]StageMetrics, 0, len(m.stages)), WindowOwner: m.windowOwner}
	for _, s := range m.stages {
		sm := StageMetrics{
			Stage: s.id, Type: s.typ, Workers: s.workers, Inputs: s.inputs, Output: s.consumer,
			Consumes: s.in.String(), Produces: s.out.String(),
			BytesSent: s.bytes.Load(), ChunksSent: s.chunks.Load(), RangesSent: s.ranges.Load(),
			SendBlocked: time.Duration(s.blockedNanos.Load()), BlockedSends: s.blockedSends.Load(),
			QueueCap: s.queueCap, QueueSamples: s.samples.Load(),
		}
		if sm.QueueSamples > 0 {
			sm.QueueFill = float64(s.fillPPM.Load()) / 1e6 / float64(sm.QueueSamples)
			sm.QueueFull = float64(s.fullHits.Load()) / float64(sm.QueueSamples)
		}
		sm.Ran, sm.InputWait = time.Duration(s.runNanos.Load()), time.Duration(s.waitNanos.Load())
		sm.WindowWait = time.Duration(s.windowNanos.Load())
		sm.BusyKnown = s.in == None || s.waitsSeen.Load()
		if total := time.Duration(s.workers) * m.elapsed; sm.BusyKnown && total > 0 {
			sm.Busy = max(sm.Ran-sm.InputWait-sm.WindowWait-sm.SendBlocked, 0)
			sm.BusyShare = min(float64(sm.Busy)/float64(total), 1)
		}
		snap.Stages = append(snap.Stages, sm)
	}
	return snap
}

// Stage returns the snapshot of the stage with the given id.
func (s MetricsSnapshot) Stage(id string) (StageMetrics, bool) {
	for _, st := range s.Stages {
		if st.Stage == id {
			return st, true
		}
	}
	return StageMetrics{}, false
}

// Bottleneck names the stage that most likely limits the run's speed, from
// the queue fills: a stage whose input queue stays full while the queue it
// feeds stays empty cannot keep up with what arrives. The score of a stage
// is the fill of its input minus the fill of its output (0 for a sink); the
// highest wins. When no queue is more than half full on average, every
// stage waits for the data: what limits the run is the first stage that
// makes bytes out of something else (an HTTP source or range reader: the
// network, the server), or else the first source.
//
// Before all that: when a stage spent more than half its run waiting for
// the reorder window, the window is what limits the run (its size over
// the round trip, or the slowest range, bounds the bytes in flight), and
// Bottleneck names it "window of ID", ID the stage that reorders.
func (s MetricsSnapshot) Bottleneck() string {
	if s.WindowOwner != "" {
		for _, st := range s.Stages {
			if st.Ran > 0 && st.WindowWait*2 > st.Ran {
				return "window of " + s.WindowOwner
			}
		}
	}
	fill := make(map[string]float64, len(s.Stages))
	for _, st := range s.Stages {
		fill[st.Stage] = st.QueueFill
	}
	best, bestScore := "", 0.5
	for _, st := range s.Stages {
		if st.QueueCap == 0 {
			continue // a source has no input queue
		}
		score := st.QueueFill
		if st.Output != "" {
			score -= fill[st.Output]
		}
		if score > bestScore {
			best, bestScore = st.Stage, score
		}
	}
	if best != "" {
		return best
	}
	for _, st := range s.Stages {
		if isBytes(st.Produces) && !isBytes(st.Consumes) {
			return st.Stage
		}
	}
	for _, st := range s.Stages {
		if len(st.Inputs) == 0 {
			return st.Stage
		}
	}
	return ""
}

func isBytes(flow string) bool { return flow == Bytes.String() || flow == OrderedBytes.String() }

// sampler records the fill of every input queue of a run every interval
// until stop is closed; done is closed when it has returned.
type sampler struct {
	chunks []sampledQueue[Chunk]
	ranges []sampledQueue[Range]
}

type sampledQueue[T any] struct {
	ch chan T
	m  *stageMetrics
}

func (q sampledQueue[T]) sample() {
	c := cap(q.ch)
	if c == 0 {
		return
	}
	n := len(q.ch)
	q.m.samples.Add(1)
	q.m.fillPPM.Add(int64(n) * 1e6 / int64(c))
	if n == c {
		q.m.fullHits.Add(1)
	}
}

func (s *sampler) run(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, q := range s.chunks {
				q.sample()
			}
			for _, q := range s.ranges {
				q.sample()
			}
		}
	}
}
