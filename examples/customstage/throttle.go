// Package customstage is a stage type written outside dlflow's built-in
// packages, the way a third party writes one: it imports only pipeline and
// registers itself when a program imports it,
//
//	import _ "github.com/dlflow/dlflow/examples/customstage"
//
// as the custom binary of examples/custombuild does. docs/STAGES.md walks
// through this file.
package customstage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// Config configures a throttle.tap; config files set it under the stage's
// `config:` key, by the koanf names.
type Config struct {
	Rate pipeline.ByteSize `koanf:"rate" help:"most bytes per second passed on, over all workers of the stage"`
}

// Def declares the throttle.tap stage type. init registers it into
// pipeline.DefaultRegistry; tests register it into their own registry with
// pipeline.Register(reg, customstage.Def).
var Def = pipeline.Def[Config]{
	Type:     "throttle.tap",
	Summary:  "passes chunks through at no more than rate bytes per second (limit-rate)",
	Consumes: pipeline.Bytes,
	Produces: pipeline.Same, // ordered bytes in, ordered bytes out
	Defaults: Config{Rate: 10 << 20},
	New: func(c Config) (pipeline.Stage, error) {
		if c.Rate <= 0 {
			return nil, fmt.Errorf("rate must be more than 0, got %v", c.Rate)
		}
		return &Throttle{perByte: float64(time.Second) / float64(c.Rate)}, nil
	},
}

func init() { pipeline.MustRegister(pipeline.DefaultRegistry, Def) }

// Throttle is the throttle.tap stage. Its replicas share one schedule: a
// chunk leaves once the time its bytes cost at the rate has passed after the
// chunks booked before it, so by any moment t of a run at most rate*t bytes
// have left. Idle time earns no burst.
type Throttle struct {
	perByte float64 // nanoseconds per byte

	mu   sync.Mutex
	next time.Time // when the bytes booked so far have been paid for
}

// Run holds each chunk until its turn, then sends it on; it owns the chunk
// from the receive until the Send. No goroutine, no allocation per chunk.
func (t *Throttle) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	timer := time.NewTimer(time.Hour) // one per replica; Reset below re-arms it
	defer timer.Stop()
	for {
		// Recv rather than a receive from edges.Chunks: the run's metrics then
		// see how long the stage waits for input, so how busy it is.
		c, ok, err := edges.Recv(ctx)
		if !ok {
			return err // nil: input exhausted and everything sent
		}
		if wait := t.book(len(c.Data)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				c.Release() // we own c until it is sent
				return ctx.Err()
			}
		}
		if err := edges.Send(ctx, c); err != nil {
			return err // Send released c
		}
	}
}

// book reserves n bytes on the schedule and returns how long to wait until
// they are paid for.
func (t *Throttle) book(n int) time.Duration {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.next.Before(now) {
		t.next = now // idle: start paying from now
	}
	t.next = t.next.Add(time.Duration(float64(n) * t.perByte))
	return t.next.Sub(now)
}
