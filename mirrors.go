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
// without the primary, checked as URLs.
func (d *Download) mirrors(pre *config.Config) ([]string, error) {
	var out []string
	for _, m := range slices.Concat(pre.Mirrors, d.req.Mirrors) {
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

// runSources is runOnce, and when the run fails its checksum with bytes
// from several sources, once more from the primary alone and from zero: a
// mirror may serve other bytes of the same size, and a checksum of the
// whole file cannot tell which one did. Not with a Request.Writer, which
// has the bad bytes already.
func (d *Download) runSources(ctx context.Context, res *pipeline.Resource, output string, fromZero bool, releaseProbe func()) error {
	err := d.runOnce(ctx, res, output, fromZero, releaseProbe)
	if len(res.Mirrors) == 0 || !errors.Is(err, pipeline.ErrCorrupt) || ctx.Err() != nil || d.req.Writer != nil || !d.mirrorsDelivered() {
		// A Writer has taken the bytes already: they cannot be taken back.
		// Bytes from the primary alone (a stream) would come again.
		return err
	}
	d.log.Warn().Err(err).Int("mirrors", len(res.Mirrors)).
		Msg("the bytes from several sources failed verification; downloading again from the primary URL alone")
	d.sources = 1
	alone := *res
	alone.Mirrors, alone.Prefetched = nil, nil
	if err := d.runOnce(ctx, &alone, output, true, releaseProbe); err != nil {
		return fmt.Errorf("from the primary URL alone, after a mirror's bytes failed verification: %w", err)
	}
	return nil
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
