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
		defaults, ok := reg.NewConfig(nd.Type)
		if info, _ := reg.Describe(nd.Type, nil); !ok || !info.Connects {
			continue
		}
		if nd.Config == nil {
			nd.Config = defaults
		}
		if reflect.TypeOf(nd.Config) != reflect.TypeOf(defaults) {
			continue // Build reports the wrong config type
		}
		if info, _ := reg.Describe(nd.Type, nd.Config); info.MaxWorkers == 1 {
			continue
		}
		nd.Workers = n
		changed++
	}
	return changed
}
