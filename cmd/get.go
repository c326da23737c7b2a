package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// rangedThreshold is the smallest size for which the default topology
// splits the download into ranges: below it, the extra requests cost more
// than the parallelism buys.
const rangedThreshold = 16 << 20

// getFlags are the flags of a download.
type getFlags struct {
	configFile   string
	connections  int
	noResume     bool
	sets         []string
	headers      []string // -H "Name: value", each sets http.headers.Name
	json         bool
	noProgress   bool
	metricsJSON  string // hidden: bench's child writes per-stage metrics here (bench_metrics.go)
	cpuProfile   string
	skipExisting bool
	batch        batchFlags // -i LIST and its flags; see batch.go
	log          logFlags
	version      bool
}

func newGetFlags(stderr io.Writer) (*pflag.FlagSet, *getFlags) {
	f := &getFlags{}
	fs := pflag.NewFlagSet("dlflow", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.StringVarP(&f.configFile, "config", "c", "", "topology file (YAML); default: ranged or stream, picked by what the server supports")
	fs.String("url", "", "URL to download (or give it as the argument)")
	fs.StringP("output", "o", "", "output path (default: the server's file name or the URL's last path segment)")
	fs.IntVar(&f.connections, "connections", 0, "number of range readers (workers of every http.reader stage)")
	fs.Bool("overwrite", false, "replace an existing output file")
	fs.BoolVar(&f.skipExisting, "skip-existing", false, "when the output file exists, leave it and succeed (exit 0) without downloading: for rerunning a list with -i")
	fs.String("checksum", "", "verify the download against algorithm:hex (sha256, sha512, sha1, md5); needs a hash.tap stage, as in the examples")
	fs.BoolVar(&f.noResume, "no-resume", false, "start over instead of continuing a partial download (OUTPUT.tmp and its state)")
	fs.StringArrayVar(&f.sets, "set", nil, "set any config key, e.g. --set stages.fetch.workers=16 (repeatable)")
	fs.StringArrayVarP(&f.headers, "header", "H", nil, "extra request header 'Name: value' (repeatable)")
	fs.StringP("user", "u", "", "USER:PASSWORD for HTTP basic auth (or put them in the URL: https://user:pass@host/)")
	fs.String("user-agent", "", "User-Agent header (default dlflow/"+version+")")
	fs.String("limit-rate", "", "most bytes per second for the whole download, all connections together, e.g. 10M or 500KiB")
	fs.String("proxy", "", "proxy URL, or none (default: HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment)")
	fs.String("ca-cert", "", "PEM file of extra CA certificates to trust")
	fs.BoolP("insecure", "k", false, "skip TLS certificate verification (dangerous; warns)")
	fs.BoolVar(&f.json, "json", false, "print a summary as one JSON object on stdout, also on failure")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	fs.StringVar(&f.metricsJSON, "metrics-json", "", "write per-stage metrics as JSON to this file (for bench)")
	_ = fs.MarkHidden("metrics-json")
	fs.StringVar(&f.cpuProfile, "cpu-profile", "", "write a CPU profile of the download to this file, for go tool pprof")
	f.batch.register(fs)
	f.log.register(fs)
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dlflow [flags] URL
       dlflow -c TOPOLOGY.yaml --url URL -o PATH [--connections N]
       dlflow -i LIST [--jobs N] [--dir DIR] [--max-per-host N]   (LIST: one "URL [NAME]" a line, - for stdin)
       dlflow validate -c TOPOLOGY.yaml
       dlflow bench [--size 256MiB]
       dlflow stages [TYPE]

Downloads URL into PATH through a graph of stages. PATH appears only when it
is complete: the data goes to PATH.tmp, is fsynced, and is renamed.

On a terminal a progress bar shows bytes, percentage, rate, eta and, for a
ranged download, one line per connection; elsewhere, --log-level info logs
progress events. A summary line follows on stderr (not with -q); --json also
prints it as one JSON object on stdout.

Examples:
  dlflow https://example.com/big.iso
  dlflow -c examples/ranged.yaml --url https://example.com/big.iso -o big.iso --connections 16
  dlflow -c examples/stream.yaml --url https://example.com/log.txt --set stages.fetch.config.buffer=1MiB
  dlflow https://example.com/big.iso -H 'Authorization: Bearer TOKEN' --limit-rate 10M
  dlflow https://user:secret@example.com/private.tar -q --json > result.json

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Environment: DLFLOW_<KEY> sets a config key, with __ between levels
(DLFLOW_STAGES__FETCH__WORKERS=16). Precedence: defaults < file < env < flags.
Exit codes: 0 complete, 1 download failed, 2 usage or config error,
130 interrupted (SIGINT), 143 terminated (SIGTERM).
`)
	}
	return fs, f
}

func get(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, flags := newGetFlags(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "dlflow: %v (see dlflow --help)\n", err)
		return exitUsage
	}
	if flags.version {
		fmt.Fprintf(stdout, "dlflow %s\n", version)
		return exitOK
	}
	stopProfile, err := startCPUProfile(flags.cpuProfile)
	if err != nil {
		fmt.Fprintf(stderr, "dlflow: %v\n", err)
		return exitUsage
	}
	defer func() {
		if err := stopProfile(); err != nil {
			fmt.Fprintf(stderr, "dlflow: %v\n", err)
		}
	}()
	if isBatch(fs) {
		return getBatch(ctx, args, fs, flags, stdin, stdout, stderr)
	}
	d := newDownload(fs, flags, stderr)
	if err := d.checkArgs(); err != nil {
		return d.exit(stdout, err)
	}
	log, sink, err := flags.log.build(stderr)
	if err != nil {
		return d.exit(stdout, err)
	}
	d.log, d.sink = log, sink
	if err := d.run(ctx); err != nil {
		if d.skipped(err) {
			return d.exitSkipped(stdout)
		}
		var ie *interrupted
		if ctx.Err() != nil && errors.As(context.Cause(ctx), &ie) && !errors.As(err, &ie) {
			// Cancelled before the graph ran (say, during the probe): the
			// signal is the cause, whatever the request said.
			err = ie
		}
		if d.output != "" && !errors.As(err, new(*usageError)) && d.started && !errors.Is(err, pipeline.ErrCorrupt) {
			log.Info().Str("partial", d.output+".tmp").Msg("partial data kept")
			if errors.As(err, &ie) {
				if _, serr := os.Lstat(d.output + ".tmp"); serr == nil {
					// The one line a user sees after Ctrl-C says how to go on.
					err = fmt.Errorf("%w; partial data kept in %s", err, d.output+".tmp")
				}
			}
		}
		return d.exit(stdout, err)
	}
	return d.exit(stdout, nil)
}

// skipped reports whether err means the output exists and --skip-existing
// says that is fine.
func (d *download) skipped(err error) bool {
	return d.flags.skipExisting && errors.Is(err, sinks.ErrOutputExists)
}

// exitSkipped reports a download skipped by --skip-existing: one line on
// stderr (unless -q), the summary with "skipped" under --json; exit 0.
func (d *download) exitSkipped(stdout io.Writer) int {
	if !d.flags.log.quiet {
		fmt.Fprintln(d.stderr, d.skipLine())
	}
	if d.flags.json {
		d.skipSummary().writeJSON(stdout)
	}
	return exitOK
}

func (d *download) skipLine() string {
	return fmt.Sprintf("dlflow: skipped %s: it exists (--skip-existing)", d.target)
}

func (d *download) skipSummary() summary {
	s := d.summary(nil, exitOK)
	s.Skipped, s.RateBPS = true, 0
	return s
}

// checkArgs checks what the flag parser cannot: the URL argument and the
// format of the -H headers.
func (d *download) checkArgs() error {
	if overwrite, _ := d.fs.GetBool("overwrite"); overwrite && d.flags.skipExisting {
		return usagef("--overwrite and --skip-existing contradict each other; give one")
	}
	switch d.fs.NArg() {
	case 0:
	case 1:
		if d.fs.Changed("url") {
			return usagef("give the URL either as the argument or with --url, not both")
		}
		_ = d.fs.Set("url", d.fs.Arg(0))
	default:
		return usagef("one URL at a time; got %d arguments", d.fs.NArg())
	}
	if u, _ := d.fs.GetString("url"); u != "" {
		d.url = httpx.RedactURL(u) // for a summary of a failure before the config loads
	}
	for _, h := range d.flags.headers {
		if _, _, err := httpx.ParseHeader(h); err != nil {
			return usagef("-H/--header %w", err)
		}
	}
	return nil
}

// exit reports the end of the run: the summary line on stderr (unless -q)
// or the one error line, and with --json the summary as JSON on stdout. It
// returns the exit code.
func (d *download) exit(stdout io.Writer, err error) int {
	code := exitOK
	if err != nil {
		code = fail(d.stderr, err)
	}
	sum := d.summary(err, code)
	if err == nil && !d.flags.log.quiet {
		fmt.Fprintln(d.stderr, sum.line())
	}
	if d.flags.json {
		sum.writeJSON(stdout)
	}
	return code
}

// newDownload is a download with the parsed flags, before its logger is
// built; a batch makes one per line of its list.
func newDownload(fs *pflag.FlagSet, flags *getFlags, stderr io.Writer) *download {
	return &download{flags: flags, fs: fs, log: zerolog.Nop(), stderr: stderr, begun: time.Now()}
}

// download is one run of the get command.
type download struct {
	flags   *getFlags
	fs      *pflag.FlagSet
	log     zerolog.Logger
	sink    *logSink // where log lines go; nil before the logger is built
	stderr  io.Writer
	output  string
	started bool           // the graph started running, so OUTPUT.tmp may hold data
	hooks   *downloadHooks // limits shared with the other downloads of a batch; nil alone
	bars    *mpb.Progress  // a batch's progress display, where this download adds its line; nil alone

	// For the summary.
	begun    time.Time
	url      string // redacted
	target   string // the output path once known, even before the run
	topology string // the -c file, or "(built-in) NAME.yaml"
	stats    runStats
}

func (d *download) run(ctx context.Context) error {
	topology := "stream.yaml" // until the probe says ranges pay off
	cfg, err := d.load(topology)
	if err != nil {
		return err
	}
	if cfg.URL == "" {
		return usagef("no URL: give one as the argument or with --url")
	}
	d.url, d.target = httpx.RedactURL(cfg.URL), cfg.Output
	client, header, err := httpx.NewClient(cfg.HTTP)
	if err != nil {
		return &usageError{err} // it names the http.* key
	}
	if cfg.HTTP.Insecure {
		d.log.Warn().Msg("TLS certificate verification is off (--insecure, http.insecure): anyone on the network path can read and alter the download")
	}
	// The client is this run's alone: its idle keep-alive connections (and
	// their two goroutines each) would otherwise outlive run() when the CLI
	// is embedded or called from tests.
	defer client.CloseIdleConnections()
	// With an output known, a doomed run (output exists, directory not
	// writable) fails before any network I/O.
	if cfg.Output != "" {
		if _, err := d.preflight(cfg); err != nil {
			return err
		}
	}

	release, err := d.beforeProbe(ctx, cfg.URL)
	if err != nil {
		return err
	}
	res, err := httpx.Probe(ctx, client, header, cfg.URL)
	release()
	if errors.Is(err, httpx.ErrInvalidURL) {
		return &usageError{err} // refused before any request
	}
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if d.flags.configFile == "" && res.AcceptRanges && res.Size >= rangedThreshold {
		if cfg, err = d.load("ranged.yaml"); err != nil {
			return err
		}
	}
	if cfg.Output == "" {
		cfg.Output = defaultOutput(res)
	}
	d.target = cfg.Output
	if release, err = d.beforeStart(ctx, res, cfg); err != nil {
		return err
	}
	defer release()
	g, err := d.preflight(cfg)
	if err != nil {
		return err
	}
	d.output = cfg.Output
	d.log.Info().Str("url", httpx.RedactURL(res.URL)).Int64("size", res.Size).Bool("ranges", res.AcceptRanges).
		Str("output", cfg.Output).Stringer("memory_bound", g.MemoryBound()).Msg("starting")

	start := time.Now()
	d.started = true
	err = d.runGraph(ctx, g, res)
	if errors.Is(err, httpx.ErrResourceChanged) && ctx.Err() == nil {
		// The bytes so far belong to the old version and must never be
		// mixed with the new one: start again from zero, once (without
		// resume the file sink replaces the stale OUTPUT.tmp). A second
		// change fails, so a file that changes all the time cannot loop.
		d.log.Warn().Err(err).Msg("the file changed on the server; restarting the download from zero")
		if res, err = httpx.Probe(ctx, client, header, cfg.URL); err != nil {
			return fmt.Errorf("probe after the file changed: %w", err)
		}
		cfg.Resume = false // from zero, whatever the sink's state file says
		if g, err = d.preflight(cfg); err != nil {
			return err
		}
		start = time.Now()
		err = d.runGraph(ctx, g, res)
	}
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	d.log.Info().Str("output", cfg.Output).Int64("bytes", res.Size).Dur("elapsed", elapsed).
		Str("rate", humanRate(float64(max(res.Size, 0))/elapsed.Seconds())).Msg("done")
	return nil
}

// load reads the topology: the -c file, or the named embedded example.
func (d *download) load(embedded string) (*config.Config, error) {
	opts := config.Options{File: d.flags.configFile, Overrides: flagOverrides(d.fs), Sets: d.flags.sets}
	d.topology = opts.File
	if opts.File == "" {
		data, err := examples.FS.ReadFile(embedded)
		if err != nil {
			return nil, err
		}
		opts.File, opts.Data = "(built-in) "+embedded, data
		d.topology = opts.File
	}
	cfg, err := config.Load(opts)
	if err != nil {
		return nil, configError(err)
	}
	if d.flags.noResume {
		cfg.Resume = false
	}
	for _, h := range d.flags.headers {
		name, value, _ := httpx.ParseHeader(h) // checked in checkArgs
		if cfg.HTTP.Headers == nil {
			cfg.HTTP.Headers = map[string]string{}
		}
		for k := range cfg.HTTP.Headers {
			if strings.EqualFold(k, name) {
				delete(cfg.HTTP.Headers, k) // the flag wins over the file
			}
		}
		cfg.HTTP.Headers[name] = value
	}
	if n := d.flags.connections; d.fs.Changed("connections") {
		if n < 1 {
			return nil, usagef("--connections must be at least 1, got %d", n)
		}
		if cfg.SetConnections(pipeline.DefaultRegistry, n) == 0 && d.flags.configFile != "" {
			return nil, usagef("--connections: %s has no stage that opens several connections (such as http.reader)", d.flags.configFile)
		}
	}
	return cfg, nil
}

// preflight builds the graph and lets its stages refuse the run.
func (d *download) preflight(cfg *config.Config) (*pipeline.Graph, error) {
	g, err := cfg.Graph(pipeline.DefaultRegistry)
	if err != nil {
		return nil, configError(err)
	}
	if err := g.Preflight(d.log); err != nil {
		return nil, err
	}
	return g, nil
}

func configError(err error) error {
	var ce *config.Error
	var pe *fs.PathError // an unreadable -c file is a config error too, not a failed download
	if errors.As(err, &ce) || errors.As(err, &pe) {
		return &usageError{err}
	}
	return err
}

// startCPUProfile profiles the whole process (probe, run, every download of
// a batch) into path until stop is called; with no path it does nothing.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		return nil
	}, nil
}

// defaultOutput names the output when the user did not: the server's
// Content-Disposition name, else the URL's last path segment, made safe.
func defaultOutput(res *pipeline.Resource) string {
	if res.FileName != "" {
		return res.FileName
	}
	if u, err := url.Parse(res.URL); err == nil {
		if name := httpx.SafeFileName(path.Base(u.Path)); name != "" {
			return name
		}
	}
	return "download"
}

// runGraph runs g, with a progress bar when stderr is a terminal, and
// collects what the summary reports.
func (d *download) runGraph(ctx context.Context, g *pipeline.Graph, res *pipeline.Resource) error {
	var bar *progressBar
	switch {
	case d.bars != nil:
		bar = addBatchBar(d.bars, g, d.output, res.Size)
	case d.sink != nil && isTerminal(d.stderr) && !d.flags.log.quiet && !d.flags.noProgress:
		bar = startBar(d.stderr, g, d.sink, d.output, res.Size)
	}
	metrics := newRunMetrics(d.flags.metricsJSON)
	err := g.Run(ctx, pipeline.RunOptions{Resource: res, Log: d.log, Metrics: metrics})
	if err == nil {
		err = writeRunMetrics(d.flags.metricsJSON, metrics)
	}
	bar.finish(err == nil)
	d.stats.add(g)
	return err
}

// flagKeys maps command line flags to the config keys they set. Repeated
// -H/--header flags are not here: each sets one key under http.headers,
// which load applies itself.
var flagKeys = map[string]string{
	"url": "url", "output": "output", "overwrite": "overwrite", "checksum": "checksum",
	"user-agent": "http.user_agent", "user": "http.basic_auth", "proxy": "http.proxy",
	"ca-cert": "http.ca_cert", "insecure": "http.insecure", "limit-rate": "http.limit_rate",
}

// flagOverrides are the config keys that the flags given on the command
// line set, for config.Load.
func flagOverrides(fs *pflag.FlagSet) []config.Override {
	var out []config.Override
	fs.Visit(func(f *pflag.Flag) {
		if key, ok := flagKeys[f.Name]; ok {
			out = append(out, config.Override{Key: key, Value: f.Value.String(), Origin: "--" + f.Name})
		}
	})
	return out
}
