// Package bench measures download topologies. It serves a generated file
// from a built-in origin on 127.0.0.1 (package bench/origin, or nginx), or
// takes an external URL, and downloads it with every cell of a matrix:
// topology x connections x piece size x config variations, plus curl,
// aria2c and axel as reference rows when asked and installed. Each run is
// a child process, so that its peak RSS and CPU time are its own. Every
// output's sha256 is checked; per cell, the result holds the median and
// min-max throughput, the median time, peak RSS, CPU time, the memory bound
// (as validate computes it) and the stage that limits the run (from
// per-stage queue fills). Result renders it as tables, JSON or an SVG plot.
//
// A dlflow run is the command
//
//	EXECUTABLE get -c TOPOLOGY --url URL -o OUT -q --no-resume --metrics-json FILE [--connections N] [--set KEY=VALUE]...
//
// with Options.Env added to this process's environment: Executable is any
// binary that runs the dlflow command line (github.com/dlflow/dlflow/cmd),
// and FILE receives its per-stage metrics as a pipeline.MetricsSnapshot in
// JSON. In the small scenario a run is a batch of many files,
//
//	EXECUTABLE get -i LIST --jobs J --dir DIR -q --no-resume [-c TOPOLOGY] [--connections N] [--set KEY=VALUE]...
//
// without -c unless Options.Topologies are given (dlflow then picks each
// file's topology, as for a user's -i LIST), and without per-stage
// metrics. In the extract scenario a run unpacks an archive,
//
//	EXECUTABLE get [-c TOPOLOGY] --url URL --extract DIR -q --no-resume --metrics-json FILE [--connections N] [--set KEY=VALUE]...
//
// once per archive format, and its tree is checked against the source's
// (see ScenarioExtract).
package bench

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// Scenario is how the origin behaves while the cells download from it.
type Scenario string

// The scenarios.
const (
	ScenarioPlain     Scenario = "plain"     // as fast as loopback goes
	ScenarioRateLimit Scenario = "ratelimit" // every connection limited to Options.Rate
	ScenarioLatency   Scenario = "latency"   // Options.Latency before every response header
	ScenarioSlowConn  Scenario = "slowconn"  // one GET (Options.SlowRequest) trickles at Options.Trickle
	// ScenarioCap is nginx's limit_rate: every request (response) capped
	// at Options.Rate from its first byte, so that each new request of a
	// connection starts over at the cap's pace. The origin behaves as in
	// ratelimit, whose cap is per response too; cap is the name issue #20
	// measured it under, where --compare adds the oracle (N curls on the
	// N ranges of a size known in advance). The figures were for
	//
	//	dlflow bench --scenario cap --size 1GiB -c examples/ranged.yaml --connections 8 --compare=oracle,axel
	ScenarioCap Scenario = "cap"
	// ScenarioWAN is a real network's link: every TCP connection capped
	// at Options.ConnRate over all its responses, and Options.Latency
	// before every response header.
	ScenarioWAN Scenario = "wan"
	// ScenarioSmall is many small files: Options.Files of
	// Options.FileSize, Options.Latency before every response header,
	// downloaded as a batch, Options.Jobs at once. Its cells report the
	// requests per file and the connections the origin accepted.
	ScenarioSmall Scenario = "small"
	// ScenarioMirrors is one file on several servers: the primary as in
	// wan (Options.ConnRate per TCP connection, Options.Latency before
	// each response, 50 ms by default), a mirror capped at
	// Options.MirrorRate per connection, and a dead one (nothing
	// listens). Each dlflow cell runs three ways: the primary alone, with
	// the mirror (+mirror) and with the dead one (+dead); --compare adds
	// aria2c with the primary and the mirror.
	ScenarioMirrors Scenario = "mirrors"
	// ScenarioExtract is an archive unpacked while it downloads: a real
	// tree (Options.Tree) served as .tar.gz and .tar.zst, each dlflow
	// cell run with --extract DIR once per format; --compare adds the
	// shell pipes (curl | tar xz, curl | tar --zstd -x, curl | zstd -d |
	// tar x, each then sync). Every extracted tree is checked against the
	// source's manifest: paths, types, permissions, sizes and sha256.
	ScenarioExtract Scenario = "extract"
	// ScenarioS3 is an upload while downloading: the origin as in plain,
	// and each run's output an object of a SeaweedFS (weed) that the
	// bench starts on loopback, read back to check its sha256. dlflow
	// runs `URL -o s3://BUCKET/KEY`; --compare adds `curl URL | s5cmd
	// pipe s3://BUCKET/KEY` (tool s5cmd). ScenarioS3Cap is the same with
	// every TCP connection of the origin capped at Options.ConnRate, over
	// all its responses. Issue #20 measured them with
	//
	//	dlflow bench --scenario s3,s3cap --conn-rate 25MiB --size 1GiB --compare --runs 3
	ScenarioS3       Scenario = "s3"
	ScenarioS3Cap    Scenario = "s3cap"
	ScenarioExternal Scenario = "external" // Options.URL, as it is
)

