package dlflow

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// prepare finds what is wrong with the request without any network I/O
// (reading a Metalink aside, when ctx is not nil) and returns what the
// download knows before its probe: the configuration, loaded once, the
// Metalink's URLs and checksum applied to it, the mirrors, how the probe
// asks, and the stage keys checked against the topology (for the automatic
// one, against the built-in topologies the probe may pick). A URL is
// required with needURL. A topology the user chose is built to check its
// wiring when run will not build its graph before the probe.
func (d *Download) prepare(ctx context.Context, needURL bool) (*prep, error) {
	req := d.req
	if err := req.check(); err != nil {
		return nil, err
	}
	topology, err := req.Topology.resolve() // a file that extends auto is automatic
	if err != nil {
		return nil, err
	}
	cfg, err := d.load(topology)
	if err != nil {
		return nil, err
	}
	asked := req.Mirrors
	if ctx != nil && req.Metalink != "" {
		if asked, err = d.applyMetalink(ctx, cfg); err != nil {
			return nil, err
		}
	}
	switch {
	case strings.TrimSpace(cfg.URL) != "":
		if _, err := httpx.CheckURL(cfg.URL); err != nil {
			return nil, &RequestError{Field: "URL", Err: err}
		}
	case needURL:
		return nil, requestErrorf("URL", "no URL")
	}
	if _, _, err := d.client.httpClient(cfg.HTTP); err != nil {
		return nil, &RequestError{Field: "Config", Err: err}
	}
	if err := d.checkBackends(cfg); err != nil {
		return nil, err
	}
	p := &prep{cfg: cfg, topology: topology, overlay: topology.auto()}
	if p.mirrors, err = d.mirrors(cfg, asked); err != nil {
		return nil, err
	}
	if p.overlay && sinks.IsObjectURL(cfg.Output) {
		p.topology = topology.pick("s3")
	}
	var nodes []pipeline.Node
	switch {
	case p.topology.extended():
		if _, err = d.checkCandidates(cfg, req.autoTopologies()); err == nil {
			nodes, err = d.checkEveryCandidate(p, req.autoTopologies())
		}
	case p.topology.auto():
		nodes, err = d.checkCandidates(cfg, req.autoTopologies())
	default:
		nodes, err = d.checkFixed(p, needURL)
	}
	if err != nil {
		return nil, err
	}
	p.probe = probeOptions(d.client.reg, nodes, req.Retry)
	return p, nil
}

// checkFixed checks the stage keys of a topology the probe does not pick,
// and returns its nodes, for the probe. Its wiring is checked by the graph
// that run builds before the probe, when the output is known then (or the
// download writes to a Writer); otherwise here, by a graph built for the
// check alone.
func (d *Download) checkFixed(p *prep, forRun bool) ([]pipeline.Node, error) {
	c := *p.cfg
	if c.Output == "" && d.req.Writer == nil {
		c.Output = "check" // a file sink needs one to be built
	}
	nodes, _, err := d.nodesFor(&c, p, p.topology, p.cfg.Stages)
	if err == nil {
		nodes, err = d.meetNeeds(&c, nodes, p.topology)
	}
	if err != nil {
		return nil, err
	}
	if err := d.tune(nodes, p.topology, len(p.mirrors)+1, false); err != nil {
		return nil, err
	}
	if forRun && (p.cfg.Output != "" || d.req.Writer != nil) {
		return nodes, nil
	}
	_, err = d.build(&c, nodes)
	return nodes, err
}

// checkOutput places and claims the output the configuration names, and
// lets the stages refuse it before the probe (it exists, its directory is
// not writable, another download holds it): a topology the probe does not
// pick builds its graph (the first plan) and preflights it; the automatic
// one reserves the output for the graph built after the probe. It returns
// the output, "" when the probe names it (or for a Writer).
func (d *Download) checkOutput(ctx context.Context, p *prep) (string, error) {
	req, output := d.req, ""
	if req.Writer != nil {
		d.log.Info().Msg("writing to a writer, not a file: no resume, an interrupted download starts over")
	}
	if p.cfg.Output != "" && req.Writer == nil {
		var err error
		if output, err = placeOutput(req.Dir, p.cfg.Output); err != nil {
			return "", &RequestError{Field: "Path", Err: err}
		}
		d.setInfo(func(i *Info) { i.Path = output })
		if err := d.claimOutput(output); err != nil {
			return "", err
		}
		if _, err := os.Lstat(output + ".tmp"); err == nil && !req.NoResume {
			// An earlier run left the first bytes, likely: a probe that
			// fetched them again would throw them away. HEAD is for this.
			// (Asked before the preflight, which makes PATH.tmp.)
			p.probe.Prefetch = 0
		}
		if req.IfNewer && isFile(output) {
			d.replace = output // the check after decides; the preflight must not refuse it
		}
	}
	if output == "" && req.Writer == nil {
		return "", nil
	}
	var err error
	switch {
	case !p.topology.auto():
		p.first, err = d.makePlan(ctx, p, p.topology, output, false, len(p.mirrors)+1)
	case req.Extract != "":
		// The archive backend is not the root package's to import, so its
		// sink is checked on a graph: the stream candidate's, which the
		// first attempt runs if the probe picks it.
		p.first, err = d.makePlan(ctx, p, Topology{Name: extractStream}, output, false, len(p.mirrors)+1)
	case req.Writer == nil:
		// file.sink, the sink of every candidate, takes the reservation.
		if p.reserved, err = sinks.Reserve(output, p.cfg.Overwrite || output == d.replace); err != nil {
			err = &pipeline.StageError{Stage: "write", Type: "file.sink", Err: err}
		}
		if d.req.SkipExisting && errors.Is(err, ErrOutputExists) {
			err = errSkipped
		}
	}
	return output, err
}

// release gives back what p holds for the run: the graph built before the
// probe, if no attempt ran it, and the output reserved.
func (p *prep) release(d *Download) {
	if p.first != nil {
		p.first.graph.Release(d.log)
	}
	if err := p.reserved.Release(); err != nil {
		d.log.Warn().Err(err).Msg("could not remove the empty partial download made before the run")
	}
}
