package dlflow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sourcegraph/conc/panics"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/metalink"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// rangedThreshold is the smallest size for which the automatic topology
// splits the download into ranges: below it, the extra requests cost more
// than the parallelism buys.
const rangedThreshold = 16 << 20

// Download is a download that Client.Start started: a handle to watch it,
// cancel it and wait for its end. Its methods are safe for concurrent use.
type Download struct {
	client *Client
	// req is the request as it runs: a Metalink replaces it with one that
	// names the Metalink's sources (applyMetalink), so only the run's own
	// goroutine reads it. request is the caller's, which Request returns.
	req     *Request
	request *Request
	log     zerolog.Logger
	cancel  context.CancelCauseFunc
	done    chan struct{}
	begun   time.Time
	// claim, set by a batch, reserves the output for this download; nil
	// alone.
	claim func(path string) error
	// asked is the URL asked for, redacted, once the configuration named it.
	asked string
	// probeOpts is how the probe asks, from the topology (prepare).
	probeOpts httpx.ProbeOptions
	// preflighted is the output the stages checked before the probe; the
	// run's graph, which has the same sink, need not check it again.
	preflighted string
	// preflightGraph is the graph whose stages checked the output before
	// the probe; what they hold for the run is released when run ends.
	preflightGraph *pipeline.Graph
	// gate, when set, is passed before the first request; transferred,
	// when set, is called once the bytes are all in, before the sink makes
	// them durable. A batch's transfer slot is held between the two.
	gate        func(context.Context) error
	transferred func()
	// sources is how many URLs the run's reader spreads its connections
	// over (mirrors.go); 0 or 1: the primary alone.
	sources int
	// metalink is the request's Metalink file, once read;
	// urlFromMetalink says its most preferred URL became the download's
	// URL, which the user did not name (credentialOwners);
	// sizeFromMetalink: the resource's size is the Metalink's, as the
	// server did not say one.
	metalink         *metalink.File
	urlFromMetalink  bool
	sizeFromMetalink bool
	// checksumFromMetalink: the checksum verified is the Metalink's.
	checksumFromMetalink bool
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
	d := &Download{client: c, req: req, request: req, log: c.logger(ctx), cancel: cancel, done: make(chan struct{}), begun: time.Now(),
		claim: claim, gate: gate, transferred: transferred}
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
func (d *Download) Request() *Request { return d.request }

// Info describes the download; its fields are zero until the probe
// answered (Hooks.Started).
func (d *Download) Info() Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info
}

