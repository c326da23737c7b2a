package config_test

import (
	"context"
	"testing"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
)

// connCap is the config of test.conn: One caps it at one worker.
type connCap struct{ One bool }

// TestSetConnections: SetConnections gives the workers to the stages that
// connect and can run several; one capped at a single worker (a stream's
// source) and one that does not connect are left alone, and a nil config
// is filled with the defaults.
func TestSetConnections(t *testing.T) {
	reg := pipeline.NewRegistry()
	nop := pipeline.StageFunc(func(context.Context, *pipeline.Env, pipeline.IO) error { return nil })
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "test.gen", Produces: pipeline.Bytes,
		New: func(struct{}) (pipeline.Stage, error) { return nop, nil },
	})
	pipeline.MustRegister(reg, pipeline.Def[connCap]{
		Type: "test.conn", Consumes: pipeline.Bytes, Produces: pipeline.Same, Connects: true,
		New: func(connCap) (pipeline.Stage, error) { return nop, nil },
		MaxWorkers: func(c connCap) (int, string) {
			if c.One {
				return 1, "one stream"
			}
			return 0, ""
		},
	})
	nodes := []pipeline.Node{
		{ID: "gen", Type: "test.gen"},
		{ID: "many", Type: "test.conn", Inputs: []string{"gen"}},
		{ID: "one", Type: "test.conn", Inputs: []string{"many"}, Config: &connCap{One: true}},
	}
	if n := config.SetConnections(reg, nodes, 6); n != 1 || nodes[1].Workers != 6 || nodes[2].Workers != 0 || nodes[0].Workers != 0 {
		t.Errorf("changed %d nodes: workers %d, %d, %d", n, nodes[0].Workers, nodes[1].Workers, nodes[2].Workers)
	}
	if _, ok := nodes[1].Config.(*connCap); !ok {
		t.Errorf("nil config not filled with the defaults: %T", nodes[1].Config)
	}
}
