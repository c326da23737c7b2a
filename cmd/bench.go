package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	dlbench "github.com/dlflow/dlflow/bench"
	"github.com/dlflow/dlflow/pipeline"
)

// cliEnv, when set to 1, makes a binary that embeds the CLI (the test
// binary, too) behave as the CLI; bench runs each download as such a child
// process so that its peak RSS and CPU time are its own.
const cliEnv = "RUN_DLFLOW_CLI"

// benchFlags are the bench's options and how to print its result.
type benchFlags struct {
	opts     dlbench.Options
	json     string // "-": stdout instead of the table; a path: also to this file
	markdown bool
	csv      string
	plot     string
	timeline string
	maxRSS   string // a cell of dlflow above it fails the bench (--max-rss); "": no limit
	version  bool

	maxRSSBytes int64 // maxRSS parsed, 0: no limit
}

// bench parses the flags, runs package bench on this executable and prints
// its result; exit 1 when a cell failed.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseBenchFlags(args, stdout, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	if f == nil {
		return exitOK // --help
	}
	if f.version {
		version, commit, modified := dlbench.Version()
		if modified {
			commit += " (modified)"
		}
		fmt.Fprintf(stdout, "dlflow bench %s %s %s\n", version, strings.TrimSpace(commit), runtime.Version())
		return exitOK
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(stderr, err)
	}
	opts := f.opts
	opts.Executable, opts.Env, opts.Registry = exe, []string{cliEnv + "=1"}, pipeline.DefaultRegistry
	opts.Progress = func(e dlbench.Event) { printBenchEvent(stderr, e) }
	opts.Command = append([]string{"dlflow", "bench"}, args...)
	res, err := dlbench.Run(ctx, opts)
	if errors.As(err, new(*dlbench.TopologyError)) {
		err = usagef("%w", err)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if f.plot != "" {
		render := res.SVG
		if strings.EqualFold(filepath.Ext(f.plot), ".png") {
			render = res.PNG
		}
		data, err := render()
		if err == nil {
			err = os.WriteFile(f.plot, data, 0o644)
		}
		if err != nil {
			return fail(stderr, fmt.Errorf("--plot: %w", err))
		}
	}
	if f.timeline != "" {
		if err := writeTimeline(f.timeline, res.Timeline()); err != nil {
			return fail(stderr, fmt.Errorf("--timeline: %w", err))
		}
	}
	if f.csv != "" {
		if err := writeFile(f.csv, res.WriteCSV); err != nil {
			return fail(stderr, fmt.Errorf("--csv: %w", err))
		}
	}
	if f.json != "" && f.json != "-" {
		if err := writeFile(f.json, res.WriteJSON); err != nil {
			return fail(stderr, fmt.Errorf("--json: %w", err))
		}
	}
	switch {
	case f.json == "-":
		_ = res.WriteJSON(stdout)
	case f.markdown:
		_ = res.WriteMarkdown(stdout)
	default:
		_ = res.WriteTable(stdout)
	}
	if res.Stopped != "" {
		fmt.Fprintf(stderr, "bench: %s\n", res.Stopped)
	}
	if res.Failed() || overRSS(res, f.maxRSSBytes, stderr) {
		return exitFailed
	}
	return exitOK
}

// printBenchEvent prints what the bench is doing, a line each.
func printBenchEvent(w io.Writer, e dlbench.Event) {
	switch e.Kind {
	case dlbench.ScenarioStarted:
		fmt.Fprintf(w, "bench: scenario %s: %s\n", e.Scenario, e.Server)
	case dlbench.RunStarted:
		fmt.Fprintf(w, "bench: %s: %s run %d/%d\n", e.Scenario, e.Cell, e.Run, e.Runs)
	case dlbench.WarmupStarted:
		fmt.Fprintf(w, "bench: %s: %s warm-up %d/%d\n", e.Scenario, e.Cell, e.Run, e.Runs)
	case dlbench.Estimated:
		switch {
		case e.Estimate < 5*time.Second: // not worth a line
		case e.Run == 0:
			fmt.Fprintf(w, "bench: %s: about %v (an estimate from the scenario's parameters)\n", e.Scenario, e.Estimate.Round(time.Second))
		default:
			fmt.Fprintf(w, "bench: %s: about %v left (measured over %d round(s))\n", e.Scenario, e.Estimate.Round(time.Second), e.Run)
		}
	case dlbench.Unverified:
		fmt.Fprintf(w, "bench: sha256 of the first output: %s (unverified)\n", e.SHA256)
	case dlbench.Skipped:
		fmt.Fprintf(w, "bench: %s: no %s row: %s\n", e.Scenario, e.Cell, e.Reason)
	}
}

