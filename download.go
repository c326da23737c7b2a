package dlflow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sourcegraph/conc/panics"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/metalink"
	"github.com/dlflow/dlflow/pipeline"
)

// rangedThreshold is the smallest size for which the automatic topology
// splits the download into ranges: below it, the extra requests cost more
// than the parallelism buys.
const rangedThreshold = 16 << 20

// Download is a download that Client.Start started: a handle to watch it,
// cancel it and wait for its end. Its methods are safe for concurrent use.
type Download struct {
	client *Client
	// req is the request Start was given; nothing changes it (what a
	// Metalink fills in goes into the download's configuration).
	req    *Request
	log    zerolog.Logger
	cancel context.CancelCauseFunc
	done   chan struct{}
	begun  time.Time
	hooks  batchHooks
	// asked is the URL asked for, redacted, once the configuration named it.
	asked string
	ml    metalinkUse
	// out is Request.Writer, counted; nil without one.
	out *countingWriter
	// replace is the existing output that IfNewer found older than the
	// server's copy: the run may replace it.
	replace string

	// Set before done is closed.
	result *Result
	err    error

	mu      sync.Mutex
	info    Info
	taps    []pipeline.ProgressReporter   // of the graph running
	conns   []pipeline.ConnectionReporter // of the graph running
	srcReps []pipeline.SourceReporter     // of the graph running
	rate    rateMeter
	stats   runStats
	started bool // a graph started: Path.tmp may hold data
}

// batchHooks are what a batch gives a download; all nil alone.
type batchHooks struct {
	// claim reserves the output for this download within its batch.
	claim func(path string) error
	// gate, when set, is passed before the first request; transferred,
	// when set, is called once the bytes are all in, before the sink makes
	// them durable. A batch's transfer slot is held between the two.
	gate        func(context.Context) error
	transferred func()
}

// metalinkUse is what a download took from its Metalink, set by its run
// (applyMetalink, metalinkResource) and read by it and, after, by its
// result.
type metalinkUse struct {
	// file is the request's Metalink file, once read; nil without one.
	file *metalink.File
	// urlFrom: its most preferred URL became the download's URL, which
	// the user did not name (credentialOwners); sizeFrom: the resource's
	// size is the Metalink's, as the server did not say one;
	// checksumFrom: the checksum verified is the Metalink's.
	urlFrom, sizeFrom, checksumFrom bool
}

// Info describes a download once its probe answered.
type Info struct {
	// URL is the final URL after redirects, redacted (no password).
	URL string
	// Path is the output; "" for a download to Request.Writer.
	Path string
	// Size is the resource's length, -1 when the server did not say.
	Size int64
	// Ranges reports whether the server answers range requests.
	Ranges bool
	// Topology names the graph that runs: the file, or
	// "(built-in) NAME.yaml".
	Topology string
	// Connections is the most connections the graph opens at once.
	Connections int
	// MemoryBound is the most buffer memory the graph can hold.
	MemoryBound pipeline.ByteSize
}

// Start starts downloading req in the background and returns its handle at
// once. Cancelling ctx cancels the download. Problems with the request
// itself come back from Wait as a *RequestError.
func (c *Client) Start(ctx context.Context, req *Request) *Download {
	return c.start(ctx, req, nil)
}

// start is Start with a batch's claim on the output.
func (c *Client) start(ctx context.Context, req *Request, claim func(path string) error) *Download {
	return c.startWith(ctx, req, claim, nil, nil)
}

