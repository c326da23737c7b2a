package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/pipeline"
)

// validate loads and wires a topology without any I/O and prints the graph
// and the peak buffer-memory bound.
func validate(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("dlflow validate", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.StringP("config", "c", "", "topology to check: a YAML file, or a built-in name (stream, ranged, ...)")
	sets := fs.StringArray("set", nil, "set any config key (repeatable)")
	connections := fs.Int("connections", 0, "number of range readers")
	fs.Usage = func() { printUsage(fs, stdout, validateUsageHead, validateUsageTail) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "dlflow: %v (see dlflow validate --help)\n", err)
		return exitUsage
	}
	if *file == "" || fs.NArg() > 0 {
		printUsage(fs, stderr, validateUsageHead, validateUsageTail)
		return exitUsage
	}
	opts := config.Options{File: *file, Overrides: flagOverrides(fs), Sets: *sets}
	if t, err := topologyOf(*file, true); err != nil {
		return fail(stderr, err)
	} else if t.File == "" {
		// A built-in topology, by name.
		if t.Name == "" {
			return fail(stderr, usagef("-c auto picks stream or ranged once the server answered; validate one of them"))
		}
		name := strings.TrimSuffix(t.Name, ".yaml") + ".yaml"
		data, err := examples.FS.ReadFile(name)
		if err != nil {
			return fail(stderr, usagef("no built-in topology %q (built-in: %s)", t.Name, strings.Join(builtinTopologies()[1:], ", ")))
		}
		opts.File, opts.Data = "(built-in) "+name, data
	}
	cfg, err := config.Load(opts)
	if err != nil {
		return fail(stderr, configError(err))
	}
	if cfg.Output == "" {
		cfg.Output = "OUTPUT" // the sink needs a path to be built; nothing is written
	}
	nodes, err := cfg.Nodes(pipeline.DefaultRegistry)
	if err != nil {
		return fail(stderr, configError(err))
	}
	if *connections > 0 {
		config.SetConnections(pipeline.DefaultRegistry, nodes, *connections)
	}
	g, err := cfg.Build(pipeline.DefaultRegistry, nodes)
	if err != nil {
		return fail(stderr, configError(err))
	}
	fmt.Fprintf(stdout, "%s: ok\n\n%s", opts.File, g.Describe())
	return exitOK
}

// validateUsageHead and validateUsageTail frame the flags in the usage.
const validateUsageHead = `Usage: dlflow validate -c TOPOLOGY.yaml [--set key=value] [--connections N]

Checks a topology without touching the network or the disk, then prints each
stage (type, workers, input queue, what flows on each edge) and the most
buffer memory a run can hold. Exits 2 on a bad config, naming file:line:col.

Examples:
  dlflow validate -c examples/ranged.yaml --connections 16
  dlflow validate -c my.yaml --set stages.fetch.workers=4

Flags:
`

const validateUsageTail = ""