// Scenarios are the scenarios of the built-in origins.
var Scenarios = []Scenario{ScenarioPlain, ScenarioRateLimit, ScenarioCap, ScenarioLatency, ScenarioSlowConn, ScenarioWAN, ScenarioSmall, ScenarioMirrors, ScenarioExtract, ScenarioS3, ScenarioS3Cap}

// Origin is the server the cells download from.
type Origin string

// The origins.
const (
	OriginGo       Origin = "go"       // the built-in Go origin (bench/origin)
	OriginNginx    Origin = "nginx"    // nginx serving the generated file (extract: the archives): plain, ratelimit, cap and extract only (its limit_rate is per request, not per connection)
	OriginExternal Origin = "external" // Options.URL
)

// Defaults of the zero Options fields.
const (
	DefaultSize        = 256 << 20 // bytes of the generated file
	DefaultRate        = 25 << 20  // bytes per second per response, ratelimit and cap
	DefaultTrickle     = 1 << 20   // bytes per second of the slow GET, slowconn
	DefaultSlowRequest = 2         // which GET trickles, slowconn
	DefaultConnRate    = 10 << 20  // bytes per second per TCP connection, wan
	DefaultMirrorRate  = 4 << 20   // bytes per second per TCP connection of the mirror, mirrors
	DefaultFiles       = 300       // files of the batch, small
	DefaultFileSize    = 16 << 10  // bytes of each, small
	DefaultJobs        = 8         // files at once, small
	DefaultTarget      = 0.05      // relative width of a median's 95% interval, with MaxRuns

	// Delays before each response header when Options.Latency is 0:
	// issue #14 measured the wan and small figures with these.
	DefaultLatency        = 20 * time.Millisecond  // latency
	DefaultWANLatency     = 100 * time.Millisecond // wan
	DefaultSmallLatency   = 50 * time.Millisecond  // small
	DefaultMirrorsLatency = 50 * time.Millisecond  // mirrors, the primary's
)

// Target is an external URL to benchmark, with the label of its table and
// cells (their Scenario) and the sha256 (hex) its outputs must hash to,
// or "" to report them unverified.
type Target struct {
	Label  string `json:"label"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256,omitempty"`
}

// Vary is a config key and the values it takes, one cell each.
type Vary struct {
	Key    string   // dotted key path, such as stages.write.config.fsync
	Values []string // as --set takes them
}

