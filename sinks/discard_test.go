package sinks_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

func TestDiscardSinkCounts(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("known=%v", known), func(t *testing.T) {
			data := payload(1<<20 + 17)
			r := newRig(t)
			g := r.build(t, sendPieces(data, chunk, pieces(len(data), chunk, 3)), "discard.sink", &sinks.DiscardConfig{}, 4)
			size := int64(len(data))
			if !known {
				size = -1
			}
			// Twice: the count starts again with each run.
			for range 2 {
				if err := run(t, t.Context(), g, size); err != nil {
					t.Fatal(err)
				}
				if got := r.discard.Bytes(); got != int64(len(data)) {
					t.Fatalf("Bytes() = %d, want %d", got, len(data))
				}
			}
		})
	}
}

func TestDiscardSinkIncomplete(t *testing.T) {
	data := payload(chunk + 1)
	g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "discard.sink", nil, 1)
	err := run(t, t.Context(), g, int64(len(data))+1)
	want := fmt.Sprintf("incomplete: received %d of %d bytes", len(data), len(data)+1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run: %v, want %q", err, want)
	}
}

// ExampleDiscardSink counts what a source delivers without writing it.
func ExampleDiscardSink() {
	reg := pipeline.NewRegistry()
	_ = sinks.Register(reg)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "zeros.source",
		Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(1 << 10)
				for off := int64(0); off < 10<<10; off += 1 << 10 {
					if err := edges.Send(ctx, pool.Get(off)); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	g, _ := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "zeros.source"},
		{ID: "drop", Type: "discard.sink", Inputs: []string{"src"}, Workers: 2},
	})
	err := g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 10 << 10}, Log: zerolog.Nop()})
	fmt.Println("run:", err)
	// Output:
	// run: <nil>
}