// startWith is start with a gate that the download passes before its
// first request, after it checked its configuration and output, and a
// function called once its bytes are all in (see
// pipeline.RunOptions.Transferred); nil for none. A batch's transfer
// slots are taken and given back by them.
func (c *Client) startWith(ctx context.Context, req *Request, claim func(path string) error, gate func(context.Context) error, transferred func()) *Download {
	stopTimer := func() {}
	if req.MaxTime > 0 {
		// The cause, not the deadline: Wait's error says what stopped it.
		var timed context.CancelCauseFunc
		ctx, timed = context.WithCancelCause(ctx)
		t := time.AfterFunc(req.MaxTime, func() { timed(&MaxTimeError{MaxTime: req.MaxTime}) })
		stopTimer = func() { t.Stop(); timed(nil) }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	d := &Download{client: c, req: req, log: c.logger(ctx), cancel: cancel, done: make(chan struct{}), begun: time.Now(),
		hooks: batchHooks{claim: claim, gate: gate, transferred: transferred}}
	if req.Label != "" {
		d.log = d.log.With().Str("download", req.Label).Logger()
	}
	if req.Writer != nil {
		d.out = &countingWriter{w: req.Writer}
	}
	d.info.Size = -1
	go func() {
		defer close(d.done)
		defer stopTimer()
		defer cancel(nil)
		var err error
		if r := panics.Try(func() { err = d.run(ctx) }); r != nil {
			err = r.AsError()
		}
		d.explainChecksum(err)
		if err != nil && ctx.Err() != nil {
			// Cancelled (say, during the probe): the cause is the reason,
			// whatever the request said.
			err = context.Cause(ctx)
		}
		d.result = d.finalResult(err)
		if errors.Is(err, errSkipped) || errors.Is(err, errUpToDate) {
			err = nil
		}
		d.err = err
	}()
	return d
}

// Wait waits for the download to end and returns its result, which is
// never nil: on failure it says how far the download got. The error is nil
// only when the output is complete (and verified, where a checksum was
// set), or skipped as asked.
func (d *Download) Wait() (*Result, error) {
	<-d.done
	return d.result, d.err
}

// Done is closed when the download has ended.
func (d *Download) Done() <-chan struct{} { return d.done }

// Cancel stops the download; Wait then returns an error that wraps
// context.Canceled. The partial data stays for a later resume.
func (d *Download) Cancel() { d.cancel(context.Canceled) }

// Request returns the request that Start was given, as it was given: not
// what a Metalink filled in. It is safe for concurrent use.
func (d *Download) Request() *Request { return d.req }

// Info describes the download; its fields are zero until the probe
// answered (Hooks.Started).
func (d *Download) Info() Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info
}

// run is the whole download: configuration, output checks, probe, and
// one attempt (a plan) or more: one restart if the file changed on the
// server, one more from the primary alone if a mirror's bytes failed.
func (d *Download) run(ctx context.Context) error {
	p, err := d.prepare(ctx, true)
	if err != nil {
		return err
	}
	defer p.release(d)
	d.mu.Lock()
	d.info.URL, d.asked = httpx.RedactURL(p.cfg.URL), httpx.RedactURL(p.cfg.URL)
	d.mu.Unlock()
	owners := d.credentialOwners(p.cfg.URL)
	client, header, err := d.client.httpClient(p.cfg.HTTP, owners...)
	if err != nil {
		return &RequestError{Field: "Config", Err: err} // it names the http.* key
	}
	d.warnUncredentialed(header, owners, append([]string{p.cfg.URL}, p.mirrors...))
	if p.cfg.HTTP.Insecure {
		d.log.Warn().Msg("TLS certificate verification is off (http.insecure): anyone on the network path can read and alter the download")
	}
	output, err := d.checkOutput(ctx, p)
	if err != nil {
		return err
	}
	if d.hooks.gate != nil {
		if err := d.hooks.gate(ctx); err != nil {
			return err
		}
	}
	if d.req.IfNewer && d.req.Writer == nil {
		if err := d.ifNewer(ctx, client, header, p.cfg.URL, output, p.probe.Retry); err != nil {
			return err
		}
	}
	res, releaseProbe, err := d.probe(ctx, client, header, p.cfg.URL, p.probe)
	if err != nil {
		return err
	}
	// The probe's open answer is the run's to take; if no run takes it
	// (the output exists, say), it must not keep its connection. Its
	// connection counts against the host's limit until then.
	pr := &probed{res: res, release: releaseProbe}
	defer pr.close()
	if err := d.resource(res, p); err != nil {
		return err
	}
	if output == "" && d.req.Writer == nil {
		if output, err = placeIn(d.req.Dir, defaultName(res)); err != nil {
			return &RequestError{Field: "Path", Err: err}
		}
		d.setInfo(func(i *Info) { i.Path = output })
		if err := d.claimOutput(output); err != nil {
			return err
		}
	}
	return d.attempts(ctx, p, pr, output, client, header)
}

// probed is the probe's answer and the host connection it holds, which
// a restart replaces.
type probed struct {
	res     *pipeline.Resource
	release func()
}

func (pr *probed) close() {
	closePrefetched(pr.res)
	pr.release()
}

// closePrefetched closes the probe's open answer unless a stage took it.
func closePrefetched(res *pipeline.Resource) {
	if res != nil && res.Prefetched != nil {
		res.Prefetched.Close()
	}
}

// resource completes the probe's answer with the mirrors and the
// Metalink's size, name and piece hashes.
func (d *Download) resource(res *pipeline.Resource, p *prep) error {
	addMirrors(res, p.mirrors, p.cfg)
	return d.metalinkResource(res)
}

