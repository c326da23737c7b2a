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
// JSON.
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
	ScenarioExternal  Scenario = "external"  // Options.URL, as it is
)

// Scenarios are the scenarios of the built-in origins.
var Scenarios = []Scenario{ScenarioPlain, ScenarioRateLimit, ScenarioLatency, ScenarioSlowConn}

// Origin is the server the cells download from.
type Origin string

// The origins.
const (
	OriginGo       Origin = "go"       // the built-in Go origin (bench/origin)
	OriginNginx    Origin = "nginx"    // nginx serving the generated file: plain and ratelimit only
	OriginExternal Origin = "external" // Options.URL
)

// Defaults of the zero Options fields.
const (
	DefaultSize        = 256 << 20 // bytes of the generated file
	DefaultRate        = 25 << 20  // bytes per second per connection, ratelimit
	DefaultTrickle     = 1 << 20   // bytes per second of the slow GET, slowconn
	DefaultSlowRequest = 2         // which GET trickles, slowconn
)

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
	// rows on the same origin.
	Compare bool
	// Runs is how many times each cell runs (default 1); runs go
	// round-robin over the cells.
	Runs int

	// Scenarios are the origin's behaviours, each a table of its own;
	// none is plain (external with URL).
	Scenarios []Scenario
	// Origin serves the generated file: go (default) or nginx; it is
	// external with URL.
	Origin Origin
	// Size is the generated file's (default DefaultSize).
	Size pipeline.ByteSize
	// Rate limits every connection in the ratelimit scenario (default
	// DefaultRate per second).
	Rate pipeline.ByteSize
	// Latency delays each response header in the latency scenario.
	Latency time.Duration
	// Trickle is the rate of the one slow GET of the slowconn scenario
	// (default DefaultTrickle per second), and SlowRequest which GET it is
	// (1: the first; default DefaultSlowRequest).
	Trickle     pipeline.ByteSize
	SlowRequest int
	// URL benchmarks an external server instead of the built-in origin;
	// SHA256 (hex) is what its outputs must hash to, or "" to report them
	// unverified.
	URL, SHA256 string

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
	// Unverified: the first output of Scenario hashes to SHA256, and no
	// expected sum was given to verify it against.
	Unverified
)

// Event is a step of a bench, for a progress display.
type Event struct {
	Kind      EventKind
	Scenario  Scenario
	Server    string
	Cell      string
	Run, Runs int
	SHA256    string
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
	if len(o.Connections) == 0 {
		o.Connections = []int{0}
	}
	switch {
	case o.Runs < 0, o.Size < 0, o.Rate < 0, o.Trickle < 0, o.SlowRequest < 0, o.Latency < 0:
		return o, errors.New("runs, size, rate, trickle, slow request and latency must not be negative")
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
	if o.URL != "" {
		if (o.Origin != "" && o.Origin != OriginExternal) || slices.ContainsFunc(o.Scenarios, func(s Scenario) bool { return s != ScenarioExternal }) {
			return o, errors.New("an external URL is benchmarked as it is: scenarios and origins are the built-in origin's")
		}
		o.Origin, o.Scenarios = OriginExternal, []Scenario{ScenarioExternal}
		if o.SHA256 != "" {
			o.SHA256 = strings.ToLower(o.SHA256)
			if b, err := hex.DecodeString(o.SHA256); err != nil || len(b) != 32 {
				return o, fmt.Errorf("sha256: want 64 hex digits, got %q", o.SHA256)
			}
		}
		return o, nil
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
		case o.Origin == OriginNginx && s != ScenarioPlain && s != ScenarioRateLimit:
			return o, fmt.Errorf("nginx serves the plain and ratelimit scenarios only, not %s", s)
		case o.Origin != OriginGo && o.Origin != OriginNginx:
			return o, fmt.Errorf("unknown origin %q", o.Origin)
		}
	}
	return o, nil
}
