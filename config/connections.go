package config

import (
	"reflect"

	"github.com/dlflow/dlflow/pipeline"
)

// SetConnections gives n workers to every node whose type holds a network
// connection per worker (pipeline.Def.Connects) and can run more than one
// worker with its config, which is what asking for n connections means.
// It returns how many nodes it changed; 0 means the nodes cannot use more
// connections (a stream). A node's nil Config is filled with the defaults.
func SetConnections(reg *pipeline.Registry, nodes []pipeline.Node, n int) int {
	changed := 0
	for i := range nodes {
		nd := &nodes[i]
		typ, ok := reg.Lookup(nd.Type)
		if !ok || !typ.Describe(nil).Connects {
			continue
		}
		if nd.Config == nil {
			nd.Config = typ.NewConfig()
		}
		if reflect.TypeOf(nd.Config) != reflect.TypeOf(typ.NewConfig()) {
			continue // Build reports the wrong config type
		}
		if typ.Describe(nd.Config).MaxWorkers == 1 {
			continue
		}
		nd.Workers = n
		changed++
	}
	return changed
}
