package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/pipeline"
)

// benchSeed picks the generated content; any value works.
const benchSeed = 0xd1f10

// cliEnv, when set to 1, makes a binary that embeds the CLI (the test
// binary, too) behave as the CLI; bench runs each download as such a child
// process so that its peak RSS and CPU time are its own.
const cliEnv = "RUN_DLFLOW_CLI"

// Scenarios of the built-in origin.
const (
	scenarioPlain     = "plain"     // as fast as loopback goes
	scenarioRateLimit = "ratelimit" // every connection limited to --rate
	scenarioLatency   = "latency"   // --latency before every response header
	scenarioSlowConn  = "slowconn"  // one GET (--slow-request) trickles at --trickle
)

var benchScenarios = []string{scenarioPlain, scenarioRateLimit, scenarioLatency, scenarioSlowConn}

type benchFlags struct {
	size        pipeline.ByteSize
	runs        int
	scenarios   []string
	connections []int // 0: the topology's own
	pieces      []pipeline.ByteSize
	rate        pipeline.ByteSize
	latency     time.Duration
	trickle     pipeline.ByteSize
	slowRequest int
	origin      string // go or nginx
	url, sha256 string // an external origin instead of the built-in one
	compare     bool
	dir         string
	configs     []string
	sets        []string     // --set KEY=VALUE, for every dlflow cell
	variations  [][]benchSet // --vary: one cell per combination
	json        bool
	plot        string
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseBenchFlags(args, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	if f == nil {
		return exitOK // --help
	}
	cells, err := runBench(ctx, f, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	if f.plot != "" {
		if err := writePlot(f.plot, f, cells); err != nil {
			return fail(stderr, fmt.Errorf("--plot: %w", err))
		}
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(cells)
	} else {
		printBench(stdout, f, cells)
	}
	for _, c := range cells {
		if c.Error != "" {
			return exitFailed
		}
	}
	return exitOK
}

// parseBenchFlags returns nil flags (and no error) after --help.
func parseBenchFlags(args []string, stderr io.Writer) (*benchFlags, error) {
	f := &benchFlags{}
	fs := pflag.NewFlagSet("dlflow bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	size := fs.String("size", "256MiB", "size of the generated file")
	fs.IntVar(&f.runs, "runs", 3, "runs per cell; the table shows the median and min-max")
	fs.StringArrayVarP(&f.configs, "config", "c", nil, "topology to run (repeatable; default: every example)")
	conns := fs.String("connections", "8", "range readers for topologies with an http.reader, a comma list: one cell each (4,8,16)")
	pieces := fs.String("piece", "", "range.splitter piece sizes, a comma list: one cell each (1MiB,4MiB; default: the topology's)")
	fs.StringArrayVar(&f.sets, "set", nil, "set a config key in every topology, e.g. --set stages.write.config.fsync=false (repeatable)")
	varies := fs.StringArray("vary", nil, "a config key and a comma list of values, one cell each, e.g. --vary stages.write.config.direct=always,never (repeatable: every combination)")
	scenarios := fs.StringSlice("scenario", []string{scenarioPlain}, "origin behaviour, repeatable or a comma list: "+strings.Join(benchScenarios, ", "))
	rate := fs.String("rate", "25MiB", "per-connection rate limit of the ratelimit scenario")
	fs.DurationVar(&f.latency, "latency", 20*time.Millisecond, "delay before each response header in the latency scenario")
	trickle := fs.String("trickle", "1MiB", "rate of the one slow GET of the slowconn scenario, per second")
	fs.IntVar(&f.slowRequest, "slow-request", 2, "which GET trickles in the slowconn scenario (1: the first; single-stream downloads make only one)")
	fs.StringVar(&f.origin, "origin", "go", "serve the generated file from the built-in Go origin (go) or a real nginx (nginx: plain and ratelimit)")
	fs.StringVar(&f.url, "url", "", "benchmark an external URL instead of the built-in origin (no scenarios)")
	fs.StringVar(&f.sha256, "sha256", "", "expected sha256 (hex) of --url; without it the outputs are reported unverified")
	fs.BoolVar(&f.compare, "compare", false, "add curl, aria2c and axel (when installed) as reference rows on the same origin")
	fs.BoolVar(&f.json, "json", false, "print the cells as a JSON array instead of tables")
	fs.StringVar(&f.plot, "plot", "", "write a bar chart of median throughput per cell (min-max whiskers) to this SVG file")
	fs.StringVar(&f.dir, "dir", "", "directory for the outputs (default: a temporary directory)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dlflow bench [flags]

Serves a generated file from a built-in origin on 127.0.0.1 (or nginx, or
takes --url) and downloads it with every cell of a matrix: topology x
connections x piece size, each --runs times, each run a child process.
Checks every output's sha256 and prints, per cell, the median and min-max
throughput, median time, peak RSS, CPU time, the memory bound (as validate
computes it), and the stage that limits the run (from per-stage queue
fills). Needs no network unless --url is given.

Scenarios: plain; ratelimit (--rate per connection); latency (--latency
per response); slowconn (one GET, --slow-request, trickles at --trickle).

Examples:
  dlflow bench
  dlflow bench --size 1GiB --runs 5 -c examples/ranged.yaml -c examples/stream.yaml
  dlflow bench -c examples/ranged.yaml --connections 4,8,16 --piece 1MiB,4MiB
  dlflow bench -c examples/stream.yaml --vary stages.write.config.fsync=true,false
  dlflow bench --scenario ratelimit,slowconn --compare --plot bench.svg
  dlflow bench --origin nginx --scenario ratelimit --compare
  dlflow bench --url https://example.com/big.iso --sha256 HEX --runs 1

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil
		}
		return nil, usagef("%v (see dlflow bench --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("bench takes no arguments; got %q", fs.Args())
	}
	var err error
	if f.size, err = pipeline.ParseByteSize(*size); err != nil || f.size <= 0 {
		return nil, usagef("--size: want a positive size such as 256MiB, got %q", *size)
	}
	if f.rate, err = pipeline.ParseByteSize(*rate); err != nil || f.rate <= 0 {
		return nil, usagef("--rate: want a positive size per second such as 25MiB, got %q", *rate)
	}
	if f.trickle, err = pipeline.ParseByteSize(*trickle); err != nil || f.trickle <= 0 {
		return nil, usagef("--trickle: want a positive size per second such as 1MiB, got %q", *trickle)
	}
	if f.runs < 1 {
		return nil, usagef("--runs must be at least 1")
	}
	if f.slowRequest < 1 {
		return nil, usagef("--slow-request must be at least 1")
	}
	if f.latency < 0 {
		return nil, usagef("--latency must not be negative")
	}
	for _, s := range f.sets {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return nil, usagef("--set: want KEY=VALUE, got %q", s)
		}
	}
	if f.variations, err = parseVaries(*varies); err != nil {
		return nil, err
	}
	for _, s := range splitList(*conns) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, usagef("--connections: want numbers of at least 1 such as 4,8,16, got %q", s)
		}
		if !slices.Contains(f.connections, n) {
			f.connections = append(f.connections, n)
		}
	}
	if len(f.connections) == 0 {
		f.connections = []int{0}
	}
	for _, s := range splitList(*pieces) {
		p, err := pipeline.ParseByteSize(s)
		if err != nil || p <= 0 {
			return nil, usagef("--piece: want sizes such as 1MiB,4MiB, got %q", s)
		}
		if !slices.Contains(f.pieces, p) {
			f.pieces = append(f.pieces, p)
		}
	}
	for _, list := range *scenarios {
		for _, s := range splitList(list) {
			if !slices.Contains(benchScenarios, s) {
				return nil, usagef("--scenario: unknown scenario %q (known: %s)", s, strings.Join(benchScenarios, ", "))
			}
			if !slices.Contains(f.scenarios, s) {
				f.scenarios = append(f.scenarios, s)
			}
		}
	}
	// --rate or --latency alone ask for their scenario.
	if !fs.Changed("scenario") {
		switch {
		case fs.Changed("rate"):
			f.scenarios = []string{scenarioRateLimit}
		case fs.Changed("latency"):
			f.scenarios = []string{scenarioLatency}
		case fs.Changed("trickle") || fs.Changed("slow-request"):
			f.scenarios = []string{scenarioSlowConn}
		}
	}
	switch f.origin {
	case "go":
	case "nginx":
		for _, s := range f.scenarios {
			if s != scenarioPlain && s != scenarioRateLimit {
				return nil, usagef("--origin nginx serves the plain and ratelimit scenarios only, not %s", s)
			}
		}
	default:
		return nil, usagef("--origin: want go or nginx, got %q", f.origin)
	}
	if f.url != "" {
		if fs.Changed("scenario") || fs.Changed("origin") || fs.Changed("size") {
			return nil, usagef("--url benchmarks an external server: --scenario, --origin and --size apply to the built-in origin only")
		}
		f.scenarios = []string{"external"}
		f.origin = "external"
	} else if f.sha256 != "" {
		return nil, usagef("--sha256 goes with --url; the built-in origin's sha256 is known")
	}
	if f.sha256 != "" {
		f.sha256 = strings.ToLower(strings.TrimPrefix(f.sha256, "sha256:"))
		if b, err := hex.DecodeString(f.sha256); err != nil || len(b) != sha256.Size {
			return nil, usagef("--sha256: want 64 hex digits, got %q", f.sha256)
		}
	}
	return f, nil
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

func verify(path, want string) (got string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	got = hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return got, fmt.Errorf("sha256 mismatch: got %s, want %s", got, want)
	}
	return got, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func sha256Sum(data []byte) [32]byte { return sha256.Sum256(data) }

// benchSet is one --vary value: the --set it passes and the label it adds.
type benchSet struct {
	set, label string
}

// parseVaries turns the --vary flags into every combination of their
// values, in the order given (the last flag varies fastest). With none it
// is one empty combination.
func parseVaries(varies []string) ([][]benchSet, error) {
	keys := make([]string, len(varies))
	valueLists := make([][]string, len(varies))
	for i, v := range varies {
		key, list, ok := strings.Cut(v, "=")
		values := splitList(list)
		if !ok || key == "" || len(values) == 0 {
			return nil, usagef("--vary: want KEY=V1,V2, got %q", v)
		}
		keys[i], valueLists[i] = key, values
	}
	labels := varyLabels(keys)
	combos := [][]benchSet{nil}
	for i, key := range keys {
		var next [][]benchSet
		for _, c := range combos {
			for _, val := range valueLists[i] {
				next = append(next, append(slices.Clip(c), benchSet{set: key + "=" + val, label: labels[i] + "=" + val}))
			}
		}
		combos = next
	}
	return combos, nil
}

// varyLabels names each key by its last part, since fsync=false reads
// better in a table than stages.write.config.fsync=false; keys that share
// a last part keep their stage too (fetch.buffer, write.buffer).
func varyLabels(keys []string) []string {
	last := func(k string) string { return k[strings.LastIndexByte(k, '.')+1:] }
	count := map[string]int{}
	for _, k := range keys {
		count[last(k)]++
	}
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = last(k)
		if count[labels[i]] > 1 {
			if stage, _, ok := strings.Cut(strings.TrimPrefix(k, "stages."), "."); ok && strings.HasPrefix(k, "stages.") {
				labels[i] = stage + "." + labels[i]
			} else {
				labels[i] = k
			}
		}
	}
	return labels
}