// Options are one bench: the matrix, the origin and the process that runs
// each download. The zero value of a field picks its default.
type Options struct {
	// Executable runs each dlflow download (see the package
	// documentation); Env is added to this process's environment for it,
	// such as what makes a test binary act as the CLI. Required.
	Executable string
	Env        []string
	// Registry knows the stage types of the topologies, for their memory
	// bounds; it should be Executable's. Nil is pipeline.DefaultRegistry.
	Registry *pipeline.Registry

	// Topologies are the topology files to run; none runs the embedded
	// examples (examples.Topologies), written to Dir.
	Topologies []string
	// Connections are the numbers of range readers of topologies with an
	// http.reader, one cell each; 0 (and none) is the topology's own. The
	// multi-connection reference tools take them too (8 for 0).
	Connections []int
	// Pieces are range.splitter piece sizes, one cell each, for
	// topologies with a splitter; none is the topology's own.
	Pieces []pipeline.ByteSize
	// Sets are KEY=VALUE overrides for every dlflow cell; Vary adds one
	// cell per value of each key, every combination when there are
	// several (the last varies fastest).
	Sets []string
	Vary []Vary
	// Compare adds curl, aria2c and axel, where installed, as reference
	// rows on the same origin. In the small scenario they are curl (Jobs
	// processes under xargs -P, each given its share of the URLs in one
	// invocation, so it keeps its connection alive) and aria2c (-i LIST
	// -j Jobs); axel takes no list and has no row. In the s3 scenarios
	// it is `curl URL | s5cmd pipe s3://BUCKET/KEY` (tool s5cmd), and a
	// Skipped event says why when s5cmd is not on PATH.
	Compare bool
	// Tools, when not empty, are the reference tools that Compare adds
	// (of ReferenceTools); empty is all of them. The oracle runs in the
	// scenarios of one file of the built-in origin but slowconn: N curls
	// started at once on the N ranges of the size the bench knows, their
	// parts then concatenated, all timed as one shell command.
	Tools []string
	// Runs is how many times each cell runs at least (default 1); runs go
	// round-robin over the cells. With MaxRuns above Runs, rounds go on
	// until every cell's median time is known to Target (the relative
	// width of its 95% interval, default DefaultTarget) or MaxRuns rounds
	// ran. Warmup rounds run first and are checked but not measured.
	Runs, MaxRuns, Warmup int
	Target                float64
	// MaxTime, when positive, starts no run after this much time: the
	// cells keep the runs they have, and Result.Stopped says so.
	MaxTime time.Duration
	// Baseline is the label of the cell every other cell of its scenario
	// is compared to (Cell.VsBaseline); "" compares none.
	Baseline string
	// Command is the command line the bench was started with, recorded
	// in the results document.
	Command []string

	// Scenarios are the origin's behaviours, each a table of its own;
	// none is plain (external with URL).
	Scenarios []Scenario
	// Origin serves the generated file: go (default) or nginx; it is
	// external with URL.
	Origin Origin
	// Size is the generated file's (default DefaultSize).
	Size pipeline.ByteSize
	// Rate limits every response in the ratelimit and cap scenarios
	// (default DefaultRate per second).
	Rate pipeline.ByteSize
	// Latency delays each response header in the latency, wan and small
	// scenarios; 0 picks each one's default (DefaultLatency,
	// DefaultWANLatency, DefaultSmallLatency).
	Latency time.Duration
	// ConnRate caps every TCP connection of the wan and s3cap scenarios
	// (and the mirrors scenario's primary), over all the responses it
	// carries (default DefaultConnRate per second).
	ConnRate pipeline.ByteSize
	// MirrorRate caps every TCP connection of the mirrors scenario's
	// mirror (default DefaultMirrorRate per second).
	MirrorRate pipeline.ByteSize
	// Files of FileSize each are the batch of the small scenario (default
	// DefaultFiles of DefaultFileSize; Size is the single file's of the
	// other scenarios), downloaded Jobs at once (default DefaultJobs).
	Files    int
	FileSize pipeline.ByteSize
	Jobs     int
	// Trickle is the rate of the one slow GET of the slowconn scenario
	// (default DefaultTrickle per second), and SlowRequest which GET it is
	// (1: the first; default DefaultSlowRequest).
	Trickle     pipeline.ByteSize
	SlowRequest int
	// Tree is the extract scenario's tree: TreeAuto, TreeGoroot,
	// TreeGenerated (TreeFiles small files, default DefaultTreeFiles, and
	// 4 of TreeLarge bytes, default DefaultTreeLarge) or a directory. Its
	// archives are built once per bench in Dir (reused from an earlier
	// bench in the same Dir when the tree is unchanged).
	Tree      string
	TreeFiles int
	TreeLarge pipeline.ByteSize

	// URL benchmarks an external server instead of the built-in origin;
	// SHA256 (hex) is what its outputs must hash to, or "" to report them
	// unverified. URLs benchmark several, a table each; URL and SHA256
	// are then URLs' first when it has one, labelled "external".
	URL, SHA256 string
	URLs        []Target

	// Timeline makes every dlflow cell (but the small scenario's) record
	// its requests (dlflow get --trace-json) and keep its last measured
	// run's, for Result.Timeline.
	Timeline bool

	// Dir holds the outputs; "" is a temporary directory, removed after.
	Dir string
	// Progress, when set, is told what Run is doing, from Run's
	// goroutine.
	Progress func(Event)
}

// EventKind is what an Event reports.
type EventKind int

