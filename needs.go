package dlflow

import (
	"fmt"
	"slices"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
)

// NeedError is the error of a request that needs what no stage of its
// topology provides (a pipeline.Capability), where dlflow cannot add a
// stage that does: the download fails before any request. It wraps
// ErrUnmetNeed.
type NeedError struct {
	Need     pipeline.Capability
	Topology string // as Result.Topology names it
	// Hint says how to meet the need, when there is a way.
	Hint string
}

// ErrUnmetNeed is what a *NeedError wraps.
var ErrUnmetNeed = fmt.Errorf("the topology does not meet a need of the request")

func (e *NeedError) Error() string {
	msg := fmt.Sprintf("%s has no stage that provides %s", e.Topology, e.Need)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

func (e *NeedError) Unwrap() error { return ErrUnmetNeed }

// provides reports whether a node of nodes provides c.
func provides(reg *pipeline.Registry, nodes []pipeline.Node, c pipeline.Capability) bool {
	for _, n := range nodes {
		if info, _ := reg.Describe(n.Type, n.Config); slices.Contains(info.Provides, c) {
			return true
		}
	}
	return false
}

// meetNeeds checks nodes, of topology, against what the download needs,
// before the graph is built: a progress count (always), a checksum (when
// cfg sets one). A missing one is added where that is safe: a progress.tap
// right after the stage that fetches, a hash.tap after one that fetches
// one ordered stream (a hash of bytes in any order needs a window, which
// only the topology can size). Otherwise a *NeedError. (Piece hashes are
// checked on the built graph, piecesNeed; connections by tune.)
func (d *Download) meetNeeds(cfg *config.Config, nodes []pipeline.Node, topology Topology) ([]pipeline.Node, error) {
	reg := d.client.reg
	fetch := fetchingNode(reg, nodes)
	if !provides(reg, nodes, pipeline.ProvidesProgress) && fetch >= 0 {
		nodes = d.insertAfter(cfg, nodes, fetch, "progress.tap", "added-progress")
		d.log.Debug().Str("topology", topology.describe()).Msg("added a progress.tap: the topology has none, and the download's progress is counted by one")
	}
	if cfg.Checksum != "" && !provides(reg, nodes, pipeline.ProvidesChecksum) {
		if fetch < 0 || !orderedStream(reg, nodes[fetch]) {
			return nil, &RequestError{Field: "Checksum", Err: &NeedError{Need: pipeline.ProvidesChecksum, Topology: topology.describe(),
				Hint: "its bytes arrive in any order; add a stage of type hash.tap with a window before the sink (see examples/ranged.yaml)"}}
		}
		nodes = d.insertAfter(cfg, nodes, fetch, "hash.tap", "added-verify")
		d.log.Info().Str("topology", topology.describe()).Msg("added a hash.tap to verify the checksum: the topology has none")
	}
	return nodes, nil
}

// fetchingNode is the index of the first node that fetches (its type
// Connects), or -1.
func fetchingNode(reg *pipeline.Registry, nodes []pipeline.Node) int {
	for i, n := range nodes {
		if info, _ := reg.Describe(n.Type, n.Config); info.Connects {
			return i
		}
	}
	return -1
}

// orderedStream reports whether n produces the resource's bytes as one
// ordered stream (one worker of a stage that produces ordered bytes).
func orderedStream(reg *pipeline.Registry, n pipeline.Node) bool {
	info, ok := reg.Describe(n.Type, n.Config)
	if !ok {
		return false
	}
	return info.Produces == pipeline.OrderedBytes && n.Workers <= 1 && !info.Reshapes
}

// insertAfter returns nodes with a stage of type typ, id, inserted between
// nodes[i] and the stage that read from it. The stage takes cfg's
// run-wide settings. nodes' own Inputs are not changed in place (they may
// be a built-in topology's, shared).
func (d *Download) insertAfter(cfg *config.Config, nodes []pipeline.Node, i int, typ, id string) []pipeline.Node {
	after := nodes[i].ID
	out := slices.Clone(nodes)
	for j := range out {
		if k := slices.Index(out[j].Inputs, after); k >= 0 {
			out[j].Inputs = slices.Clone(out[j].Inputs)
			out[j].Inputs[k] = id
		}
	}
	n := pipeline.Node{ID: id, Type: typ, Inputs: []string{after}}
	if defaults, ok := d.client.reg.NewConfig(typ); ok {
		n.Config = defaults
		if st, ok := n.Config.(pipeline.SettingsTaker); ok {
			st.TakeSettings(cfg.Settings())
		}
	}
	return append(out, n)
}
