package dlflow

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// The life of one download (see docs/ARCHITECTURE.md):
//
//  1. prepare: the request's configuration is loaded once (load), and
//     what is wrong with it is found without any I/O. For the automatic
//     topology, which the probe picks, the stage keys are checked against
//     what the candidate built-in topologies declare (their YAML, read once
//     per process), without building a graph.
//  2. Before the probe, the output is checked: a topology that does not
//     depend on the probe builds its one graph now and preflights it; the
//     automatic one reserves the output (sinks.Reserve), which the graph
//     built after the probe takes over.
//  3. The probe asks as the candidate topologies fix (their largest range,
//     their retry policy).
//  4. makePlan picks the topology (pickTopology), builds the one graph of
//     the attempt and preflights it; the plan is not changed after. A
//     restart (the file changed on the server) makes a new plan.

// counts counts configuration loads and graph builds, for the test that
// checks one of each per attempt (export_test.go).
var counts struct{ loads, builds atomic.Int64 }

// prep is what a download knows before its probe: prepare makes it and
// checkOutput completes it (the output reserved, the first plan, the probe
// kept from fetching bytes a resume has); it is not changed after the
// probe, but for the first plan, which the first attempt takes.
type prep struct {
	cfg     *config.Config // the request's configuration, loaded once
	mirrors []string       // the mirrors, checked
	// topology is the request's, or s3 for an automatic topology that
	// writes to an object URL; auto() when the probe picks it.
	topology Topology
	// overlay: the stages come from a built-in topology with the request's
	// stage keys laid over them (the request's topology was automatic).
	overlay bool
	probe   httpx.ProbeOptions
	// reserved is the output, checked and reserved before the probe for an
	// automatic topology; the graph's file sink takes it over.
	reserved *sinks.Reservation
	// first is the plan built before the probe, when the topology does not
	// depend on it and the output is known; the first attempt runs it.
	first *plan
}

// plan is one attempt of a download: the topology picked and its one
// graph, built and preflighted. It is not changed after makePlan.
type plan struct {
	topology Topology // never automatic
	graph    *pipeline.Graph
	sources  int  // the URLs the graph was built to fetch from
	fromZero bool // the graph discards what an earlier run left
}

// pickTopology is the topology that runs for t, the topology of the
// configuration (prep.topology), and res, the probe's answer (nil before
// the probe): t itself, or for an automatic one the built-in topology res
// calls for. It is the one place that picks a topology.
func (d *Download) pickTopology(t Topology, res *pipeline.Resource) Topology {
	if !t.auto() {
		return t
	}
	return t.pick(d.req.autoTopology(res).Name) // with the stages the download adds
}

// makePlan builds the graph of one attempt of topology (pickTopology's)
// for output, from p's configuration; fromZero discards what an earlier run left;
// sources is the number of URLs the connections are spread over. It
// preflights the graph; the caller releases it (Graph.Release) when the
// attempt is over.
//
// For a built-in topology the library picked, the request's stage keys
// may not fit it (stages.fetch.workers: 8 for ranged.yaml's reader, where
// the stream's fetch is one source): they fit the other candidate, or
// prepare would have refused them. Then the graph is built without them,
// and one line at warn says which problem was left aside: the only case
// where an attempt builds two graphs.
func (d *Download) makePlan(ctx context.Context, p *prep, topology Topology, output string, fromZero bool, sources int) (*plan, error) {
	cfg := *p.cfg // the copy takes this attempt's run-wide settings
	cfg.Output = output
	if output != "" && output == d.replace {
		cfg.Overwrite = true // IfNewer found the server's copy newer
	}
	if fromZero {
		cfg.Resume = false
	}
	g, err := d.assemble(&cfg, p, topology, p.cfg.Stages, sources)
	var ce *config.Error
	if p.overlay && len(p.cfg.Stages) > 0 && errors.As(err, &ce) {
		d.log.Warn().Str("topology", topology.describe()).Str("problem", oneLine(err)).
			Msg("the configuration keys for stages do not fit the topology picked for this download; it runs without them")
		g, err = d.assemble(&cfg, p, topology, nil, sources)
	}
	if err != nil {
		return nil, err
	}
	if err := g.Preflight(ctx, d.log); err != nil {
		g.Release(d.log)
		if d.req.SkipExisting && errors.Is(err, ErrOutputExists) {
			return nil, errSkipped
		}
		return nil, err
	}
	return &plan{topology: topology, graph: g, sources: sources, fromZero: fromZero}, nil
}

