package dlflow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// MaxSources is the most URLs (the primary and its mirrors) one download
// fetches from.
const MaxSources = 16

// mirrors returns the mirrors of the download: the configuration's (a
// url list, the mirrors key) then the request's, without duplicates and
// without the primary, checked as URLs. asked are the request's (with a
// Metalink's URLs first).
func (d *Download) mirrors(pre *config.Config, asked []string) ([]string, error) {
	var out []string
	for _, m := range slices.Concat(pre.Mirrors, asked) {
		if m == pre.URL || slices.Contains(out, m) {
			continue
		}
		if _, err := httpx.CheckURL(m); err != nil {
			return nil, &RequestError{Field: "Mirrors", Err: err}
		}
		out = append(out, m)
	}
	if len(out)+1 > MaxSources {
		return nil, requestErrorf("Mirrors", "at most %d sources (the URL and %d mirrors), got %d", MaxSources, MaxSources-1, len(out)+1)
	}
	return out, nil
}

// addMirrors hands the mirrors to the run's stages through the resource.
// A checksum in the configuration guards the bytes: then a mirror whose
// validators differ from the primary's may serve them.
func addMirrors(res *pipeline.Resource, mirrors []string, pre *config.Config) {
	if len(mirrors) == 0 {
		return
	}
	res.Mirrors = slices.DeleteFunc(slices.Clone(mirrors), func(m string) bool { return m == res.URL })
	res.Guarded = pre.Checksum != ""
}

// scaleForSources makes each connecting stage that takes ranges open its
// connections to every source (Request.Connections is per source), at
// most MaxConnections in all.
// It returns how many stages it scaled.
func scaleForSources(reg *pipeline.Registry, nodes []pipeline.Node, sources int) int {
	if sources < 2 {
		return 0
	}
	scaled := 0
	for i := range nodes {
		nd := &nodes[i]
		if nd.Config == nil {
			continue
		}
		if info, _ := reg.Describe(nd.Type, nd.Config); !info.Connects || info.Consumes != pipeline.Ranges || info.MaxWorkers == 1 {
			continue
		}
		nd.Workers = min(max(nd.Workers, 1)*sources, MaxConnections)
		scaled++
	}
	return scaled
}

// runSources makes the plan of an attempt and runs it (runOnce), and when
// the run fails its checksum with bytes from several sources, makes a new
// plan and runs it once more from the primary alone and from zero: a
// mirror may serve other bytes of the same size, and a checksum of the
// whole file cannot tell which one did. Not with a Request.Writer, which
// has the bad bytes already. The first attempt runs the plan made before
// the probe, if there is one.
func (d *Download) runSources(ctx context.Context, p *prep, pr *probed, output string, fromZero bool) error {
	res := pr.res
	err := d.attempt(ctx, p, pr, res, output, fromZero, len(res.Mirrors)+1)
	if len(res.Mirrors) == 0 || !errors.Is(err, pipeline.ErrCorrupt) || ctx.Err() != nil || d.req.Writer != nil || !d.mirrorsDelivered() {
		// A Writer has taken the bytes already: they cannot be taken back.
		// Bytes from the primary alone (a stream) would come again.
		return err
	}
	d.log.Warn().Err(err).Int("mirrors", len(res.Mirrors)).
		Msg("the bytes from several sources failed verification; downloading again from the primary URL alone")
	alone := *res
	alone.Mirrors, alone.Prefetched = nil, nil
	if err := d.attempt(ctx, p, pr, &alone, output, true, 1); err != nil {
		return fmt.Errorf("from the primary URL alone, after a mirror's bytes failed verification: %w", err)
	}
	return nil
}

// attempt makes the plan of one attempt (or takes the one made before the
// probe, when it is of the topology picked, for these sources) and runs
// it.
func (d *Download) attempt(ctx context.Context, p *prep, pr *probed, res *pipeline.Resource, output string, fromZero bool, sources int) error {
	topology := d.pickTopology(p.topology, res)
	pl := p.first
	p.first = nil
	if pl == nil || pl.fromZero != fromZero || pl.sources != sources || pl.topology.describe() != topology.describe() {
		if pl != nil {
			pl.graph.Release(d.log)
		}
		var err error
		if pl, err = d.makePlan(ctx, p, topology, output, fromZero, sources); err != nil {
			return err
		}
	}
	defer pl.graph.Release(d.log)
	return d.runOnce(ctx, pl, res, output, pr)
}

// warnUncredentialed says, once per download, which of its sources get
// none of the credentials of header because their origin is not an
// owner's (httpx.NewClientOn): a mirror that needs them fails with 401 and
// is dropped, and the user should know why. A source with its own userinfo
// has its own credentials.
func (d *Download) warnUncredentialed(header http.Header, owners, sources []string) {
	secret := false
	for name := range header {
		secret = secret || httpx.IsSecretHeader(name)
	}
	if !secret {
		return
	}
	var owned []httpx.Origin
	for _, o := range owners {
		if u, err := url.Parse(o); err == nil {
			owned = append(owned, httpx.OriginOf(u))
		}
	}
	var without []string
	for _, s := range sources {
		if u, err := url.Parse(s); err == nil && u.User == nil && !slices.Contains(owned, httpx.OriginOf(u)) {
			without = append(without, httpx.RedactURL(s))
		}
	}
	if len(without) > 0 {
		d.log.Warn().Strs("sources", without).
			Msg("the credentials go only to the origin named (scheme, host and port); these sources get none: give a mirror its own in its URL (https://user:pass@host/...)")
	}
}

// mirrorsDelivered reports whether a mirror delivered bytes in the last
// run: without, the primary's bytes failed, and fetching them again from
// it alone would only repeat that.
func (d *Download) mirrorsDelivered() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, s := range d.stats.sources {
		if i > 0 && s.Bytes > 0 {
			return true
		}
	}
	return false
}