// The events of a bench.
const (
	// ScenarioStarted: the cells of Scenario are about to run against
	// Server (a description, such as "built-in origin on 127.0.0.1, 1MiB
	// generated").
	ScenarioStarted EventKind = iota + 1
	// RunStarted: run Run of Runs of Cell (its label) is starting.
	RunStarted
	// WarmupStarted: warm-up run Run of Runs of Cell is starting; it is
	// checked but not measured.
	WarmupStarted
	// Estimated: the cells of Scenario will take about Estimate, from
	// the scenario's parameters before the first run, and from the
	// measured rounds after each round (then Run is the rounds done).
	Estimated
	// Unverified: the first output of Scenario hashes to SHA256, and no
	// expected sum was given to verify it against.
	Unverified
	// Skipped: the reference row Cell of Scenario does not run, for
	// Reason (such as its tool not being installed).
	Skipped
)

// Event is a step of a bench, for a progress display.
type Event struct {
	Kind      EventKind
	Scenario  Scenario
	Server    string
	Cell      string
	Run, Runs int
	SHA256    string
	Estimate  time.Duration
	Reason    string
}

// normalized fills in the defaults and checks the options.
func (o Options) normalized() (Options, error) {
	if o.Executable == "" {
		return o, errors.New("no executable to run the downloads")
	}
	if o.Registry == nil {
		o.Registry = pipeline.DefaultRegistry
	}
	if o.Progress == nil {
		o.Progress = func(Event) {}
	}
	if o.Runs == 0 {
		o.Runs = 1
	}
	if o.MaxRuns < o.Runs {
		o.MaxRuns = o.Runs
	}
	if o.Target == 0 {
		o.Target = DefaultTarget
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Trickle == 0 {
		o.Trickle = DefaultTrickle
	}
	if o.SlowRequest == 0 {
		o.SlowRequest = DefaultSlowRequest
	}
	if o.MirrorRate == 0 {
		o.MirrorRate = DefaultMirrorRate
	}
	if o.ConnRate == 0 {
		o.ConnRate = DefaultConnRate
	}
	if o.Files == 0 {
		o.Files = DefaultFiles
	}
	if o.FileSize == 0 {
		o.FileSize = DefaultFileSize
	}
	if o.Jobs == 0 {
		o.Jobs = DefaultJobs
	}
	if o.TreeFiles == 0 {
		o.TreeFiles = DefaultTreeFiles
	}
	if o.TreeLarge == 0 {
		o.TreeLarge = DefaultTreeLarge
	}
	if len(o.Connections) == 0 {
		o.Connections = []int{0}
	}
	switch {
	case o.Warmup < 0, o.Target < 0, o.MaxTime < 0:
		return o, errors.New("warm-up runs, target and max time must not be negative")
	case o.Runs < 0, o.Size < 0, o.Rate < 0, o.Trickle < 0, o.SlowRequest < 0, o.Latency < 0:
		return o, errors.New("runs, size, rate, trickle, slow request and latency must not be negative")
	case o.ConnRate < 0, o.MirrorRate < 0, o.Files < 0, o.FileSize < 0, o.Jobs < 0, o.TreeFiles < 0, o.TreeLarge < 0:
		return o, errors.New("connection rate, files, file size, jobs and the generated tree's sizes must not be negative")
	case slices.ContainsFunc(o.Connections, func(n int) bool { return n < 0 }):
		return o, fmt.Errorf("connections must not be negative, got %v", o.Connections)
	case slices.ContainsFunc(o.Pieces, func(p pipeline.ByteSize) bool { return p <= 0 }):
		return o, fmt.Errorf("piece sizes must be positive, got %v", o.Pieces)
	}
	for _, v := range o.Vary {
		if v.Key == "" || len(v.Values) == 0 {
			return o, fmt.Errorf("vary %q: want a key and at least one value", v.Key)
		}
	}
	if o.URL != "" || len(o.URLs) > 0 {
		return o.normalizedTargets()
	}
	if o.SHA256 != "" {
		return o, errors.New("an expected sha256 goes with an external URL; the built-in origin's is known")
	}
	if o.Origin == "" {
		o.Origin = OriginGo
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = []Scenario{ScenarioPlain}
	}
	for _, s := range o.Scenarios {
		switch {
		case !slices.Contains(Scenarios, s):
			return o, fmt.Errorf("unknown scenario %q", s)
		case o.Origin == OriginNginx && !NginxServes(s):
			return o, fmt.Errorf("nginx serves the plain, ratelimit, cap and extract scenarios only, not %s", s)
		case o.Origin != OriginGo && o.Origin != OriginNginx:
			return o, fmt.Errorf("unknown origin %q", o.Origin)
		}
	}
	return o, nil
}

// NginxServes reports whether the nginx origin serves scenario s.
func NginxServes(s Scenario) bool {
	return s == ScenarioPlain || s == ScenarioRateLimit || s == ScenarioCap || s == ScenarioExtract
}

// normalizedTargets checks the external URLs: one scenario per URL,
// named by its label, each label once.
func (o Options) normalizedTargets() (Options, error) {
	if (o.Origin != "" && o.Origin != OriginExternal) || slices.ContainsFunc(o.Scenarios, func(s Scenario) bool { return s != ScenarioExternal }) {
		return o, errors.New("an external URL is benchmarked as it is: scenarios and origins are the built-in origin's")
	}
	if o.URL != "" {
		if len(o.URLs) > 0 && o.URLs[0].URL != o.URL {
			return o, errors.New("give the external URLs in URLs or URL, not both")
		}
		if len(o.URLs) == 0 {
			o.URLs = []Target{{Label: string(ScenarioExternal), URL: o.URL, SHA256: o.SHA256}}
		}
	}
	o.URLs = slices.Clone(o.URLs)
	o.Origin, o.Scenarios = OriginExternal, nil
	for i := range o.URLs {
		t := &o.URLs[i]
		if t.Label == "" {
			t.Label = string(ScenarioExternal)
			if len(o.URLs) > 1 {
				t.Label = fmt.Sprintf("url%d", i+1)
			}
		}
		if t.URL == "" || slices.Contains(o.Scenarios, Scenario(t.Label)) {
			return o, fmt.Errorf("url %q labelled %q: want a URL and a label of its own", t.URL, t.Label)
		}
		if t.SHA256 != "" {
			t.SHA256 = strings.ToLower(t.SHA256)
			if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != 32 {
				return o, fmt.Errorf("sha256 of %s: want 64 hex digits, got %q", t.Label, t.SHA256)
			}
		}
		o.Scenarios = append(o.Scenarios, Scenario(t.Label))
	}
	o.URL, o.SHA256 = o.URLs[0].URL, o.URLs[0].SHA256
	return o, nil
}

// target is the external URL of scenario s.
func (o Options) target(s Scenario) (Target, bool) {
	i := slices.IndexFunc(o.URLs, func(t Target) bool { return t.Label == string(s) })
	if i < 0 {
		return Target{}, false
	}
	return o.URLs[i], true
}

// latency is the delay before each response header in scenario s.
func (o Options) latency(s Scenario) time.Duration {
	switch {
	case o.Latency > 0:
		return o.Latency
	case s == ScenarioWAN:
		return DefaultWANLatency
	case s == ScenarioSmall:
		return DefaultSmallLatency
	case s == ScenarioMirrors:
		return DefaultMirrorsLatency
	}
	return DefaultLatency
}

// estimate is a rough duration of one run of a cell with conns
// connections (0: one) in scenario s, from the scenario's parameters: the
// bytes over the rate that caps them, plus the latency of a request. It
// assumes 400 MB/s where nothing caps the rate, and knows nothing of an
// external URL (1 s).
func (o Options) estimate(s Scenario, conns int) time.Duration {
	conns = max(conns, 1)
	const loopback = 400e6
	secs := func(bytes int64, rate float64) time.Duration {
		return time.Duration(float64(bytes) / rate * float64(time.Second))
	}
	size := int64(o.Size)
	switch s {
	case ScenarioRateLimit, ScenarioCap:
		return secs(size, float64(o.Rate)*float64(conns))
	case ScenarioWAN:
		return secs(size, float64(o.ConnRate)*float64(conns)) + 2*o.latency(s)
	case ScenarioS3Cap:
		return secs(size, float64(o.ConnRate)*float64(conns))
	case ScenarioS3:
		return secs(size, loopback/4) // the store writes every byte
	case ScenarioMirrors:
		return secs(size, float64(o.ConnRate)*float64(conns)) + 2*o.latency(s)
	case ScenarioSlowConn:
		return secs(size, loopback) + secs(size/int64(conns), float64(o.Trickle))/4
	case ScenarioExtract: // the tree is not known yet: GOROOT's, unpacked and synced
		return 3 * time.Second
	case ScenarioSmall:
		rounds := (o.Files + o.Jobs - 1) / o.Jobs
		return time.Duration(rounds) * (o.latency(s) + time.Millisecond)
	}
	if o.Origin == OriginExternal {
		return time.Second
	}
	return secs(size, loopback) + 2*o.latency(s)
}