// assemble decodes the nodes of topology (with layer, the request's stage
// keys, laid over a built-in topology's stages when p.overlay), meets the
// request's needs, tunes the connections and builds the graph.
func (d *Download) assemble(cfg *config.Config, p *prep, topology Topology, layer map[string]config.StageConfig, sources int) (*pipeline.Graph, error) {
	nodes, unused, err := d.nodesFor(cfg, p, topology, layer)
	if err == nil {
		d.sayUnused(cfg, layer, unused)
		nodes, err = d.meetNeeds(cfg, nodes, topology)
	}
	if err == nil {
		err = d.tune(nodes, topology, sources, true)
	}
	if err != nil {
		return nil, err
	}
	if p.reserved != nil {
		handReservation(nodes, cfg.Output, p.reserved)
	}
	g, err := d.build(cfg, nodes)
	if err == nil {
		err = d.piecesNeed(topology, g)
	}
	return g, err
}

// tune sets the nodes' retries and connections as the request and the
// client ask: Request.Connections per source, spread over sources URLs,
// within the client's cap per host. It says what it changed when say.
func (d *Download) tune(nodes []pipeline.Node, topology Topology, sources int, say bool) error {
	reg := d.client.reg
	applyRetry(reg, nodes, d.req.Retry)
	if n := d.req.Connections; n > 0 && config.SetConnections(reg, nodes, n) == 0 && !d.req.Topology.auto() {
		return connectionsError(topology.describe())
	}
	if scaleForSources(reg, nodes, sources) == 0 && sources > 1 && say {
		d.log.Warn().Str("topology", topology.describe()).Int("mirrors", sources-1).
			Msg("the mirrors are not used: the topology fetches one stream (a file under 16 MiB, a server without ranges, or no stage that fetches ranges)")
	}
	if limit := d.client.maxPerHost; limit > 0 {
		if asked := connectionsOf(reg, nodes); asked > limit {
			capConnections(reg, nodes, limit)
			d.logIf(say).Info().Int("connections", asked).Int("max_per_host", limit).Int("now", connectionsOf(reg, nodes)).
				Msg("fewer connections for this download: the client caps the connections to one host")
		}
	}
	return nil
}

// connectionsOf is what Graph.Connections will say of nodes.
func connectionsOf(reg *pipeline.Registry, nodes []pipeline.Node) int {
	n := 0
	for _, nd := range nodes {
		if info, _ := reg.Describe(nd.Type, nd.Config); info.Connects {
			n += max(nd.Workers, 1)
		}
	}
	return n
}

// handReservation gives the file sink that writes output the PATH.tmp
// reserved for it before the probe.
func handReservation(nodes []pipeline.Node, output string, r *sinks.Reservation) {
	for _, n := range nodes {
		if fc, ok := n.Config.(*sinks.FileConfig); ok && fc.Path == output {
			fc.Reserved = r
		}
	}
}

// nodesFor decodes the nodes of topology from cfg: the stages of the file
// the configuration was loaded with, the request's own nodes, or (for an
// automatic topology) the built-in topology's stages with layer laid over
// them; it returns the ids of layer's stages that the topology does not
// have, whose keys are left out.
func (d *Download) nodesFor(cfg *config.Config, p *prep, topology Topology, layer map[string]config.StageConfig) ([]pipeline.Node, []string, error) {
	switch {
	case topology.Nodes != nil:
		return d.codeNodes(cfg, topology), nil, nil
	case !p.overlay:
		nodes, err := cfg.Nodes(d.client.reg)
		return nodes, nil, err
	}
	return d.overlayNodes(cfg, topology, layer)
}

