package pipeline

import (
	"context"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// Stage is one step of a download. The framework calls Run once per replica
// (see Node.Workers), concurrently when there are several, so Run must be
// safe for concurrent calls on one Stage value.
//
// Run reads its input from edges until the input is closed or ctx is done, and
// hands results on with edges.Send or edges.SendRange. It returns nil when its
// input is exhausted and all its output was sent, or the first error it met.
// On return it must have released or sent every Chunk it received or
// borrowed. It must return promptly once ctx is done; returning ctx.Err() is
// fine, the runner reports the error that caused the cancellation.
//
// Run never closes a channel: the runner closes a stage's output once all
// replicas of all stages feeding that output have returned.
type Stage interface {
	Run(ctx context.Context, env *Env, edges IO) error
}

// StageFunc adapts a function to the Stage interface.
type StageFunc func(ctx context.Context, env *Env, edges IO) error

// Run calls f.
func (f StageFunc) Run(ctx context.Context, env *Env, edges IO) error { return f(ctx, env, edges) }

// Resumer is implemented by a stage that keeps what an earlier,
// interrupted run wrote, such as a file sink with a resume state. Before
// any Start, the runner calls Resume on every Resumer, in the order stages
// were declared; the ranges one reports become Env.Have, so that every
// stage's Start and Run know what is already in place. r reads those bytes
// back (a hash stage needs them); it must stay valid until Finish.
//
// At most one stage of a graph may report ranges, and not one whose
// Env.Reshaped is set: its offsets are not the resource's. A stage that
// resumes nothing returns no ranges and a nil r. An error stops the run
// before any Start.
type Resumer interface {
	Resume(ctx context.Context, env *Env) (present []Range, r io.ReaderAt, err error)
}

// Starter is implemented by stages that need to set up shared state once
// before any replica runs, such as opening the output file. Start is called
// after the resource is probed and every Resume returned, in the order
// stages were declared; an error stops the run before any stage runs.
type Starter interface {
	Start(ctx context.Context, env *Env) error
}

// Committer is implemented by stages that make a result visible only when
// the whole run succeeded, such as the file sink's rename of OUTPUT.tmp to
// OUTPUT. Commit is called after every replica of every stage returned nil,
// never after a failure or cancellation.
type Committer interface {
	Commit(ctx context.Context, env *Env) error
}

// Preflighter is implemented by stages that can detect a doomed run before
// any transfer, for example an output that exists or a directory that is
// not writable. [Graph.Preflight] calls it. A Preflight that does I/O that
// can block (a request to an object store) must return promptly once ctx
// is done.
type Preflighter interface {
	Preflight(ctx context.Context, env *Env) error
}

// Releaser is implemented by stages whose Preflight holds something for
// the run that follows, such as the file sink, which creates and locks
// its partial file. [Graph.Release] calls Release on the graph that was
// preflighted, once the download is over: it gives back what no run took.
type Releaser interface {
	Release(env *Env)
}

// Env is what a stage sees of the run besides its channels. The runner
// gives each stage its own Env; stages must treat it as read-only.
type Env struct {
	// Stage is the id of the stage in the graph.
	Stage string
	// Resource is the probed description of the download; nil in Preflight.
	Resource *Resource
	// Log is tagged with the stage id.
	Log zerolog.Logger
	// Buffers is the run's set of buffer pools. Take a Pool once at the start
	// of Run; Get and Release then do not allocate.
	Buffers *Buffers
	// Window bounds the bytes a reordering stage may hold. It is nil unless a
	// stage of the graph declares a reorder window (Memory.Window); a stage
	// that hands out ranges must Acquire each range from it when it is set.
	Window *Window
	// Have is what an earlier run already wrote, shared by all stages of
	// the run; empty unless a stage resumed (see Resumer). It is final
	// before the first Start.
	Have *Have
	// Workers is the number of replicas the stage runs with.
	Workers int
	// Reshaped is set when a stage before this one reshapes the bytes
	// (Def.Reshapes): the chunks' offsets and length are that stage's
	// output's, not the resource's, so a sink must not check them against
	// Resource.Size nor resume by them.
	Reshaped bool
	// Trace, when set, records the run's requests and events for a
	// timeline (see Trace); nil is off, and its methods do nothing.
	Trace *Trace
}

// IO is a stage's view of its edges. Only the input that matches the flow the
// stage consumes is set; the other is nil.
type IO struct {
	// Ranges is the input of a stage that consumes Ranges.
	Ranges <-chan Range
	// Chunks is the input of a stage that consumes Bytes or OrderedBytes. The
	// receiver owns each chunk it takes.
	Chunks <-chan Chunk
	// Replica numbers the copies of the stage from 0 to Workers-1.
	Replica int

	chunksOut chan<- Chunk
	rangesOut chan<- Range
	metrics   *stageMetrics // nil unless RunOptions.Metrics is set
	busy      *traceBusy    // nil unless RunOptions.Trace is set
}

// Send hands c to the next stage and with it the ownership of c. It blocks
// until the next stage has room or ctx is done; in the latter case it
// releases c and returns ctx.Err().
func (e IO) Send(ctx context.Context, c Chunk) error {
	if e.chunksOut == nil {
		c.Release()
		panic("pipeline: Send from a stage that does not produce bytes")
	}
	if e.metrics != nil {
		return e.sendCounted(ctx, c)
	}
	select {
	case e.chunksOut <- c:
		return nil
	case <-ctx.Done():
		c.Release()
		return ctx.Err()
	}
}

// sendCounted is Send with metrics: it counts the bytes, and measures how
// long the send waited only when the queue was full (a non-blocking try
// first), so an unhindered send reads no clock.
func (e IO) sendCounted(ctx context.Context, c Chunk) error {
	m, n := e.metrics, int64(len(c.Data)) // c belongs to the receiver once sent
	select {
	case e.chunksOut <- c:
	default:
		start := time.Now()
		select {
		case e.chunksOut <- c:
			m.blocked(start)
		case <-ctx.Done():
			m.blocked(start)
			c.Release()
			return ctx.Err()
		}
	}
	m.bytes.Add(n)
	m.chunks.Add(1)
	return nil
}

// Recv takes the next chunk of the input, and with it its ownership. It
// blocks until a chunk arrives (ok true), the input is closed and drained
// (ok false, nil error), or ctx is done (its error). Receiving from Chunks
// directly works too; Recv also tells the run's Metrics how long the stage
// waited for input, which is how it knows the stage's busy time.
func (e IO) Recv(ctx context.Context) (c Chunk, ok bool, err error) {
	if e.busy == nil {
		return recv(ctx, e.Chunks, e.metrics)
	}
	e.busy.idle()
	if c, ok, err = recv(ctx, e.Chunks, e.metrics); ok {
		e.busy.working()
	}
	return c, ok, err
}

// RecvRange is Recv for a stage that consumes ranges.
func (e IO) RecvRange(ctx context.Context) (r Range, ok bool, err error) {
	return recv(ctx, e.Ranges, e.metrics)
}

// Waited tells the run's metrics that the stage waited d for input in a
// select of its own (one that also watches timers or other channels), so
// that they know its busy time as if it used Recv. Without metrics it does
// nothing.
func (e IO) Waited(d time.Duration) {
	if m := e.metrics; m != nil {
		m.seesWaits()
		m.waitNanos.Add(int64(d))
	}
}

// recv takes the next item of in. With metrics it counts the receive and
// times the wait, reading the clock only when in is empty (a non-blocking
// try first).
func recv[T any](ctx context.Context, in <-chan T, m *stageMetrics) (v T, ok bool, err error) {
	if m != nil {
		m.seesWaits()
		select {
		case v, ok = <-in:
			return v, ok, nil
		default:
		}
		defer m.waited(time.Now())
	}
	select {
	case v, ok = <-in:
		return v, ok, nil
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
}

// SendRange hands r to the next stage. It blocks until the next stage has
// room or ctx is done, when it returns ctx.Err().
func (e IO) SendRange(ctx context.Context, r Range) error {
	if e.rangesOut == nil {
		panic("pipeline: SendRange from a stage that does not produce ranges")
	}
	if m := e.metrics; m != nil {
		select {
		case e.rangesOut <- r:
		default:
			start := time.Now()
			select {
			case e.rangesOut <- r:
				m.blocked(start)
			case <-ctx.Done():
				m.blocked(start)
				return ctx.Err()
			}
		}
		m.ranges.Add(1)
		return nil
	}
	select {
	case e.rangesOut <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
