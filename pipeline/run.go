package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sourcegraph/conc"
	"github.com/sourcegraph/conc/panics"
)

// Finisher is implemented by stages that hold state beyond Run, such as an
// open file. Finish is called once per run, after every stage of the graph
// has returned, with the run's error (nil on success), and before any
// Commit, also when the run failed. When every Resume and Start hook
// succeeded it is called for every stage; when one failed, only for the
// stages of which a Resume or Start hook succeeded (so a stage whose Start
// failed after its Resume succeeded is finished, and releases what Resume
// took), not for those no hook reached.
type Finisher interface {
	Finish(ctx context.Context, env *Env, runErr error) error
}

// StageError is the error of one replica of one stage.
type StageError struct {
	Stage   string
	Type    string
	Replica int
	Err     error
}

func (e *StageError) Error() string { return fmt.Sprintf("%s: %v", e.Stage, e.Err) }
func (e *StageError) Unwrap() error { return e.Err }

// PanicError is what a panicking stage becomes; it travels wrapped in a
// StageError that names the stage.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// RunOptions are the inputs of a run besides the graph.
type RunOptions struct {
	// Resource is the probed resource handed to every stage.
	Resource *Resource
	// Log is the parent of each stage's logger.
	Log zerolog.Logger
	// Buffers, when set, holds the run's pools, so the caller can watch the
	// memory in use; nil gives the run a fresh set.
	Buffers *Buffers
	// Metrics, when set, collects per-stage counters: bytes sent, time
	// blocked in sends, and input queue fill sampled every Metrics.Interval
	// by one goroutine that stops before Run returns.
	Metrics *Metrics
	// Trace, when set, records the requests of the stages that fetch
	// ranges and the busy time of those that receive chunks (see Trace).
	Trace *Trace
	// Transferred, when set, is called once every replica of every stage
	// returned nil, before any Finish: the stages hold every byte and
	// need the network no more, and what is left is to make the output
	// durable and visible (Finish, Commit), which may still fail. It is
	// not called when the run failed or was cancelled.
	Transferred func()
}

// Preflight lets every stage that implements Preflighter refuse the run
// before any transfer. It reports the first refusal; when ctx is done it
// stops and returns the cause of ctx's cancellation.
func (g *Graph) Preflight(ctx context.Context, log zerolog.Logger) error {
	for _, n := range g.nodes {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		if p, ok := n.stage.(Preflighter); ok {
			env := &Env{Stage: n.ID, Log: log.With().Str("stage", n.ID).Logger()}
			if err := p.Preflight(ctx, env); err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return &StageError{Stage: n.ID, Type: n.Type, Err: err}
			}
		}
	}
	return nil
}

// Release lets every stage that implements Releaser give back what its
// Preflight held and no run took. Call it on a preflighted graph once the
// runs that followed are over.
func (g *Graph) Release(log zerolog.Logger) {
	for _, n := range g.nodes {
		if r, ok := n.stage.(Releaser); ok {
			r.Release(&Env{Stage: n.ID, Log: log.With().Str("stage", n.ID).Logger()})
		}
	}
}