// sayUnused says at info each key of layer's stages unused, which the
// topology picked does not have.
func (d *Download) sayUnused(cfg *config.Config, layer map[string]config.StageConfig, unused []string) {
	for _, id := range unused {
		for _, key := range stageKeysOf(id, layer[id]) {
			from := cfg.Position(key).File
			if strings.HasPrefix(from, "$"+config.EnvPrefix) {
				from = "environment"
			}
			from, _, _ = strings.Cut(from, " ")
			d.log.Info().Str("key", key).Str("from", from).Msg("ignored: the topology picked for this download has no such stage")
		}
	}
}

// stageKeysOf lists the keys sc sets of stage id, sorted.
func stageKeysOf(id string, sc config.StageConfig) []string {
	prefix := "stages." + id + "."
	var keys []string
	if sc.Type != "" {
		keys = append(keys, prefix+"type")
	}
	if sc.Inputs != nil {
		keys = append(keys, prefix+"inputs")
	}
	if sc.Workers != 0 {
		keys = append(keys, prefix+"workers")
	}
	if sc.Queue != 0 {
		keys = append(keys, prefix+"queue")
	}
	var walk func(string, map[string]any)
	walk = func(at string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(at+k+".", sub)
				continue
			}
			keys = append(keys, at+k)
		}
	}
	walk(prefix+"config.", sc.Config)
	slices.Sort(keys)
	return keys
}

// overlayNodes decodes the stages of the built-in topology name with
// layer (the request's stage keys) laid over them, into cfg's stages. It
// returns the ids of layer's stages the topology does not have.
func (d *Download) overlayNodes(cfg *config.Config, t Topology, layer map[string]config.StageConfig) ([]pipeline.Node, []string, error) {
	base, err := builtinStages(t.Name)
	if err == nil {
		base, err = applyInserts(cfg, t.Name, base) // the stages the download adds
	}
	if err != nil {
		return nil, nil, err
	}
	stages := make(map[string]config.StageConfig, len(base))
	for id, sc := range base {
		stages[id] = overlayStage(sc, layer[id])
	}
	var unused []string
	for id := range layer {
		if _, ok := base[id]; !ok {
			unused = append(unused, id)
		}
	}
	slices.Sort(unused)
	cfg.Stages = stages
	nodes, err := cfg.Nodes(d.client.reg)
	return nodes, unused, err
}

// overlayStage lays top over base: each key top sets wins.
func overlayStage(base, top config.StageConfig) config.StageConfig {
	if top.Type != "" {
		base.Type = top.Type
	}
	if top.Inputs != nil {
		base.Inputs = top.Inputs
	}
	if top.Workers != 0 {
		base.Workers = top.Workers
	}
	if top.Queue != 0 {
		base.Queue = top.Queue
	}
	base.Config = mergeTree(base.Config, top.Config)
	return base
}

// mergeTree returns a copy of base with top's keys laid over it, maps
// merged key by key.
func mergeTree(base, top map[string]any) map[string]any {
	if len(top) == 0 {
		return base
	}
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range top {
		bm, ok1 := out[k].(map[string]any)
		tm, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = mergeTree(bm, tm)
			continue
		}
		out[k] = v
	}
	return out
}

// builtinStages returns the stages a built-in topology declares, read from
// its YAML once per process. Callers must not change the result.
func builtinStages(name string) (map[string]config.StageConfig, error) {
	name = builtinName(name)
	if s, ok := builtins.Load(name); ok {
		return s.(map[string]config.StageConfig), nil
	}
	data, err := examples.FS.ReadFile(name)
	if err != nil {
		return nil, requestErrorf("Topology", "no built-in topology %q", name)
	}
	cfg, err := config.Load(config.Options{File: "(built-in) " + name, Data: data, Environ: []string{}})
	if err != nil {
		return nil, err
	}
	builtins.Store(name, cfg.Stages)
	return cfg.Stages, nil
}

// builtins holds builtinStages' answers, by file name.
var builtins sync.Map