// attempts runs the plans of the download: the first, and one restart
// from zero, with a new plan, if the file changed on the server.
func (d *Download) attempts(ctx context.Context, p *prep, pr *probed, output string, client *http.Client, header http.Header) error {
	for restarted := false; ; restarted = true {
		err := d.runSources(ctx, p, pr, output, restarted)
		if err == nil {
			d.keepLastModified(output, pr.res)
		}
		if errors.Is(err, httpx.ErrResourceChanged) && d.ml.sizeFrom {
			// The server said no size: what differs is its body and the
			// metalink's size, which another try does not change.
			return fmt.Errorf("%w (the size is the metalink's: the server did not send one)", err)
		}
		if !errors.Is(err, httpx.ErrResourceChanged) || restarted || ctx.Err() != nil {
			return err
		}
		if d.wrote() {
			return fmt.Errorf("%w; the bytes of the old version went out to the writer already, so the download cannot start over", err)
		}
		// The bytes so far belong to the old version and must never be
		// mixed with the new one: probe again and start from zero, once. A
		// second change fails, so a file that changes all the time cannot
		// loop.
		d.log.Warn().Err(err).Msg("the file changed on the server; probing again and restarting the download from zero")
		pr.release()
		res, release, err := d.probe(ctx, client, header, p.cfg.URL, p.probe)
		if err != nil {
			pr.release = noRelease
			return fmt.Errorf("after the file changed: %w", err)
		}
		pr.res, pr.release = res, release
		if err := d.resource(res, p); err != nil {
			return err
		}
	}
}

// runOnce runs the plan pl for res and output. The probe holds one
// connection of the host's (until pr.release), whose answer the graph
// reads: the run takes the others it needs if they are free; else, so as
// never to wait holding one while others wait holding theirs, it drops the
// probe's answer and its connection and waits for all it needs.
func (d *Download) runOnce(ctx context.Context, pl *plan, res *pipeline.Resource, output string, pr *probed) error {
	g := pl.graph
	d.warnConnections(g, res)
	need, host := max(g.Connections(), 1), hostKey(res.URL)
	release, ok := noRelease, false
	if host == hostKey(res.Requested) { // the probe's slot is this host's
		release, ok = d.client.hosts.tryAcquire(host, need-1)
	}
	if !ok {
		closePrefetched(res)
		pr.release()
		var err error
		if release, err = d.client.hosts.acquire(ctx, host, need); err != nil {
			return err
		}
	}
	// The host's connections are free once the bytes are all in: making
	// them durable needs none.
	release = sync.OnceFunc(release)
	defer release()
	d.begin(pl, res, output)
	d.log.Info().Str("url", httpx.RedactURL(res.URL)).Int64("size", res.Size).Bool("ranges", res.AcceptRanges).
		Str("output", output).Stringer("memory_bound", g.MemoryBound()).Msg("starting")

	start := time.Now()
	transferred := func() {
		release()
		if d.hooks.transferred != nil {
			d.hooks.transferred()
		}
	}
	err := g.Run(ctx, pipeline.RunOptions{Resource: res, Log: d.log, Metrics: d.req.Metrics, Trace: d.req.Trace, Transferred: transferred})
	d.mu.Lock()
	d.stats.add(g)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	d.log.Info().Str("output", output).Int64("bytes", res.Size).Float64("elapsed_s", elapsed.Seconds()).
		Float64("rate", float64(max(res.Size, 0))/elapsed.Seconds()).Msg("done")
	return nil
}

// begin records the graph of pl as the one running, for Info and
// Progress, and calls Hooks.Started.
func (d *Download) begin(pl *plan, res *pipeline.Resource, output string) {
	g := pl.graph
	d.setInfo(func(i *Info) {
		i.URL, i.Path, i.Size, i.Ranges = httpx.RedactURL(res.URL), output, res.Size, res.AcceptRanges
		i.Topology, i.Connections, i.MemoryBound = pl.topology.describe(), max(g.Connections(), 1), g.MemoryBound()
	})
	// The rate is measured from here: Progress called from Started, or
	// 100 ms after it, already has a baseline.
	d.mu.Lock()
	d.taps = pipeline.Reporters[pipeline.ProgressReporter](g)
	d.conns = pipeline.Reporters[pipeline.ConnectionReporter](g)
	d.srcReps = pipeline.Reporters[pipeline.SourceReporter](g)
	d.started = true
	d.rate = newRateMeter(time.Now())
	d.mu.Unlock()
	if h := d.req.Hooks.Started; h != nil {
		h(d)
	}
}