// benchStrings are the flags of dlflow bench that are parsed after
// pflag: sizes, lists and names.
type benchStrings struct {
	size       *string
	conns      *string
	pieces     *string
	varies     *[]string
	scenarios  *[]string
	rate       *string
	connRate   *string
	mirrorRate *string
	fileSize   *string
	trickle    *string
	treeLarge  *string
	origin     *string
	urls       *[]string
	sums       *[]string
	compare    *string
}

// parseBenchFlags returns nil flags (and no error) after --help.
func parseBenchFlags(args []string, stdout, stderr io.Writer) (*benchFlags, error) {
	f := &benchFlags{}
	fs := pflag.NewFlagSet("dlflow bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	r := defineBenchFlags(fs, f)
	fs.Usage = func() { printUsage(fs, stdout, benchUsageHead, benchUsageTail) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil
		}
		return nil, usagef("%v (see dlflow bench --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("bench takes no arguments; got %q", fs.Args())
	}
	for _, step := range []func() error{
		func() error { return r.sizes(&f.opts) },
		func() error { return checkBenchCounts(fs, f, *r.compare) },
		func() error { return r.lists(&f.opts) },
		func() error { return r.origins(fs, &f.opts) },
		f.parseMaxRSS,
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// defineBenchFlags defines the flags of dlflow bench on fs: those pflag
// parses into f, the others into the benchStrings returned.
func defineBenchFlags(fs *pflag.FlagSet, f *benchFlags) *benchStrings {
	o := &f.opts
	r := &benchStrings{}
	r.size = fs.String("size", "256MiB", "size of the generated file")
	fs.IntVar(&o.Runs, "runs", 3, "runs per cell (the least, with --max-runs); the table shows the median, its 95% interval, mean and sd")
	fs.IntVar(&o.Runs, "min-runs", 3, "the same as --runs")
	fs.IntVar(&o.MaxRuns, "max-runs", 0, "go on past --runs, up to this many runs, until every cell's median time is known to --target")
	fs.Float64Var(&o.Target, "target", dlbench.DefaultTarget, "with --max-runs: the width of the median's 95% interval over the median to reach (0.05: about ±2.5%)")
	fs.IntVar(&o.Warmup, "warmup", 0, "runs of each cell before the measured ones, checked but not measured")
	fs.DurationVar(&o.MaxTime, "max-time", 0, "start no run after this long (e.g. 10m); the cells keep the runs they have")
	fs.StringVar(&o.Baseline, "baseline", "", "label of the cell (as the table shows it) that every cell is compared to, with a 95% interval")
	fs.BoolVar(&f.version, "version", false, "print the version and commit of this binary and exit")
	fs.StringArrayVarP(&o.Topologies, "config", "c", nil, "topology to run (repeatable; default: every example)")
	r.conns = fs.String("connections", "8", "range readers for topologies with an http.reader, a comma list: one cell each (4,8,16)")
	r.pieces = fs.String("piece", "", "range.splitter piece sizes, a comma list: one cell each (1MiB,4MiB; default: the topology's)")
	fs.StringArrayVar(&o.Sets, "set", nil, "set a config key in every topology, e.g. --set stages.write.config.fsync=false (repeatable)")
	r.varies = fs.StringArray("vary", nil, "a config key and a comma list of values, one cell each, e.g. --vary stages.write.config.direct=always,never (repeatable: every combination)")
	r.scenarios = fs.StringSlice("scenario", []string{string(dlbench.ScenarioPlain)}, "origin behaviour, repeatable or a comma list: "+scenarioNames)
	r.rate = fs.String("rate", "25MiB", "per-request (per-response) rate limit of the ratelimit and cap scenarios")
	fs.DurationVar(&o.Latency, "latency", 0, "delay before each response header in the latency, wan and small scenarios (default 20ms, 100ms and 50ms)")
	r.connRate = fs.String("conn-rate", "10MiB", "cap of every TCP connection in the wan and s3cap scenarios (and of the primary in mirrors), per second, over all its responses")
	r.mirrorRate = fs.String("mirror-rate", "4MiB", "cap of every TCP connection of the mirror in the mirrors scenario, per second")
	fs.IntVar(&o.Files, "files", dlbench.DefaultFiles, "number of files of the small scenario")
	r.fileSize = fs.String("file-size", "16KiB", "size of each file of the small scenario (--size is the other scenarios')")
	fs.IntVar(&o.Jobs, "jobs", dlbench.DefaultJobs, "files downloaded at once in the small scenario (dlflow --jobs, xargs -P for curl, aria2c -j)")
	r.trickle = fs.String("trickle", "1MiB", "rate of the one slow GET of the slowconn scenario, per second")
	fs.IntVar(&o.SlowRequest, "slow-request", dlbench.DefaultSlowRequest, "which GET trickles in the slowconn scenario (1: the first; single-stream downloads make only one)")
	fs.StringVar(&o.Tree, "tree", "", "`TREE` of the extract scenario, tarred and served as .tar.gz and .tar.zst: goroot (go env GOROOT), generated (--tree-files small files and 4 of --tree-large), or a directory (default: goroot, else generated)")
	fs.IntVar(&o.TreeFiles, "tree-files", dlbench.DefaultTreeFiles, "small files of the generated tree (extract scenario)")
	r.treeLarge = fs.String("tree-large", "24MiB", "size of each of the 4 large files of the generated tree (extract scenario)")
	r.origin = fs.String("origin", string(dlbench.OriginGo), "serve the generated file from the built-in Go origin (go) or a real nginx (nginx: plain, ratelimit and cap)")
	r.urls = fs.StringArray("url", nil, "benchmark an external [LABEL=]URL instead of the built-in origin (no scenarios); repeatable, a table each")
	r.sums = fs.StringArray("sha256", nil, "expected [LABEL=]sha256 (hex) of --url; without it the outputs are reported unverified")
	r.compare = fs.String("compare", "", "add reference rows on the same origin: --compare for all installed of "+strings.Join(dlbench.ReferenceTools, ", ")+", or a comma list (--compare=curl,axel)")
	fs.Lookup("compare").NoOptDefVal = "all"
	fs.StringVar(&f.json, "json", "", "print the results document (environment, command, options, cells with every run) as JSON instead of tables; --json=FILE writes it to FILE besides the tables")
	fs.Lookup("json").NoOptDefVal = "-"
	fs.BoolVar(&f.markdown, "markdown", false, "print the tables in Markdown, for a report")
	fs.StringVar(&f.csv, "csv", "", "also write one row per run to this CSV file")
	fs.StringVar(&f.plot, "plot", "", "write a chart of median throughput to this file, SVG or, named .png, PNG: a line against the swept value for a sweep of --connections, --piece or one --vary, else a bar per cell")
	fs.StringVar(&f.timeline, "timeline", "", "trace the last run of each dlflow cell and draw where its time went to this file: SVG, PNG (.png) or JSON (.json): a lane per connection, each request a bar (sent, header, rate), steals, retries and drops, and the stages' busy time")
	fs.StringVar(&o.Dir, "dir", "", "directory for the outputs (default: a temporary directory)")
	fs.StringVar(&f.maxRSS, "max-rss", "", "exit 1 when a dlflow cell's peak RSS (the largest of its runs) is above this size, e.g. 20MiB: a check of a memory goal")
	return r
}

// sizes parses the flags that are sizes.
func (r *benchStrings) sizes(o *dlbench.Options) error {
	var err error
	if o.Size, err = pipeline.ParseByteSize(*r.size); err != nil || o.Size <= 0 {
		return usagef("--size: want a positive size such as 256MiB, got %q", *r.size)
	}
	if o.Rate, err = pipeline.ParseByteSize(*r.rate); err != nil || o.Rate <= 0 {
		return usagef("--rate: want a positive size per second such as 25MiB, got %q", *r.rate)
	}
	if o.Trickle, err = pipeline.ParseByteSize(*r.trickle); err != nil || o.Trickle <= 0 {
		return usagef("--trickle: want a positive size per second such as 1MiB, got %q", *r.trickle)
	}
	if o.MirrorRate, err = pipeline.ParseByteSize(*r.mirrorRate); err != nil || o.MirrorRate <= 0 {
		return usagef("--mirror-rate: want a positive size per second such as 4MiB, got %q", *r.mirrorRate)
	}
	if o.ConnRate, err = pipeline.ParseByteSize(*r.connRate); err != nil || o.ConnRate <= 0 {
		return usagef("--conn-rate: want a positive size per second such as 10MiB, got %q", *r.connRate)
	}
	if o.FileSize, err = pipeline.ParseByteSize(*r.fileSize); err != nil || o.FileSize <= 0 {
		return usagef("--file-size: want a positive size such as 16KiB, got %q", *r.fileSize)
	}
	if o.TreeLarge, err = pipeline.ParseByteSize(*r.treeLarge); err != nil || o.TreeLarge <= 0 {
		return usagef("--tree-large: want a positive size such as 24MiB, got %q", *r.treeLarge)
	}
	return nil
}

// checkBenchCounts checks the counts and times of f and the output
// choice, and reads --compare.
func checkBenchCounts(fs *pflag.FlagSet, f *benchFlags, compare string) error {
	o := &f.opts
	if o.Files < 1 || o.Jobs < 1 || o.TreeFiles < 1 {
		return usagef("--files, --jobs and --tree-files must be at least 1")
	}
	if o.Runs < 1 {
		return usagef("--runs must be at least 1")
	}
	if fs.Changed("max-runs") && o.MaxRuns < o.Runs {
		return usagef("--max-runs %d is below --runs %d", o.MaxRuns, o.Runs)
	}
	if o.Target <= 0 || o.Warmup < 0 || o.MaxTime < 0 {
		return usagef("--target must be positive, --warmup and --max-time not negative")
	}
	o.Timeline = f.timeline != ""
	if f.json == "-" && f.markdown {
		return usagef("--json and --markdown both choose the output: pick one")
	}
	switch compare {
	case "":
	case "all":
		o.Compare = true
	default:
		o.Compare = true
		for _, tool := range splitList(compare) {
			if !slices.Contains(dlbench.ReferenceTools, tool) {
				return usagef("--compare: unknown tool %q (known: %s)", tool, strings.Join(dlbench.ReferenceTools, ", "))
			}
			o.Tools = append(o.Tools, tool)
		}
	}
	if o.SlowRequest < 1 {
		return usagef("--slow-request must be at least 1")
	}
	if o.Latency < 0 || fs.Changed("latency") && o.Latency == 0 {
		return usagef("--latency must be positive")
	}
	return nil
}

// lists parses the flags that are lists: --set, --vary, --connections,
// --piece, --scenario.
func (r *benchStrings) lists(o *dlbench.Options) error {
	var err error
	for _, s := range o.Sets {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return usagef("--set: want KEY=VALUE, got %q", s)
		}
	}
	if o.Vary, err = parseVaries(*r.varies); err != nil {
		return err
	}
	for _, s := range splitList(*r.conns) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return usagef("--connections: want numbers of at least 1 such as 4,8,16, got %q", s)
		}
		if !slices.Contains(o.Connections, n) {
			o.Connections = append(o.Connections, n)
		}
	}
	for _, s := range splitList(*r.pieces) {
		p, err := pipeline.ParseByteSize(s)
		if err != nil || p <= 0 {
			return usagef("--piece: want sizes such as 1MiB,4MiB, got %q", s)
		}
		if !slices.Contains(o.Pieces, p) {
			o.Pieces = append(o.Pieces, p)
		}
	}
	for _, list := range *r.scenarios {
		for _, name := range splitList(list) {
			s := dlbench.Scenario(name)
			if !slices.Contains(dlbench.Scenarios, s) {
				return usagef("--scenario: unknown scenario %q (known: %s)", name, scenarioNames)
			}
			if !slices.Contains(o.Scenarios, s) {
				o.Scenarios = append(o.Scenarios, s)
			}
		}
	}
	return nil
}