// run is the whole download: configuration, probe, topology, output,
// run, and one restart if the file changed on the server.
func (d *Download) run(ctx context.Context) error {
	if err := d.resolveExtends(); err != nil {
		return err
	}
	req := d.req
	defer func() {
		if d.preflightGraph != nil {
			d.preflightGraph.Release(d.log)
		}
	}()
	if err := d.applyMetalink(ctx); err != nil {
		return err
	}
	req = d.req
	pre, err := d.prepare(true)
	if err != nil {
		return err
	}
	rawURL := pre.URL
	mirrors, err := d.mirrors(pre)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.info.URL, d.asked = httpx.RedactURL(rawURL), httpx.RedactURL(rawURL)
	d.mu.Unlock()
	owners := d.credentialOwners(rawURL)
	client, header, err := d.client.httpClient(pre.HTTP, owners...)
	if err != nil {
		return &RequestError{Field: "Config", Err: err} // it names the http.* key
	}
	d.warnUncredentialed(header, owners, append([]string{rawURL}, mirrors...))
	if pre.HTTP.Insecure {
		d.log.Warn().Msg("TLS certificate verification is off (http.insecure): anyone on the network path can read and alter the download")
	}

	// With the output known, a doomed run (output exists, directory not
	// writable) fails before any network I/O.
	output := ""
	if req.Writer != nil {
		d.log.Info().Msg("writing to a writer, not a file: no resume, an interrupted download starts over")
	}
	if pre.Output != "" && req.Writer == nil {
		if output, err = placeOutput(req.Dir, pre.Output); err != nil {
			return &RequestError{Field: "Path", Err: err}
		}
		d.setInfo(func(i *Info) { i.Path = output })
		if err := d.claimOutput(output); err != nil {
			return err
		}
		if _, err := os.Lstat(output + ".tmp"); err == nil && !req.NoResume {
			// An earlier run left the first bytes, likely: a probe that
			// fetched them again would throw them away. HEAD is for this.
			// (Asked before the preflight, which makes PATH.tmp.)
			d.probeOpts.Prefetch = 0
		}
		if req.IfNewer && isFile(output) {
			d.replace = output // the check below decides; the preflight must not refuse it
		}
		if err := d.preflightAt(ctx, req.Topology, output); err != nil {
			return err
		}
	}

	if d.gate != nil {
		if err := d.gate(ctx); err != nil {
			return err
		}
	}
	if req.IfNewer && req.Writer == nil {
		if err := d.ifNewer(ctx, client, header, rawURL, output); err != nil {
			return err
		}
	}
	res, releaseProbe, err := d.probe(ctx, client, header, rawURL)
	if err != nil {
		return err
	}
	// The probe's open answer is the run's to take; if no run takes it
	// (the output exists, say), it must not keep its connection. Its
	// connection counts against the host's limit until then.
	defer func() {
		closePrefetched(res)
		releaseProbe()
	}()
	addMirrors(res, mirrors, pre)
	if err := d.metalinkResource(res); err != nil {
		return err
	}
	if output == "" && req.Writer == nil {
		if output, err = placeIn(req.Dir, defaultName(res)); err != nil {
			return &RequestError{Field: "Path", Err: err}
		}
		d.setInfo(func(i *Info) { i.Path = output })
		if err := d.claimOutput(output); err != nil {
			return err
		}
	}
	for restarted := false; ; restarted = true {
		d.sources = len(res.Mirrors) + 1
		err = d.runSources(ctx, res, output, restarted, releaseProbe)
		if err == nil {
			d.keepLastModified(output, res)
		}
		if errors.Is(err, httpx.ErrResourceChanged) && d.sizeFromMetalink {
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
		releaseProbe()
		if res, releaseProbe, err = d.probe(ctx, client, header, rawURL); err != nil {
			return fmt.Errorf("after the file changed: %w", err)
		}
		addMirrors(res, mirrors, pre)
		if err := d.metalinkResource(res); err != nil {
			return err
		}
	}
}

// runOnce picks the topology for res, builds its graph for output, and
// runs it. fromZero discards what an earlier run left. The probe holds one
// connection of the host's (until releaseProbe), whose answer the graph
// reads: the run takes the others it needs if they are free; else, so as
// never to wait holding one while others wait holding theirs, it drops the
// probe's answer and its connection and waits for all it needs.
func (d *Download) runOnce(ctx context.Context, res *pipeline.Resource, output string, fromZero bool, releaseProbe func()) error {
	topology := d.req.Topology
	switch {
	case topology.auto() && sinks.IsObjectURL(output):
		topology = topology.pick("s3")
	case topology.auto():
		topology = d.req.autoTopology(res)
	}
	g, err := d.graph(ctx, topology, output, res, fromZero)
	if err != nil {
		if d.req.SkipExisting && errors.Is(err, ErrOutputExists) {
			return errSkipped
		}
		return err
	}
	need, host := max(g.Connections(), 1), hostKey(res.URL)
	release, ok := noRelease, false
	if host == hostKey(res.Requested) { // the probe's slot is this host's
		release, ok = d.client.hosts.tryAcquire(host, need-1)
	}
	if !ok {
		closePrefetched(res)
		releaseProbe()
		if release, err = d.client.hosts.acquire(ctx, host, need); err != nil {
			return err
		}
	}
	// The host's connections are free once the bytes are all in: making
	// them durable needs none.
	release = sync.OnceFunc(release)
	defer release()

	d.setInfo(func(i *Info) {
		i.URL, i.Path, i.Size, i.Ranges = httpx.RedactURL(res.URL), output, res.Size, res.AcceptRanges
		i.Topology, i.Connections, i.MemoryBound = topology.describe(), max(g.Connections(), 1), g.MemoryBound()
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
	d.log.Info().Str("url", httpx.RedactURL(res.URL)).Int64("size", res.Size).Bool("ranges", res.AcceptRanges).
		Str("output", output).Stringer("memory_bound", g.MemoryBound()).Msg("starting")

	start := time.Now()
	transferred := func() {
		release()
		if d.transferred != nil {
			d.transferred()
		}
	}
	err = g.Run(ctx, pipeline.RunOptions{Resource: res, Log: d.log, Metrics: d.req.Metrics, Trace: d.req.Trace, Transferred: transferred})
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

// errSkipped ends a download whose output exists when the request says to
// skip it.
var errSkipped = errors.New("skipped: the output exists")

// probe asks the server about rawURL, holding one connection of the
// host's, which release gives back: the run that reads the probe's answer
// counts it among its own.
func (d *Download) probe(ctx context.Context, client *http.Client, header http.Header, rawURL string) (res *pipeline.Resource, release func(), err error) {
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
	// the first piece (see prepare). It retries as the topology's HTTP stage
	// does, within one budget of the client's header timeout.
	opts := d.probeOpts
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

// graph loads topology for output and res, and builds and checks its
// graph: connections as asked (within the client's per-host cap), and a
// preflight of its stages.
//
// For a topology the library picked, stage keys meant for the other one
// may not fit (stages.fetch.workers: 8 for ranged.yaml's reader, where the
// stream's fetch is one source): then the graph is built without the
// request's stage keys, and a warning says which problem was left aside.
func (d *Download) graph(ctx context.Context, topology Topology, output string, res *pipeline.Resource, fromZero bool) (*pipeline.Graph, error) {
	p, err := d.plan(topology, output, fromZero, knownStageKeys)
	var ce *config.Error
	if d.req.Topology.auto() && errors.As(err, &ce) {
		d.log.Warn().Str("topology", topology.describe()).Str("problem", oneLine(err)).
			Msg("the configuration keys for stages do not fit the topology picked for this download; it runs without them")
		p, err = d.plan(topology, output, fromZero, noStageKeys)
	}
	if err != nil {
		return nil, err
	}
	g := p.graph
	if d.req.Connections > 1 && g.Connections() <= 1 {
		why := "the file is smaller than 16 MiB"
		if !res.AcceptRanges || res.Size < 0 {
			why = "the server does not answer range requests or does not say the size"
		}
		d.log.Warn().Int("connections", d.req.Connections).Msgf("downloading over one connection: %s", why)
	}
	if limit := d.client.maxPerHost; limit > 0 && g.Connections() > limit {
		asked := g.Connections()
		capConnections(d.client.reg, p.nodes, limit)
		if g, err = d.build(p.cfg, p.nodes); err != nil {
			return nil, err
		}
		d.log.Info().Int("connections", asked).Int("max_per_host", limit).Int("now", g.Connections()).
			Msg("fewer connections for this download: the client caps the connections to one host")
	}
	if output != d.preflighted || fromZero {
		if err := g.Preflight(ctx, d.log); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// plan is a topology loaded and built for one output.
type plan struct {
	cfg   *config.Config
	nodes []pipeline.Node
	graph *pipeline.Graph
}

// plan loads topology with the stage keys keys lets through, and builds
// its graph for output with the connections asked. It does no I/O.
func (d *Download) plan(topology Topology, output string, fromZero bool, keys stageKeys) (plan, error) {
	cfg, err := d.load(topology, keys)
	if err != nil {
		return plan{}, err
	}
	cfg.Output = output
	if output != "" && output == d.replace {
		cfg.Overwrite = true // IfNewer found the server's copy newer
	}
	if fromZero {
		cfg.Resume = false
	}
	nodes, err := d.nodes(cfg, topology)
	if err != nil {
		return plan{}, err
	}
	applyRetry(d.client.reg, nodes, d.req.Retry)
	if n := d.req.Connections; n > 0 && config.SetConnections(d.client.reg, nodes, n) == 0 && !d.req.Topology.auto() {
		return plan{}, connectionsError(topology.describe())
	}
	if scaleForSources(d.client.reg, nodes, d.sources) == 0 && d.sources > 1 {
		d.log.Info().Str("topology", topology.describe()).
			Msg("the mirrors are not used: the topology fetches one stream (a file under 16 MiB, or no stage that fetches ranges)")
	}
	g, err := d.build(cfg, nodes)
	if err == nil {
		err = d.piecesNeed(topology, g)
	}
	return plan{cfg: cfg, nodes: nodes, graph: g}, err
}

// prepare finds what is wrong with the request without any I/O, and
// returns its configuration before the probe: the request's fields, the
// URL (required with needURL), the configuration, and the wiring of the
// topology's graph. For an automatic topology each stage key must fit one
// of the built-in topologies the probe may pick.
func (d *Download) prepare(needURL bool) (*config.Config, error) {
	req := d.req
	if err := req.check(); err != nil {
		return nil, err
	}
	pre, err := d.load(req.Topology, allStageKeys)
	if err != nil {
		return nil, err
	}
	if err := d.checkBackends(pre); err != nil {
		return nil, err
	}
	switch {
	case strings.TrimSpace(pre.URL) != "":
		if _, err := httpx.CheckURL(pre.URL); err != nil {
			return nil, &RequestError{Field: "URL", Err: err}
		}
	case needURL:
		return nil, requestErrorf("URL", "no URL")
	}
	if _, _, err := d.client.httpClient(pre.HTTP); err != nil {
		return nil, &RequestError{Field: "Config", Err: err}
	}
	key, cacheable := req.wiringKey()
	object := sinks.IsObjectURL(pre.Output)
	key += fmt.Sprint(object, d.metalink != nil && d.metalink.Pieces != nil)
	if cacheable {
		if w, ok := d.client.wirings.Load(key); ok {
			d.probeOpts = w.(wiring).probe
			return pre, w.(wiring).err
		}
	}
	err = d.checkWiring(object)
	if cacheable {
		d.client.wirings.Store(key, wiring{probe: d.probeOpts, err: err})
	}
	return pre, err
}

// wiring is what checkWiring found for a request, which requests of the
// same configuration (a batch's) share.
type wiring struct {
	probe httpx.ProbeOptions
	err   error
}

// checkWiring builds the graph of the request's topology (of each
// built-in one the probe may pick, for the automatic topology), which
// touches nothing, and sets how the probe asks from it. An automatic
// topology with an object URL for output (s3://bucket/key) is s3.yaml.
func (d *Download) checkWiring(object bool) error {
	req := d.req
	if req.Topology.auto() && object {
		p, err := d.plan(req.Topology.pick("s3"), "s3://check/check", false, allStageKeys)
		if err == nil {
			d.probeOpts = probeOptions(p)
		}
		return err
	}
	output := "check" // a file sink needs one to be built; a writer has none
	if req.Writer != nil {
		output = ""
	}
	if !req.Topology.auto() {
		p, err := d.plan(req.Topology, output, false, allStageKeys)
		if err == nil {
			d.probeOpts = probeOptions(p)
		}
		return err
	}
	if req.Topology.extended() {
		return d.checkEveryCandidate(output)
	}
	var first error
	for _, name := range req.autoTopologies() {
		p, err := d.plan(Topology{Name: name}, output, false, quietStageKeys)
		var ce *config.Error
		if err == nil {
			d.probeOpts = probeOptions(p)
		}
		if err == nil || !errors.As(err, &ce) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// probeOptions makes the probe the first request of the graph p: it asks
// for the first piece of a topology that splits the file (its largest
// range), or for the whole file (one stream), and keeps the answer for the
// stage that needs those bytes; and it retries as the graph's HTTP stage.
// For the automatic topology the ranged one is asked: a file shorter than
// its first piece then takes one request whichever topology runs.
//
// A topology whose readers each ask for their whole share in one request
// (openFirstShare) gets a probe for all of the file (`bytes=0-`): the
// reader that takes the answer reads it to the end of its share, so that
// each connection makes one request. A probe for the first piece only
// would make the first connection ask a second time, and on a server
// that caps each request (nginx's limit_rate) a new request starts its
// cap over: that connection ended last.
func probeOptions(p plan) httpx.ProbeOptions {
	opts := httpx.ProbeOptions{Prefetch: p.graph.MaxRange()}
	if opts.Prefetch == 0 || openFirstShare(p) {
		opts.Prefetch = -1 // the whole file
	}
	for _, n := range p.nodes {
		if rp, ok := n.Config.(httpx.RetryPolicy); ok {
			opts.Retry = rp.RetryPolicy()
			break
		}
	}
	return opts
}

// openFirstShare reports whether the range readers of p ask for their
// share of the file in one request (stages.ShareRequests), and no reorder
// window makes them ask for one piece at a time. A hash.tap's window binds
// only while a checksum is checked; then the first reader reads a piece of
// the open answer and drops its connection, which costs one new connection.
func openFirstShare(p plan) bool {
	readers := 0
	for _, n := range p.nodes {
		if sr, ok := n.Config.(interface{ ShareRequests() bool }); ok {
			if !sr.ShareRequests() {
				return false
			}
			readers++
		}
	}
	for _, s := range p.graph.Stages() {
		if s.ReorderWindow > 0 && s.Type != "hash.tap" {
			return false
		}
	}
	return readers > 0
}

// preflightAt lets the stages of topology refuse output before the probe
// (the output exists, its directory is not writable). An automatic
// topology is checked with the stream topology's stages, whose sink the
// ranged one shares.
func (d *Download) preflightAt(ctx context.Context, topology Topology, output string) error {
	keys := allStageKeys
	switch {
	case topology.auto() && sinks.IsObjectURL(output):
		topology = topology.pick("s3")
	case topology.auto():
		names := d.req.autoTopologies() // the stream one last
		topology, keys = topology.pick(names[len(names)-1]), noStageKeys
	}
	p, err := d.plan(topology, output, false, keys)
	if err == nil {
		// What its stages hold for the run (the sink's PATH.tmp), run
		// releases at the end.
		d.preflightGraph = p.graph
		err = p.graph.Preflight(ctx, d.log)
	}
	if err == nil {
		d.preflighted = output
	}
	if d.req.SkipExisting && errors.Is(err, ErrOutputExists) {
		return errSkipped
	}
	return err
}

// nodes returns the nodes of the topology: decoded from cfg, or the
// request's own with the run-wide settings taken.
func (d *Download) nodes(cfg *config.Config, topology Topology) ([]pipeline.Node, error) {
	if topology.Nodes == nil {
		return cfg.Nodes(d.client.reg)
	}
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
	return nodes, nil
}

// build builds nodes, with config positions in wiring errors when they came
// from a file.
func (d *Download) build(cfg *config.Config, nodes []pipeline.Node) (*pipeline.Graph, error) {
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
	if d.claim == nil {
		return nil
	}
	return d.claim(output)
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

// closePrefetched closes the probe's open answer unless a stage took it.
func closePrefetched(res *pipeline.Resource) {
	if res != nil && res.Prefetched != nil {
		res.Prefetched.Close()
	}
}