// warnConnections says, in one line at warn (the default level), where
// the server is the limit: the download runs on one connection where the
// request asked for more, or its mirrors go unused, because the server
// does not answer range requests or does not say the size.
func (d *Download) warnConnections(g *pipeline.Graph, res *pipeline.Resource) {
	noRanges := !res.AcceptRanges || res.Size < 0
	switch {
	case d.req.Connections > 1 && noRanges:
		d.log.Warn().Int("connections", d.req.Connections).Int("mirrors", len(res.Mirrors)).
			Msg("downloading over one connection: the server does not answer range requests or does not say the size")
	case d.req.Connections > 1 && g.Connections() <= 1:
		d.log.Warn().Int("connections", d.req.Connections).Msg("downloading over one connection: the file is smaller than 16 MiB")
	case len(res.Mirrors) > 0 && noRanges && g.Connections() > 1:
		// (An automatic topology picked the stream: tune said it.)
		d.log.Warn().Int("mirrors", len(res.Mirrors)).
			Msg("the mirrors are not used: the server does not answer range requests or does not say the size")
	}
}

// errSkipped ends a download whose output exists when the request says to
// skip it.
var errSkipped = errors.New("skipped: the output exists")

// probe asks the server about rawURL, holding one connection of the
// host's, which release gives back: the run that reads the probe's answer
// counts it among its own.
func (d *Download) probe(ctx context.Context, client *http.Client, header http.Header, rawURL string, opts httpx.ProbeOptions) (res *pipeline.Resource, release func(), err error) {
	release, err = d.client.hosts.acquire(ctx, hostKey(rawURL), 1)
	if err != nil {
		return nil, noRelease, err
	}
	defer func() {
		if err != nil {
			release()
			release = noRelease
		}
	}()
	// The probe is the download's first GET: its answer, kept open, carries
	// the first piece (see probeOptions). It retries as the topology's HTTP
	// stage does, within one budget of the client's header timeout.
	opts.Log = d.log
	res, stats, err := httpx.ProbeWith(ctx, client, header, rawURL, opts)
	d.mu.Lock()
	d.stats.retries += int64(stats.Retries)
	d.mu.Unlock()
	switch {
	case errors.Is(err, httpx.ErrInvalidURL):
		return nil, release, &RequestError{Field: "URL", Err: err}
	case err != nil:
		return nil, release, &ProbeError{URL: httpx.RedactURL(rawURL), Err: err}
	}
	return res, release, nil
}

// codeNodes returns the request's own nodes with the run-wide settings
// of cfg taken.
func (d *Download) codeNodes(cfg *config.Config, topology Topology) []pipeline.Node {
	nodes := append([]pipeline.Node(nil), topology.Nodes...)
	for i := range nodes {
		defaults, ok := d.client.reg.NewConfig(nodes[i].Type)
		if !ok {
			continue // Build names it
		}
		if nodes[i].Config == nil {
			nodes[i].Config = defaults
		}
		if st, ok := nodes[i].Config.(pipeline.SettingsTaker); ok {
			st.TakeSettings(cfg.Settings())
		}
	}
	return nodes
}

// build builds nodes, with config positions in wiring errors when they came
// from a file.
func (d *Download) build(cfg *config.Config, nodes []pipeline.Node) (*pipeline.Graph, error) {
	counts.builds.Add(1)
	if d.req.Topology.Nodes != nil {
		return pipeline.Build(d.client.reg, nodes)
	}
	return cfg.Build(d.client.reg, nodes)
}

// capConnections shares limit connections among the nodes that connect, at
// least one each.
func capConnections(reg *pipeline.Registry, nodes []pipeline.Node, limit int) {
	var connecting []*pipeline.Node
	for i := range nodes {
		if info, _ := reg.Describe(nodes[i].Type, nil); info.Connects {
			connecting = append(connecting, &nodes[i])
		}
	}
	for _, n := range connecting {
		n.Workers = min(max(n.Workers, 1), max(limit/len(connecting), 1))
	}
}

// claimOutput reserves output for this download within its batch.
func (d *Download) claimOutput(output string) error {
	if d.hooks.claim == nil {
		return nil
	}
	return d.hooks.claim(output)
}

func (d *Download) setInfo(f func(*Info)) {
	d.mu.Lock()
	f(&d.info)
	d.mu.Unlock()
}

// partial is the file that holds what a failed download received, or "".
func (d *Download) partial() string {
	d.mu.Lock()
	path, started := d.info.Path, d.started
	d.mu.Unlock()
	if !started || path == "" {
		return ""
	}
	if _, err := os.Lstat(path + ".tmp"); err != nil {
		return ""
	}
	return path + ".tmp"
}
