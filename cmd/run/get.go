package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/stages"
)

// rangedThreshold is the smallest size for which the default topology
// splits the download into ranges: below it, the extra requests cost more
// than the parallelism buys.
const rangedThreshold = 16 << 20

// getFlags are the flags of a download.
type getFlags struct {
	configFile  string
	connections int
	noResume    bool
	sets        []string
	log         logFlags
	version     bool
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
	fs.String("checksum", "", "verify the download against algorithm:hex (sha256, sha512, sha1, md5); needs a hash.tap stage, as in the examples")
	fs.BoolVar(&f.noResume, "no-resume", false, "start over instead of continuing a partial download (OUTPUT.tmp and its state)")
	fs.StringArrayVar(&f.sets, "set", nil, "set any config key, e.g. --set stages.fetch.workers=16 (repeatable)")
	f.log.register(fs)
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dlflow [flags] URL
       dlflow -c TOPOLOGY.yaml --url URL -o PATH [--connections N]
       dlflow validate -c TOPOLOGY.yaml
       dlflow bench [--size 256MiB]
       dlflow stages [TYPE]

Downloads URL into PATH through a graph of stages. PATH appears only when it
is complete: the data goes to PATH.tmp, is fsynced, and is renamed.

Examples:
  dlflow https://example.com/big.iso
  dlflow -c examples/ranged.yaml --url https://example.com/big.iso -o big.iso --connections 16
  dlflow -c examples/stream.yaml --url https://example.com/log.txt --set stages.fetch.config.buffer=1MiB

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

func get(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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
	switch fs.NArg() {
	case 0:
	case 1:
		if fs.Changed("url") {
			return fail(stderr, usagef("give the URL either as the argument or with --url, not both"))
		}
		_ = fs.Set("url", fs.Arg(0))
	default:
		return fail(stderr, usagef("one URL at a time; got %d arguments", fs.NArg()))
	}
	log, err := flags.log.logger(stderr)
	if err != nil {
		return fail(stderr, err)
	}
	d := &download{flags: flags, fs: fs, log: log}
	if err := d.run(ctx); err != nil {
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
		return fail(stderr, err)
	}
	return exitOK
}

// download is one run of the get command.
type download struct {
	flags   *getFlags
	fs      *pflag.FlagSet
	log     zerolog.Logger
	output  string
	started bool // the graph started running, so OUTPUT.tmp may hold data
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
	client, header, err := stages.NewClient(cfg.HTTP)
	if err != nil {
		return &usageError{err} // it names the http.* key
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

	res, err := stages.Probe(ctx, client, header, cfg.URL)
	if errors.Is(err, stages.ErrInvalidURL) {
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
	g, err := d.preflight(cfg)
	if err != nil {
		return err
	}
	d.output = cfg.Output
	d.log.Info().Str("url", stages.RedactURL(res.URL)).Int64("size", res.Size).Bool("ranges", res.AcceptRanges).
		Str("output", cfg.Output).Stringer("memory_bound", g.MemoryBound()).Msg("starting")

	start := time.Now()
	d.started = true
	err = g.Run(ctx, pipeline.RunOptions{Resource: res, Log: d.log})
	if errors.Is(err, stages.ErrResourceChanged) && ctx.Err() == nil {
		// The bytes so far belong to the old version and must never be
		// mixed with the new one: start again from zero, once (without
		// resume the file sink replaces the stale OUTPUT.tmp). A second
		// change fails, so a file that changes all the time cannot loop.
		d.log.Warn().Err(err).Msg("the file changed on the server; restarting the download from zero")
		if res, err = stages.Probe(ctx, client, header, cfg.URL); err != nil {
			return fmt.Errorf("probe after the file changed: %w", err)
		}
		cfg.Resume = false // from zero, whatever the sink's state file says
		if g, err = d.preflight(cfg); err != nil {
			return err
		}
		start = time.Now()
		err = g.Run(ctx, pipeline.RunOptions{Resource: res, Log: d.log})
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
	opts := config.Options{File: d.flags.configFile, Flags: d.fs, Sets: d.flags.sets}
	if opts.File == "" {
		data, err := examples.FS.ReadFile(embedded)
		if err != nil {
			return nil, err
		}
		opts.File, opts.Data = "(built-in) "+embedded, data
	}
	cfg, err := config.Load(opts)
	if err != nil {
		return nil, configError(err)
	}
	if d.flags.noResume {
		cfg.Resume = false
	}
	if n := d.flags.connections; d.fs.Changed("connections") {
		if n < 1 {
			return nil, usagef("--connections must be at least 1, got %d", n)
		}
		if cfg.SetWorkers("http.reader", n) == 0 && d.flags.configFile != "" {
			return nil, usagef("--connections: %s has no http.reader stage to give connections to", d.flags.configFile)
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

// defaultOutput names the output when the user did not: the server's
// Content-Disposition name, else the URL's last path segment, made safe.
func defaultOutput(res *pipeline.Resource) string {
	if res.FileName != "" {
		return res.FileName
	}
	if u, err := url.Parse(res.URL); err == nil {
		if name := stages.SafeFileName(path.Base(u.Path)); name != "" {
			return name
		}
	}
	return "download"
}