// origins picks the scenarios a flag alone asks for, the origin, and the
// external URLs.
func (r *benchStrings) origins(fs *pflag.FlagSet, o *dlbench.Options) error {
	var err error
	// --rate, --latency, ... alone ask for their scenario.
	if !fs.Changed("scenario") {
		switch {
		case fs.Changed("rate"):
			o.Scenarios = []dlbench.Scenario{dlbench.ScenarioRateLimit}
		case fs.Changed("mirror-rate"):
			o.Scenarios = []dlbench.Scenario{dlbench.ScenarioMirrors}
		case fs.Changed("conn-rate"):
			o.Scenarios = []dlbench.Scenario{dlbench.ScenarioWAN}
		case fs.Changed("files") || fs.Changed("file-size") || fs.Changed("jobs"):
			o.Scenarios = []dlbench.Scenario{dlbench.ScenarioSmall}
		case fs.Changed("latency"):
			o.Scenarios = []dlbench.Scenario{dlbench.ScenarioLatency}
		case fs.Changed("trickle") || fs.Changed("slow-request"):
			o.Scenarios = []dlbench.Scenario{dlbench.ScenarioSlowConn}
		case fs.Changed("tree") || fs.Changed("tree-files") || fs.Changed("tree-large"):
			o.Scenarios = []dlbench.Scenario{dlbench.ScenarioExtract}
		}
	}
	switch o.Origin = dlbench.Origin(*r.origin); o.Origin {
	case dlbench.OriginGo:
	case dlbench.OriginNginx:
		for _, s := range o.Scenarios {
			if !dlbench.NginxServes(s) {
				return usagef("--origin nginx serves the plain, ratelimit, cap and extract scenarios only, not %s", s)
			}
		}
	default:
		return usagef("--origin: want go or nginx, got %q", *r.origin)
	}
	if len(*r.urls) > 0 {
		if fs.Changed("scenario") || fs.Changed("origin") || fs.Changed("size") {
			return usagef("--url benchmarks an external server: --scenario, --origin and --size apply to the built-in origin only")
		}
		if o.URLs, err = parseTargets(*r.urls, *r.sums); err != nil {
			return err
		}
		o.Origin, o.Scenarios = dlbench.OriginExternal, nil
	} else if len(*r.sums) > 0 {
		return usagef("--sha256 goes with --url; the built-in origin's sha256 is known")
	}
	return nil
}

