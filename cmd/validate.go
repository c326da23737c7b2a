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
// and the peak buffer-memory bound. A topology that extends auto (a file,
// or -c auto with --insert) is checked as each built-in one the download
// may pick.
func validate(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("dlflow validate", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.StringP("config", "c", "", "topology to check: a YAML file, or a built-in name (stream, ranged, ...)")
	sets := fs.StringArray("set", nil, "set any config key (repeatable)")
	inserts := fs.StringArray("insert", nil, "add a stage, ID=TYPE,after=STAGE (or before=STAGE), as dlflow --insert does (repeatable)")
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
	for _, spec := range *inserts {
		in, err := config.ParseInsert(spec)
		if err != nil {
			return fail(stderr, usagef("--insert %w", err))
		}
		opts.Inserts = append(opts.Inserts, in)
	}
	auto, err := validateTopology(*file, &opts)
	if err != nil {
		return fail(stderr, err)
	}
	picks := []string{""}
	if auto {
		picks = []string{"ranged", "stream"} // as the download picks for a file
	}
	for i, pick := range picks {
		opts.Auto = pick
		g, err := validateGraph(opts, *connections)
		if err != nil && pick != "" {
			err = fmt.Errorf("as %s.yaml (extends auto): %w", pick, err)
		}
		if err != nil {
			return fail(stderr, configError(err))
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		name := opts.File
		if pick != "" {
			name += " (extends auto, as " + pick + ".yaml)"
		}
		fmt.Fprintf(stdout, "%s: ok\n\n%s", name, g.Describe())
	}
	return exitOK
}

// validateTopology sets the topology of opts from -c: a file or a built-in
// name. auto says it extends the automatic choice: -c auto with inserts,
// or a file that says extends: auto.
func validateTopology(file string, opts *config.Options) (auto bool, err error) {
	t, err := topologyOf(file, true)
	switch {
	case err != nil:
		return false, err
	case t.File != "":
		ext, err := config.ReadExtension(t.File, nil)
		return ext.Base == config.Auto, configError(err)
	case t.Name == "" && len(opts.Inserts) == 0:
		return false, usagef("-c auto picks stream or ranged once the server answered; validate one of them, or give --insert")
	case t.Name == "":
		opts.File, opts.Data = "(built-in) auto", []byte("extends: auto\n")
		return true, nil
	}
	name := strings.TrimSuffix(t.Name, ".yaml") + ".yaml"
	data, err := examples.FS.ReadFile(name)
	if err != nil {
		return false, usagef("no built-in topology %q (built-in: %s)", t.Name, strings.Join(builtinTopologies()[1:], ", "))
	}
	opts.File, opts.Data = "(built-in) "+name, data
	return false, nil
}

// validateGraph loads opts and builds its graph as a download would,
// with the connections asked.
func validateGraph(opts config.Options, connections int) (*pipeline.Graph, error) {
	cfg, err := config.Load(opts)
	if err != nil {
		return nil, err
	}
	if cfg.Output == "" {
		cfg.Output = "OUTPUT" // the sink needs a path to be built; nothing is written
	}
	nodes, err := cfg.Nodes(pipeline.DefaultRegistry)
	if err != nil {
		return nil, err
	}
	if connections > 0 {
		config.SetConnections(pipeline.DefaultRegistry, nodes, connections)
	}
	return cfg.Build(pipeline.DefaultRegistry, nodes)
}

// validateUsageHead and validateUsageTail frame the flags in the usage.
const validateUsageHead = `Usage: dlflow validate -c TOPOLOGY.yaml [--set key=value] [--connections N]

Checks a topology without touching the network or the disk, then prints each
stage (type, workers, input queue, what flows on each edge) and the most
buffer memory a run can hold. Exits 2 on a bad config, naming file:line:col.

Examples:
  dlflow validate -c examples/ranged.yaml --connections 16
  dlflow validate -c my.yaml --set stages.fetch.workers=4
  dlflow validate -c auto --insert 'count=progress.tap,after=verify'   (as ranged and as stream)

Flags:
`

const validateUsageTail = ""
