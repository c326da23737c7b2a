package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/cmd/internal/progress"
	"github.com/dlflow/dlflow/httpx"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/config"
)

// getFlags are the flags of a download.
type getFlags struct {
	configFile   string
	extract      string
	connections  int
	mirrors      []string // --mirror URL, repeatable
	metalink     string   // --metalink FILE or URL
	noResume     bool
	sets         []string
	inserts      []string // --insert ID=TYPE,after=STAGE, repeatable
	headers      []string // -H "Name: value", each sets http.headers.Name
	json         bool
	noProgress   bool
	metricsJSON  string // hidden: bench's child writes per-stage metrics here (bench_metrics.go)
	traceJSON    string // hidden: bench's child writes its request trace here (bench_metrics.go)
	cpuProfile   string
	skipExisting bool
	batch        batchFlags  // -i LIST and its flags; see batch.go
	compat       compatFlags // flags of curl, wget and aria2c; see compat.go
	log          logFlags
	version      bool
}

// newGetFlags returns the flags of a download; --help prints the usage
// to help (stdout), errors go to stderr.
func newGetFlags(help, stderr io.Writer) (*pflag.FlagSet, *getFlags) {
	f := &getFlags{}
	fs := pflag.NewFlagSet("dlflow", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.StringVarP(&f.configFile, "config", "c", "", "topology: a YAML file, or a built-in name (stream, buffered, ranged, ranged-ordered; auto, the default, picks ranged or stream by what the server supports)")
	fs.String("url", "", "URL to download (or give it as the argument)")
	fs.StringP("output", "o", "", "output path (default: the server's file name or the URL's last path segment); a directory (DIR/, or one that exists) gets the file inside it; - writes the bytes in order to stdout, with no resume; s3://BUCKET/KEY uploads to an object (AWS_* variables)")
	fs.StringVar(&f.extract, "extract", "", "unpack the download, a .tar, .tar.gz or .tar.zst archive (told by its bytes), into `DIR` as it arrives; DIR appears when complete, no archive is stored")
	fs.IntVar(&f.connections, "connections", 0, "number of range readers (workers of every http.reader stage); with mirrors, per source")
	fs.StringArrayVar(&f.mirrors, "mirror", nil, "another URL of the same file, fetched from at the same time (repeatable)")
	fs.StringVar(&f.metalink, "metalink", "", "a Metalink file (.meta4 or .metalink, a path or a URL): its URLs, size, hash and piece hashes; with several files, see --dir and --select-file")
	registerMetalinkFlags(fs)
	fs.Bool("overwrite", false, "replace an existing output file")
	fs.BoolVar(&f.skipExisting, "skip-existing", false, "when the output file exists, leave it and succeed (exit 0) without downloading: for rerunning a list with -i")
	fs.String("checksum", "", "verify the download against algorithm:hex (sha256, sha512, sha1, md5); needs a hash.tap stage, as in the examples")
	fs.BoolVar(&f.noResume, "no-resume", false, "start over instead of continuing a partial download (OUTPUT.tmp and its state)")
	fs.StringArrayVar(&f.sets, "set", nil, "set any config key, e.g. --set stages.fetch.workers=16 (repeatable)")
	fs.StringArrayVar(&f.inserts, "insert", nil, "add a stage, `ID=TYPE,after=STAGE` (or before=STAGE, and workers=N, queue=N), to the topology that runs (the one picked, by default); set its options with --set stages.ID.config.KEY=VALUE (repeatable)")
	fs.StringArrayVarP(&f.headers, "header", "H", nil, "extra request header 'Name: value' (repeatable)")
	fs.StringP("user", "u", "", "USER:PASSWORD for HTTP basic auth (or put them in the URL: https://user:pass@host/)")
	fs.StringP("user-agent", "A", "", "User-Agent header (default dlflow/"+version+")")
	fs.String("limit-rate", "", "most bytes per second for the whole download, all connections together, e.g. 10M or 500KiB")
	fs.StringP("proxy", "x", "", "proxy URL, or none (default: HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment)")
	fs.String("ca-cert", "", "PEM file of extra CA certificates to trust")
	fs.BoolP("insecure", "k", false, "skip TLS certificate verification (dangerous; warns)")
	fs.BoolVar(&f.json, "json", false, "print a summary as one JSON object on stdout, also on failure")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	fs.StringVar(&f.metricsJSON, "metrics-json", "", "write per-stage metrics as JSON to this file (for bench)")
	_ = fs.MarkHidden("metrics-json")
	fs.StringVar(&f.traceJSON, "trace-json", "", "write the run's requests, steals, retries and stage busy time as JSON to this file (for bench --timeline)")
	_ = fs.MarkHidden("trace-json")
	fs.StringVar(&f.cpuProfile, "cpu-profile", "", "write a CPU profile of the download to this file, for go tool pprof")
	f.batch.register(fs)
	f.compat.register(fs, &f.batch.dir)
	f.log.register(fs)
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.Usage = func() { printUsage(fs, help, getUsageHead, getUsageTail) }
	return fs, f
}

func get(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, flags := newGetFlags(stdout, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		if hint := flagHint(err); hint != "" {
			fmt.Fprintf(stderr, "dlflow: %v: %s\n", err, hint)
			return exitUsage
		}
		fmt.Fprintf(stderr, "dlflow: %v (see dlflow --help)\n", err)
		return exitUsage
	}
	if err := checkHabits(fs, &flags.compat); err != nil {
		return fail(stderr, err)
	}
	if flags.compat.silent {
		flags.log.quiet = true
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
	streamed := toStdout(fs)
	if streamed {
		if err := checkStdout(fs, flags, stdout); err != nil {
			return fail(stderr, err)
		}
		defer catchSIGPIPE()()
	}
	device, err := openStream(fs)
	if err != nil {
		return fail(stderr, err)
	}
	if device != nil {
		defer device.Close()
		if isBatch(fs) {
			return fail(stderr, usagef("-o %s is a stream, not a file; it does not go with -i LIST", device.Name()))
		}
	}
	if isMetalinkBatch(fs) {
		return getMetalink(ctx, fs, flags, stdout, stderr)
	}
	if isBatch(fs) {
		return getBatch(ctx, args, fs, flags, stdin, stdout, stderr)
	}
	rep := &reporter{stdout: stdout, stderr: stderr, quiet: flags.log.quiet, json: flags.json,
		silent: flags.compat.silent && !flags.compat.showError}
	req, err := newRequest(fs, flags)
	if err != nil {
		return rep.exit(requestURL(fs), nil, err)
	}
	rep.extracted = req.Extract != ""
	if err := makeDir(req.Dir); err != nil {
		return rep.exit(requestURL(fs), nil, err)
	}
	switch {
	case streamed:
		stdoutRequest(req, stdout)
		rep.streamedTo = "-"
	case device != nil:
		stdoutRequest(req, device)
		rep.streamedTo = device.Name()
	}
	log, sink, err := flags.log.build(stderr)
	if err != nil {
		return rep.exit(requestURL(fs), nil, err)
	}
	defer captureStdLog(log)()
	client := dlflow.NewClient(dlflow.WithLogger(log))
	defer client.CloseIdleConnections()

	var bar *progress.Bar // drawn from the download's goroutine, read after Wait
	if sink != nil && isTerminal(stderr) && !flags.log.quiet && !flags.noProgress {
		req.Hooks.Started = func(d *dlflow.Download) {
			bar.Finish(false) // the file changed on the server: a new bar for the new run
			bar = progress.Start(stderr, d, sink)
		}
	}
	res, err := client.Start(ctx, req).Wait()
	bar.Finish(err == nil)
	if err == nil {
		err = writeRunMetrics(flags.metricsJSON, req.Metrics)
	}
	if err == nil {
		err = writeRunTrace(flags.traceJSON, req.Trace)
	}
	return rep.exit(requestURL(fs), res, err)
}

// newRequest turns the command line of one download into a request: the
// flags that set config keys go in as overrides (so that an error names the
// flag), the rest as fields.
func newRequest(fs *pflag.FlagSet, flags *getFlags) (*dlflow.Request, error) {
	if overwrite, _ := fs.GetBool("overwrite"); overwrite && flags.skipExisting {
		return nil, usagef("--overwrite and --skip-existing contradict each other; give one")
	}
	switch fs.NArg() {
	case 0:
		if u, _ := fs.GetString("url"); fs.Changed("url") {
			_ = fs.Set("url", guessURL(u))
		}
	case 1:
		if fs.Changed("url") {
			return nil, usagef("give the URL either as the argument or with --url, not both")
		}
		_ = fs.Set("url", guessURL(fs.Arg(0)))
	default:
		// Several URLs: a batch (getBatch), whose entries give them.
	}
	if err := checkSets(fs, flags.sets); err != nil {
		return nil, err
	}
	topology, err := topologyOf(flags.configFile, fs.NArg() > 0 || fs.Changed("url") || fs.Changed("input-file"))
	if err != nil {
		return nil, err
	}
	for _, spec := range flags.inserts {
		in, err := config.ParseInsert(spec)
		if err != nil {
			return nil, usagef("--insert %w", err)
		}
		topology.Insert = append(topology.Insert, in)
	}
	req := &dlflow.Request{
		Topology:     topology,
		NoResume:     flags.noResume,
		SkipExisting: flags.skipExisting,
		Config:       flagOverrides(fs),
		Sets:         flags.sets,
		Environ:      os.Environ(),
		Metrics:      newRunMetrics(flags.metricsJSON),
		Trace:        newRunTrace(flags.traceJSON),
		Mirrors:      flags.mirrors,
		Metalink:     flags.metalink,
		Dir:          flags.batch.dir,
	}
	if out, _ := fs.GetString("output"); fs.Changed("output") {
		if dir, ok := outputDir(out); ok {
			// -o DIR/: the file goes inside, named from the server.
			if req.Dir != "" && !filepath.IsAbs(dir) {
				dir = filepath.Join(req.Dir, dir)
			}
			req.Dir = dir
			req.Config = slices.DeleteFunc(req.Config, func(o config.Override) bool { return o.Key == "output" })
		} else if flags.compat.createDirs {
			if err := os.MkdirAll(filepath.Join(req.Dir, filepath.Dir(out)), 0o777); err != nil {
				return nil, fmt.Errorf("--create-dirs: %w", err)
			}
		}
	}
	if err := applyCompat(fs, &flags.compat, req); err != nil {
		return nil, err
	}
	if fs.Changed("connect-timeout") {
		d, err := connectTimeout(&flags.compat)
		if err != nil {
			return nil, err
		}
		req.Config = append(req.Config, config.Override{Key: "http.connect_timeout", Value: d, Origin: "--connect-timeout"})
	}
	if fs.Changed("extract") {
		switch {
		case fs.Changed("output"):
			return nil, usagef("--extract and -o both name the output; give one")
		case flags.extract == "":
			return nil, usagef("--extract needs a directory")
		}
		req.Extract = flags.extract
	}
	if fs.Changed("connections") {
		if flags.connections < 1 {
			return nil, usagef("--connections must be at least 1, got %d", flags.connections)
		}
		req.Connections = flags.connections
	}
	for _, h := range flags.headers {
		name, value, err := httpx.ParseHeader(h)
		if err != nil {
			return nil, usagef("-H/--header %w", err)
		}
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header[name] = []string{value} // as given: -H is sent as written
	}
	return req, nil
}

// checkSets refuses a --set of a key that a flag of the command line sets
// too: which one wins is a question the user should not have to ask.
func checkSets(fs *pflag.FlagSet, sets []string) error {
	for _, set := range sets {
		key, _, _ := strings.Cut(set, "=")
		key = strings.TrimSpace(key)
		var both error
		fs.Visit(func(f *pflag.Flag) {
			if (flagKeys[f.Name] == key || compatKeys[f.Name] == key) && both == nil {
				both = usagef("--set %s and --%s both set %s; give one", key, f.Name, key)
			}
		})
		if both != nil {
			return both
		}
	}
	return nil
}

// requestURL is the URL of the command line, redacted, for a summary of a
// failure that came before the library knew it.
func requestURL(fs *pflag.FlagSet) string {
	u, _ := fs.GetString("url")
	if u == "" && fs.NArg() == 1 {
		u = fs.Arg(0)
	}
	return httpx.RedactURL(u)
}

// reporter prints the end of a download: the summary line on stderr
// (unless -q) or the one error line, and with --json the summary as JSON
// on stdout.
type reporter struct {
	stdout, stderr io.Writer
	quiet, json    bool
	silent         bool   // -s without -S: not even the error line
	streamedTo     string // "-" for stdout, or the device or pipe -o named; "" for a file
	extracted      bool   // --extract: the output is a directory the archive was unpacked into
}

// exit reports how the download ended and returns the exit code.
func (r *reporter) exit(url string, res *dlflow.Result, err error) int {
	code := exitOK
	err = cliError(err, res)
	if err != nil {
		w := r.stderr
		var ue *usageError
		if r.silent && !errors.As(err, &ue) {
			w = io.Discard
		}
		code = fail(w, err)
	}
	sum := summaryOf(url, res, err, code)
	if r.streamedTo != "" {
		sum.Output, sum.streamed = r.streamedTo, true
	}
	sum.extracted = r.extracted
	switch {
	case err == nil && res.Skipped && !r.quiet:
		fmt.Fprintln(r.stderr, skipLine(res.Path))
	case err == nil && res.UpToDate && !r.quiet:
		fmt.Fprintln(r.stderr, upToDateLine(res.Path))
	case err == nil && !r.quiet:
		fmt.Fprintln(r.stderr, sum.line())
	}
	if r.json {
		sum.writeJSON(r.stdout)
	}
	return code
}

func upToDateLine(path string) string {
	return fmt.Sprintf("dlflow: %s is up to date: the server has no newer copy (-N)", path)
}

func skipLine(path string) string {
	return fmt.Sprintf("dlflow: skipped %s: it exists (--skip-existing)", path)
}

// cliError words a library error for the command line: what the user got
// wrong is a usage error naming the flag, and an interruption says where
// the partial data is.
func cliError(err error, res *dlflow.Result) error {
	var re *dlflow.RequestError
	var ie *interrupted
	var fe *dlflow.MetalinkFilesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		if res != nil && res.Partial != "" {
			// The one line a user sees after Ctrl-C says how to go on.
			return &interrupted{sig: ie.sig, partial: res.Partial}
		}
		return err
	case errors.As(err, &re):
		switch re.Field {
		case "URL":
			if re.Err.Error() == "no URL" {
				return usagef("no URL: give one as the argument or with --url")
			}
		case "Connections":
			return usagef("--connections: %w", re.Err)
		case "Header":
			return usagef("-H/--header: %w", re.Err)
		}
		return &usageError{err}
	case errors.As(err, new(*config.Error)):
		return &usageError{err}
	case errors.As(err, &fe):
		return metalinkFilesError(fe)
	case isBrokenPipe(err):
		return &writeError{err}
	case errors.Is(err, dlflow.ErrForeignTmp):
		return fmt.Errorf("%w; move it away, or pass --overwrite to replace it", err)
	case errors.Is(err, dlflow.ErrOutputExists):
		return fmt.Errorf("%w; pass --overwrite to replace it, --skip-existing to keep it, or -N to replace it only with a newer copy", err)
	case errors.As(err, new(*dlflow.MaxTimeError)):
		if res != nil && res.Partial != "" {
			return fmt.Errorf("%w (-m/--max-time); partial data kept in %s, a rerun resumes it", err, res.Partial)
		}
		return fmt.Errorf("%w (-m/--max-time)", err)
	}
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

// getUsageHead and getUsageTail frame the flags in the usage.
const getUsageHead = `Usage: dlflow [flags] URL [URL...] [-d DIR]
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
  dlflow -c ranged https://example.com/big.iso --retry 10 -m 1h   (a built-in topology, by name)
  dlflow https://example.com/a.iso https://example.com/b.iso -d isos
  dlflow -N https://example.com/big.iso -o big.iso                 (again only if the server's copy is newer)
  dlflow -c examples/stream.yaml --url https://example.com/log.txt --set stages.fetch.config.buffer=1MiB
  dlflow https://example.com/big.iso --insert 'slow=throttle.tap,after=verify' --set stages.slow.config.rate=1MiB   (a custom build's stage)
  dlflow https://example.com/big.iso -H 'Authorization: Bearer TOKEN' --limit-rate 10M
  dlflow https://user:secret@example.com/private.tar -q --json > result.json
  dlflow https://example.com/src.tar.zst --extract src
  dlflow https://example.com/big.tar -o - --connections 8 | tar x
  dlflow https://example.com/big.iso -o s3://bucket/isos/big.iso

Flags:
`

const getUsageTail = `
Environment: DLFLOW_<KEY> sets a config key, with __ between levels
(DLFLOW_STAGES__FETCH__WORKERS=16). Precedence: defaults < file < env < flags.
Coming from curl, wget or aria2c: resume is automatic (-c is the topology);
-L, -O, -C - and --continue are accepted; the README has a table.
Exit codes: 0 complete, 1 download failed, 2 usage or config error,
23 stdout closed by its reader (-o - | head), 130 interrupted (SIGINT),
143 terminated (SIGTERM).

-o - streams the bytes in order to stdout (ranges in parallel, put back in
order within a bounded window); the progress bar and the summary go to
stderr, and --json is refused. There is no resume: an interrupted download
starts over. A --checksum is verified as the bytes pass, so a mismatch is
reported (exit 1) after the bytes are out: trust them only on exit 0.

--insert ID=TYPE,after=STAGE adds a stage of a registered type (see dlflow
stages; a custom binary adds its own) to the topology that runs: with no -c,
to the one the automatic choice picks, which it must fit (ranged and
stream: its place is checked in both before any request). It reads what
STAGE produced, and the stages that read STAGE read it instead; before=STAGE
puts it in front of STAGE. A config file does the same with extends: and
insert: (docs/STAGES.md, "Adding a stage to any topology").

-o s3://BUCKET/KEY uploads to an S3-compatible store while downloading, with
no local copy (examples/s3.yaml): endpoint, region and credentials from
AWS_ENDPOINT_URL(_S3), AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
or --set stages.upload.config.KEY. The object appears when complete; a
failure aborts the upload, an interruption keeps it for a rerun to resume.
`