// Run starts every replica of every stage and waits for all of them. The
// first error cancels the others; Run returns it (or the cause of ctx's
// cancellation when ctx was cancelled from outside) after every stage has
// returned, every channel is drained, and every stage is finished. Commit
// hooks run only when everything succeeded. No goroutine outlives Run, and
// the resource's Prefetched answer, if no stage took it, is closed.
func (g *Graph) Run(ctx context.Context, opts RunOptions) error {
	r := g.newRun(opts)
	// A probe's answer that no stage took holds a connection.
	defer r.closePrefetched()
	started, err := r.start(ctx)
	if err == nil {
		err = r.runStages(ctx)
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err == nil && opts.Transferred != nil {
		opts.Transferred()
	}
	if ferr := r.finish(ctx, started, err); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	return r.commit(ctx)
}

type run struct {
	g        *Graph
	envs     map[*node]*Env
	chunksIn map[*node]chan Chunk
	rangesIn map[*node]chan Range
	// producers counts, per consumer, the replicas still able to send to it;
	// the last one to return closes the consumer's input.
	producers map[*node]*atomic.Int32
	res       *Resource
	window    *Window // nil unless a stage reorders
	have      *Have
	metrics   *Metrics
	stageMets map[*node]*stageMetrics // nil without metrics
	closed    sync.Once               // the resource's Prefetched
}

// closePrefetched closes the resource's Prefetched answer, once.
func (r *run) closePrefetched() {
	r.closed.Do(func() {
		if r.res != nil && r.res.Prefetched != nil {
			r.res.Prefetched.Close()
		}
	})
}

func (g *Graph) newRun(opts RunOptions) *run {
	buffers := opts.Buffers
	if buffers == nil {
		buffers = NewBuffers()
	}
	var window *Window
	if g.window > 0 {
		window = NewWindow(g.window)
	}
	have := new(Have)
	r := &run{
		g:         g,
		envs:      make(map[*node]*Env, len(g.nodes)),
		chunksIn:  make(map[*node]chan Chunk),
		rangesIn:  make(map[*node]chan Range),
		producers: make(map[*node]*atomic.Int32),
		res:       opts.Resource,
		window:    window,
		have:      have,
		metrics:   opts.Metrics,
	}
	if opts.Metrics != nil {
		opts.Metrics.mu.Lock()
		opts.Metrics.windowOwner = g.windowOwner
		opts.Metrics.mu.Unlock()
		r.stageMets = make(map[*node]*stageMetrics, len(g.nodes))
		for _, n := range g.nodes {
			r.stageMets[n] = opts.Metrics.stage(n)
		}
	}
	for _, n := range g.nodes {
		r.envs[n] = &Env{
			Stage:    n.ID,
			Resource: opts.Resource,
			Log:      opts.Log.With().Str("stage", n.ID).Logger(),
			Buffers:  buffers,
			Window:   window.countedBy(r.stageMets[n]),
			Have:     have,
			Workers:  n.Workers,
			Reshaped: n.reshaped,
			Trace:    opts.Trace,
		}
		if len(n.inputs) == 0 {
			continue
		}
		if n.in == Ranges {
			r.rangesIn[n] = make(chan Range, n.queue)
		} else {
			r.chunksIn[n] = make(chan Chunk, n.queue)
		}
		count := new(atomic.Int32)
		for _, p := range n.inputs {
			count.Add(int32(p.Workers))
		}
		r.producers[n] = count
	}
	return r
}

// start calls the Resume hooks, sets Have from them, then calls the Start
// hooks, each in declaration order. It returns the stages whose Finish is
// due (see Finisher).
func (r *run) start(ctx context.Context) (finish []*node, err error) {
	touched := make(map[*node]bool, len(r.g.nodes))
	due := func() []*node {
		if err == nil {
			return r.g.nodes
		}
		var out []*node
		for _, n := range r.g.nodes {
			if touched[n] {
				out = append(out, n)
			}
		}
		return out
	}
	var resumedBy *node
	for _, n := range r.g.nodes {
		rs, ok := n.stage.(Resumer)
		if !ok {
			continue
		}
		present, reader, rerr := rs.Resume(ctx, r.envs[n])
		switch {
		case rerr != nil:
			err = rerr
		case len(present) > 0 && n.reshaped:
			err = errors.New("resumes bytes that a stage before it reshaped; their offsets are not the resource's")
		case len(present) > 0 && resumedBy != nil:
			err = fmt.Errorf("resumes too, after %q; only one stage may", resumedBy.ID)
		}
		if err != nil {
			touched[n] = rerr == nil // it holds what it resumed
			err = &StageError{Stage: n.ID, Type: n.Type, Err: err}
			return due(), err
		}
		touched[n] = true
		if len(present) > 0 {
			resumedBy = n
			r.have.Set(present, reader)
		}
	}
	if r.window != nil {
		// Bytes a resumed sink already has count as emitted in order.
		r.window.Advance(r.have.Skip(0))
	}
	if r.have.Skip(0) > 0 {
		r.closePrefetched() // nobody fetches offset 0 again
	}
	for _, n := range r.g.nodes {
		if s, ok := n.stage.(Starter); ok {
			if serr := s.Start(ctx, r.envs[n]); serr != nil {
				// touched[n] stays as Resume left it.
				err = &StageError{Stage: n.ID, Type: n.Type, Err: serr}
				return due(), err
			}
			touched[n] = true
		}
	}
	return due(), nil
}

// runStages runs every replica and waits for all of them.
//
// Each node runs under a context of its own. When a stage fails, the first
// error is recorded as the run's error and every node is cancelled, with
// it as the cause, except the stages downstream of the failed one: their
// inputs close as their producers return, and they handle what was already
// sent to them, so that a sink keeps every byte that reached it (the
// partial data of a source that failed). When the caller cancels, every
// stage stops at once.
func (r *run) runStages(parent context.Context) error {
	ctxs := make(map[*node]context.Context, len(r.g.nodes))
	cancels := make(map[*node]context.CancelCauseFunc, len(r.g.nodes))
	for _, n := range r.g.nodes {
		ctxs[n], cancels[n] = context.WithCancelCause(parent)
	}
	defer func() {
		for _, cancel := range cancels {
			cancel(nil)
		}
	}()
	var (
		failOnce sync.Once
		firstErr error
	)
	fail := func(failed *node, err error) {
		failOnce.Do(func() { firstErr = err })
		downstream := map[*node]bool{}
		for c := failed.consumer; c != nil; c = c.consumer {
			downstream[c] = true
		}
		for _, n := range r.g.nodes {
			if !downstream[n] {
				cancels[n](err)
			}
		}
	}
	if r.metrics != nil {
		defer r.sample()()
	}
	var wg conc.WaitGroup
	for _, n := range r.g.nodes {
		alive := new(atomic.Int32)
		alive.Store(int32(n.Workers))
		for replica := range n.Workers {
			edges := IO{Replica: replica, Ranges: r.rangesIn[n], Chunks: r.chunksIn[n], metrics: r.stageMets[n]}
			if n.in != Ranges && len(n.inputs) > 0 {
				edges.busy = r.envs[n].Trace.busyOf(n.ID, replica)
			}
			if c := n.consumer; c != nil {
				edges.chunksOut, edges.rangesOut = r.chunksIn[c], r.rangesIn[c]
			}
			wg.Go(func() {
				if edges.metrics != nil {
					defer edges.metrics.ran(time.Now())
				}
				if err := r.runReplica(ctxs[n], n, edges); err != nil {
					fail(n, err)
				}
				r.producerDone(n)
				if alive.Add(-1) == 0 {
					r.drainInput(n) // lets producers finish if n stopped early
				}
			})
		}
	}
	wg.Wait()
	if parent.Err() != nil {
		return context.Cause(parent)
	}
	return firstErr
}

// sample starts the sampler of queue fills and returns the function that
// stops it and waits for it, and adds the time the stages ran.
func (r *run) sample() (stop func()) {
	var s sampler
	for n, ch := range r.chunksIn {
		s.chunks = append(s.chunks, sampledQueue[Chunk]{ch: ch, m: r.stageMets[n]})
	}
	for n, ch := range r.rangesIn {
		s.ranges = append(s.ranges, sampledQueue[Range]{ch: ch, m: r.stageMets[n]})
	}
	quit, done := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go s.run(r.metrics.interval(), quit, done)
	return func() {
		close(quit)
		<-done
		r.metrics.addElapsed(time.Since(start))
	}
}

func (r *run) runReplica(ctx context.Context, n *node, edges IO) (err error) {
	var pc panics.Catcher
	pc.Try(func() { err = n.stage.Run(ctx, r.envs[n], edges) })
	if rec := pc.Recovered(); rec != nil {
		err = &PanicError{Value: rec.Value, Stack: rec.Stack}
	}
	if err != nil {
		return &StageError{Stage: n.ID, Type: n.Type, Replica: edges.Replica, Err: err}
	}
	return nil
}

// producerDone closes n's consumer's input when n's replica was the last
// producer still feeding it.
func (r *run) producerDone(n *node) {
	c := n.consumer
	if c == nil || r.producers[c].Add(-1) != 0 {
		return
	}
	if ch := r.chunksIn[c]; ch != nil {
		close(ch)
	}
	if ch := r.rangesIn[c]; ch != nil {
		close(ch)
	}
}

// drainInput receives and releases what is left on n's input until its
// producers have all returned and closed it.
func (r *run) drainInput(n *node) {
	if ch := r.chunksIn[n]; ch != nil {
		for c := range ch {
			c.Release()
		}
	}
	if ch := r.rangesIn[n]; ch != nil {
		for range ch {
		}
	}
}

func (r *run) finish(ctx context.Context, started []*node, runErr error) error {
	var first error
	for _, n := range started {
		if f, ok := n.stage.(Finisher); ok {
			if err := f.Finish(context.WithoutCancel(ctx), r.envs[n], runErr); err != nil && first == nil {
				first = &StageError{Stage: n.ID, Type: n.Type, Err: err}
			}
		}
	}
	return first
}

func (r *run) commit(ctx context.Context) error {
	for _, n := range r.g.nodes {
		if c, ok := n.stage.(Committer); ok {
			if err := c.Commit(ctx, r.envs[n]); err != nil {
				return &StageError{Stage: n.ID, Type: n.Type, Err: err}
			}
		}
	}
	return nil
}
