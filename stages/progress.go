package stages

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// ProgressConfig configures a progress.tap.
type ProgressConfig struct {
	Interval time.Duration `koanf:"interval" help:"time between progress log lines"`
}

// ProgressTap is the progress.tap stage: it passes every chunk through
// unchanged and counts the bytes. Replica 0 logs the progress at every
// interval (bytes, total, percent, smoothed rate in bytes per second,
// eta_s in seconds); Finish logs a last line with the totals, the average
// rate and elapsed_s. Progress reads the counters at
// any time, for a progress bar.
type ProgressTap struct {
	interval time.Duration

	done    atomic.Int64 // bytes passed through, over all replicas, plus resumed
	resumed atomic.Int64 // bytes present from an earlier run (env.Have) at Start
	total   atomic.Int64 // Resource.Size at Start, -1 when unknown
	started atomic.Int64 // Start time, unix nanoseconds

	// mu guards the rate estimate, which only replica 0 updates but Finish
	// reads.
	mu       sync.Mutex
	rate     float64 // EWMA of bytes per second over intervals
	sampled  bool    // rate holds at least one interval
	lastDone int64
	lastTime time.Time
}

// progressAlpha weighs the newest interval in the rate: about the last five
// intervals count, so the eta follows a change of speed within seconds
// without jumping at every hiccup.
const progressAlpha = 0.3

var progressDef = pipeline.Def[ProgressConfig]{
	Type:     "progress.tap",
	Summary:  "passes chunks through and logs bytes, rate and eta at an interval",
	Consumes: pipeline.Bytes,
	Produces: pipeline.Same,
	Defaults: ProgressConfig{Interval: time.Second},
	New: func(c ProgressConfig) (pipeline.Stage, error) {
		if c.Interval <= 0 {
			return nil, fmt.Errorf("interval must be more than 0, got %v", c.Interval)
		}
		return newProgressTap(c.Interval), nil
	},
}

func init() { builtin(progressDef) }

func newProgressTap(interval time.Duration) *ProgressTap {
	p := &ProgressTap{interval: interval}
	p.total.Store(-1)
	return p
}

var (
	_ pipeline.ProgressReporter = (*ProgressTap)(nil)
	_ pipeline.Starter          = (*ProgressTap)(nil)
	_ pipeline.Finisher         = (*ProgressTap)(nil)
)

// Progress reports the bytes done so far (passed through, plus those an
// earlier run left that a resume does not fetch again), the size of the
// resource (-1 when unknown) and the bytes resumed. It is safe to call at
// any time from any goroutine.
func (p *ProgressTap) Progress() pipeline.Progress {
	return pipeline.Progress{Done: p.done.Load(), Total: p.total.Load(), Resumed: p.resumed.Load()}
}

// Start resets the counters for a new run.
func (p *ProgressTap) Start(_ context.Context, env *pipeline.Env) error {
	total := int64(-1)
	if env.Resource.SizeKnown() {
		total = env.Resource.Size
	}
	var resumed int64
	if env.Have != nil {
		resumed = env.Have.Len()
	}
	now := time.Now()
	p.done.Store(resumed)
	p.resumed.Store(resumed)
	p.total.Store(total)
	p.started.Store(now.UnixNano())
	p.mu.Lock()
	p.rate, p.sampled, p.lastDone, p.lastTime = 0, false, resumed, now
	p.mu.Unlock()
	return nil
}

// Run passes chunks on until its input is closed. Sending blocks like any
// send; ticks that fall while it is blocked are skipped, not queued.
func (p *ProgressTap) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	if edges.Replica == 0 {
		// Reports go on while the chunks stall, from their own goroutine,
		// so that the loop below waits on its input alone (Recv, which
		// lets the run's metrics see how busy the tap is).
		stop, done := make(chan struct{}), make(chan struct{})
		go p.reportEvery(env, stop, done)
		defer func() { close(stop); <-done }()
	}
	for {
		c, ok, err := edges.Recv(ctx)
		if !ok {
			return err
		}
		p.done.Add(int64(len(c.Data)))
		if err := edges.Send(ctx, c); err != nil {
			return err
		}
	}
}

// reportEvery logs a progress line every interval until stop is closed;
// ticks that fall while a line is written are skipped, not queued.
func (p *ProgressTap) reportEvery(env *pipeline.Env, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p.report(env, now)
		}
	}
}

// report updates the rate estimate and logs one progress line.
func (p *ProgressTap) report(env *pipeline.Env, now time.Time) {
	pr := p.Progress()
	done, total := pr.Done, pr.Total
	p.mu.Lock()
	if dt := now.Sub(p.lastTime).Seconds(); dt > 0 {
		inst := float64(done-p.lastDone) / dt
		if p.sampled {
			p.rate = progressAlpha*inst + (1-progressAlpha)*p.rate
		} else {
			p.rate, p.sampled = inst, true // nothing to smooth with yet
		}
		p.lastDone, p.lastTime = done, now
	}
	rate := p.rate
	p.mu.Unlock()

	ev := env.Log.Info().Int64("bytes", done)
	if total >= 0 {
		ev = ev.Int64("total", total)
		if total > 0 {
			ev = ev.Float64("percent", percent(done, total))
		}
	}
	ev = ev.Float64("rate", rate)
	if total >= 0 && rate > 0 {
		ev = ev.Float64("eta_s", float64(max(total-done, 0))/rate)
	}
	ev.Msg("progress")
}

// Finish logs the last line: the bytes passed, the total and the average
// rate over the whole run, whether or not it succeeded.
func (p *ProgressTap) Finish(_ context.Context, env *pipeline.Env, runErr error) error {
	pr := p.Progress()
	done, total := pr.Done, pr.Total
	elapsed := time.Since(time.Unix(0, p.started.Load())).Seconds()
	ev := env.Log.Info().Int64("bytes", done)
	if total >= 0 {
		ev = ev.Int64("total", total)
		if total > 0 {
			ev = ev.Float64("percent", percent(done, total))
		}
	}
	resumed := p.resumed.Load()
	if resumed > 0 {
		ev = ev.Int64("resumed", resumed)
	}
	if elapsed > 0 {
		ev = ev.Float64("rate", float64(done-resumed)/elapsed)
	}
	ev = ev.Float64("elapsed_s", elapsed)
	if runErr != nil {
		ev.Msg("transfer stopped")
	} else {
		ev.Msg("transfer complete")
	}
	return nil
}

func percent(done, total int64) float64 {
	// Rounded to a tenth so log lines stay readable.
	return float64(int64(float64(done)*1000/float64(total))) / 10
}
