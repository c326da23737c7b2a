package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/cmd/internal/stagedoc"
	"github.com/dlflow/dlflow/pipeline"
)

// stagesCmd lists the registered stage types, shows some in detail, or
// prints the Markdown reference of every config key (docs/CONFIG.md).
func stagesCmd(args []string, stdout, stderr io.Writer) int {
	return stagesWith(pipeline.DefaultRegistry, args, stdout, stderr)
}

// stagesWith is stagesCmd on any registry: the reference in docs/CONFIG.md
// is that of the built-in stage types alone.
func stagesWith(reg *pipeline.Registry, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("dlflow stages", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	markdown := fs.Bool("markdown", false, "print the Markdown reference of every config key and stage type (docs/CONFIG.md)")
	fs.Usage = func() { printUsage(fs, stdout, stagesUsageHead, stagesUsageTail) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "dlflow: %v (see dlflow stages --help)\n", err)
		return exitUsage
	}
	switch {
	case *markdown && fs.NArg() > 0:
		return fail(stderr, usagef("--markdown documents every stage type; give no TYPE"))
	case *markdown:
		if err := stagedoc.Markdown(stdout, reg); err != nil {
			return fail(stderr, err)
		}
		return exitOK
	case fs.NArg() == 0:
		stagedoc.List(stdout, reg)
		return exitOK
	}
	for _, name := range fs.Args() {
		if _, ok := reg.Describe(name, nil); !ok {
			return fail(stderr, usagef("unknown stage type %q; known types: %s", name, strings.Join(reg.Types(), ", ")))
		}
	}
	for _, name := range fs.Args() {
		stagedoc.Describe(stdout, reg, name)
	}
	return exitOK
}

// stagesUsageHead and stagesUsageTail frame the flags in the usage.
const stagesUsageHead = `Usage: dlflow stages [TYPE...]
       dlflow stages --markdown

Lists every registered stage type with what it consumes and produces, or
shows the given types' options with their defaults. --markdown prints the
reference of every config key, which docs/CONFIG.md holds.

Examples:
  dlflow stages
  dlflow stages http.reader
  dlflow stages --markdown > docs/CONFIG.md

Flags:
`

const stagesUsageTail = ""
