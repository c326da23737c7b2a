package pipeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// waitConfig configures test.wait, a pass-through whose Preflight records
// its call and then waits for its context, as one that asks a slow store
// would.
type waitConfig struct {
	Called chan<- string // gets the stage's id when Preflight starts
	Wait   bool          // wait for ctx; else return nil at once
}

type waitStage struct {
	pipeline.StageFunc
	cfg waitConfig
}

func (s *waitStage) Preflight(ctx context.Context, env *pipeline.Env) error {
	s.cfg.Called <- env.Stage
	if !s.cfg.Wait {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestPreflightContext: cancelling the context ends a Preflight that
// waits on it, Graph.Preflight returns the cause of the cancellation (not
// the stage's error wrapped), and no later stage's Preflight is called.
func TestPreflightContext(t *testing.T) {
	reg, _ := newRegistry(t)
	pipeline.MustRegister(reg, pipeline.Def[waitConfig]{
		Type: "test.wait", Consumes: pipeline.Bytes, Produces: pipeline.Same,
		New: func(c waitConfig) (pipeline.Stage, error) { return &waitStage{cfg: c}, nil },
	})
	called := make(chan string, 4)
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "gen", Type: "test.gen"},
		{ID: "slow", Type: "test.wait", Inputs: []string{"gen"}, Config: &waitConfig{Called: called, Wait: true}},
		{ID: "next", Type: "test.wait", Inputs: []string{"slow"}, Config: &waitConfig{Called: called}},
		{ID: "out", Type: "test.collect", Inputs: []string{"next"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	interrupted := errors.New("interrupted")
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- g.Preflight(ctx, zerolog.Nop()) }()
	select {
	case id := <-called:
		if id != "slow" {
			t.Fatalf("the first Preflight called is %q's, want slow's", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no Preflight called within 10s")
	}
	cancel(interrupted)
	select {
	case err := <-done:
		if err != interrupted {
			t.Fatalf("Preflight after cancel: %v, want the cause itself", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Preflight still waits 10s after its context was cancelled")
	}
	if len(called) != 0 {
		t.Errorf("%q's Preflight was called after the cancellation", <-called)
	}
}