// parseTargets reads the --url [LABEL=]URL and --sha256 [LABEL=]HEX
// flags. A sum without a label is the only URL's.
func parseTargets(urls, sums []string) ([]dlbench.Target, error) {
	var targets []dlbench.Target
	for i, u := range urls {
		t := dlbench.Target{URL: u}
		if label, rest, ok := cutLabel(u); ok {
			t.Label, t.URL = label, rest
		} else if len(urls) > 1 {
			t.Label = fmt.Sprintf("url%d", i+1)
		}
		if slices.ContainsFunc(targets, func(o dlbench.Target) bool { return o.Label == t.Label }) {
			return nil, usagef("--url: the label %q is given twice", t.Label)
		}
		targets = append(targets, t)
	}
	for _, s := range sums {
		label, sum, ok := cutLabel(s)
		i := slices.IndexFunc(targets, func(t dlbench.Target) bool { return t.Label == label })
		switch {
		case !ok && len(targets) == 1:
			i, sum = 0, s
		case !ok:
			return nil, usagef("--sha256 %q: with several --url, name the URL: --sha256 LABEL=HEX", s)
		case i < 0:
			return nil, usagef("--sha256: no --url is labelled %q", label)
		}
		sum = strings.ToLower(strings.TrimPrefix(sum, "sha256:"))
		if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
			return nil, usagef("--sha256: want 64 hex digits, got %q", sum)
		}
		targets[i].SHA256 = sum
	}
	return targets, nil
}

// cutLabel splits LABEL=VALUE where LABEL is a plain word (letters,
// digits, - _ .): a URL's own = (in its query) is never taken for one.
func cutLabel(s string) (label, value string, ok bool) {
	label, value, ok = strings.Cut(s, "=")
	if !ok || label == "" || strings.ToLower(label) == "sha256" {
		return "", s, false
	}
	for _, r := range label {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return "", s, false
		}
	}
	return label, value, true
}

// writeFile writes what write makes to path.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeTimeline writes t to path as SVG, PNG or JSON, by its extension.
func writeTimeline(path string, t dlbench.Timeline) error {
	render := t.SVG
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		render = t.PNG
	case ".json":
		render = t.JSON
	}
	data, err := render()
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// splitList splits a comma list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parseVaries reads the --vary flags: a key and a comma list of values
// each.
func parseVaries(varies []string) ([]dlbench.Vary, error) {
	var out []dlbench.Vary
	for _, v := range varies {
		key, list, ok := strings.Cut(v, "=")
		values := splitList(list)
		if !ok || key == "" || len(values) == 0 {
			return nil, usagef("--vary: want KEY=V1,V2, got %q", v)
		}
		out = append(out, dlbench.Vary{Key: key, Values: values})
	}
	return out, nil
}