// checkCandidates finds, before the probe and without building a graph,
// stage keys of an automatic topology that fit none of the built-in
// topologies the probe may pick: each must decode for one of them. It
// returns the nodes of the first candidate they fit, for the probe.
func (d *Download) checkCandidates(cfg *config.Config, names []string) ([]pipeline.Node, error) {
	var first error
	for _, name := range names {
		c := *cfg
		c.Output = "check" // a file sink's path; its stages are not built
		nodes, _, err := d.overlayNodes(&c, Topology{Name: name}, cfg.Stages)
		if err == nil {
			err = workersFit(d.client.reg, &c, nodes)
		}
		var ce *config.Error
		if err == nil || !errors.As(err, &ce) {
			return nodes, err
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// workersFit checks each node's workers against what its type can run,
// as Build will.
func workersFit(reg *pipeline.Registry, cfg *config.Config, nodes []pipeline.Node) error {
	var errs []*config.KeyError
	for _, n := range nodes {
		info, ok := reg.Describe(n.Type, n.Config)
		if !ok {
			continue
		}
		if most := info.MaxWorkers; most > 0 && n.Workers > most {
			key := "stages." + n.ID + ".workers"
			errs = append(errs, &config.KeyError{Key: key, Pos: cfg.Position(key),
				Msg: fmt.Sprintf("%s runs at most %d workers", n.Type, most)})
		}
	}
	if errs != nil {
		return &config.Error{Errs: errs}
	}
	return nil
}

// probeOptions makes the probe the first request of a graph of nodes: it
// asks for the first piece of a topology that splits the file (its
// largest range), or for the whole file (one stream), and keeps the answer
// for the stage that needs those bytes; and it retries as the nodes' HTTP
// stage. For the automatic topology the ranged candidate's nodes are
// given: a file shorter than its first piece then takes one request
// whichever topology runs. It builds no graph.
//
// A topology whose readers each ask for their whole share in one request
// (openFirstShare) gets a probe for all of the file (`bytes=0-`): the
// reader that takes the answer reads it to the end of its share, so that
// each connection makes one request. A probe for the first piece only
// would make the first connection ask a second time, and on a server
// that caps each request (nginx's limit_rate) a new request starts its
// cap over: that connection ended last.
func probeOptions(reg *pipeline.Registry, nodes []pipeline.Node, retry *Retry) httpx.ProbeOptions {
	nodes = append([]pipeline.Node(nil), nodes...)
	applyRetry(reg, nodes, retry)
	var opts httpx.ProbeOptions
	for _, n := range nodes {
		if info, ok := reg.Describe(n.Type, n.Config); ok && n.Config != nil {
			opts.Prefetch = max(opts.Prefetch, info.MaxRange)
		}
	}
	if opts.Prefetch == 0 || openFirstShare(reg, nodes) {
		opts.Prefetch = -1 // the whole file
	}
	for _, n := range nodes {
		if rp, ok := n.Config.(httpx.RetryPolicy); ok {
			opts.Retry = rp.RetryPolicy()
			break
		}
	}
	return opts
}

// openFirstShare reports whether the range readers of nodes ask for their
// share of the file in one request (stages.ShareRequests), and no reorder
// window makes them ask for one piece at a time. A hash.tap's window binds
// only while a checksum is checked; then the first reader reads a piece of
// the open answer and drops its connection, which costs one new connection.
func openFirstShare(reg *pipeline.Registry, nodes []pipeline.Node) bool {
	readers := 0
	for _, n := range nodes {
		if sr, ok := n.Config.(interface{ ShareRequests() bool }); ok {
			if !sr.ShareRequests() {
				return false
			}
			readers++
		}
		if info, ok := reg.Describe(n.Type, n.Config); ok && info.Window > 0 && n.Type != "hash.tap" {
			return false
		}
	}
	return readers > 0
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// logIf is the download's logger when say, else one that says nothing.
func (d *Download) logIf(say bool) *zerolog.Logger {
	if say {
		return &d.log
	}
	nop := zerolog.Nop()
	return &nop
}
