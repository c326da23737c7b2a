package cmd

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
)

// stagesCmd lists the registered stage types, shows some in detail, or
// prints the Markdown reference of every config key (docs/CONFIG.md).
func stagesCmd(args []string, stdout, stderr io.Writer) int {
	return stagesWith(pipeline.DefaultRegistry, args, stdout, stderr)
}

// stagesWith is stagesCmd on any registry, so tests can pin its output.
func stagesWith(reg *pipeline.Registry, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("dlflow stages", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	markdown := fs.Bool("markdown", false, "print the Markdown reference of every config key and stage type (docs/CONFIG.md)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dlflow stages [TYPE...]
       dlflow stages --markdown

Lists every registered stage type with what it consumes and produces, or
shows the given types' options with their defaults. --markdown prints the
reference of every config key, which docs/CONFIG.md holds.

Examples:
  dlflow stages
  dlflow stages http.reader
  dlflow stages --markdown > docs/CONFIG.md

Flags:
`)
		fs.PrintDefaults()
	}
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
		writeMarkdown(stdout, reg, configOptions())
		return exitOK
	case fs.NArg() == 0:
		listSpecs(stdout, reg)
		return exitOK
	}
	for _, name := range fs.Args() {
		if _, ok := reg.Lookup(name); !ok {
			return fail(stderr, usagef("unknown stage type %q; known types: %s", name, strings.Join(reg.Types(), ", ")))
		}
	}
	for _, name := range fs.Args() {
		spec, _ := reg.Lookup(name)
		describeSpec(stdout, spec)
	}
	return exitOK
}

// byConfigNote marks flows that a stage type's config can change.
const byConfigNote = "with the default config; depends on config"

func listSpecs(w io.Writer, reg *pipeline.Registry) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tCONSUMES\tPRODUCES\tSUMMARY")
	marked := false
	for _, name := range reg.Types() {
		spec, _ := reg.Lookup(name)
		consumes, produces, byConfig := flows(spec)
		mark := ""
		if byConfig {
			mark, marked = "*", true
		}
		fmt.Fprintf(tw, "%s\t%s%s\t%s\t%s\n", name, consumes, mark, produces, spec.Summary)
	}
	tw.Flush()
	if marked {
		fmt.Fprintf(w, "\n* %s (see dlflow stages TYPE)\n", byConfigNote)
	}
}

func describeSpec(w io.Writer, spec pipeline.Spec) {
	consumes, produces, byConfig := flows(spec)
	fmt.Fprintf(w, "%s: %s\n  consumes %s, produces %s", spec.Type, spec.Summary, consumes, produces)
	if byConfig {
		fmt.Fprintf(w, " (%s)", byConfigNote)
	}
	fmt.Fprintln(w)
	opts := options(spec.Config(), "")
	if len(opts) == 0 {
		fmt.Fprintln(w, "  no options")
		return
	}
	fmt.Fprintln(w, "  options:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, o := range opts {
		def := o.def
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(tw, "    %s\t%s\t(default %s)\t%s\n", o.key, o.kind, def, o.help)
	}
	tw.Flush()
}

// flows is what a stage type consumes and produces with its default config,
// and whether its config can change that (Spec.Ports).
func flows(spec pipeline.Spec) (consumes, produces pipeline.Flow, byConfig bool) {
	if spec.Ports == nil {
		return spec.Consumes, spec.Produces, false
	}
	consumes, produces = spec.Ports(spec.Config())
	return consumes, produces, true
}

type option struct{ key, kind, def, help string }

// options lists the koanf-tagged fields of a config struct, each key
// prefixed with prefix. Squashed embedded structs are flattened; other
// nested structs (such as http) become dotted keys.
func options(cfg any, prefix string) []option {
	v := reflect.Indirect(reflect.ValueOf(cfg))
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []option
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, rest, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		switch {
		case rest == "squash":
			out = append(out, options(v.Field(i).Interface(), prefix)...)
			continue
		case name == "" || name == "-" || !f.IsExported():
			continue
		case isSection(f.Type):
			out = append(out, options(v.Field(i).Interface(), prefix+name+".")...)
			continue
		}
		out = append(out, option{key: prefix + name, kind: kindName(f.Type), def: defaultText(v.Field(i)), help: f.Tag.Get("help")})
	}
	return out
}

// isSection reports whether a field's type is a struct of its own keys,
// rather than a value decoded from text.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != reflect.TypeFor[time.Time]() &&
		!reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

func kindName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[pipeline.ByteSize]():
		return "size"
	case reflect.TypeFor[time.Duration]():
		return "duration"
	}
	switch t.Kind() {
	case reflect.Slice:
		return "list of " + kindName(t.Elem())
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface {
			return "map"
		}
		return "map of " + kindName(t.Elem())
	}
	return t.Kind().String()
}

// defaultText renders a default value as a config file would write it; ""
// means no default (an empty list or map).
func defaultText(v reflect.Value) string {
	switch {
	case (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.Len() == 0:
		return ""
	case v.Kind() == reflect.String && v.String() == "":
		return `""`
	}
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(v.Interface())
}

// configOptions lists the top-level keys of a config file with the defaults
// config.Load applies, leaving out the stages map (writeMarkdown documents
// it on its own). The defaults come from loading a config that sets nothing
// but a placeholder stage, so they are Load's own and cannot drift.
func configOptions() []option {
	cfg, err := config.Load(config.Options{Data: []byte("stages: {s: {type: t}}"), Environ: []string{}})
	if err != nil {
		panic(fmt.Sprintf("load the default config: %v", err))
	}
	var out []option
	for _, o := range options(cfg, "") {
		if o.key != "stages" {
			out = append(out, o)
		}
	}
	return out
}

const markdownIntro = `# Configuration reference

<!-- Code generated by ` + "`go run ./cmd/run stages --markdown > docs/CONFIG.md`" + `. DO NOT EDIT. -->

Every key a dlflow config file accepts, generated from the declarations of
the config and of each stage type, so that it cannot drift from the code.
Sizes are written ` + "`512KiB`, `16MiB`, `2GB`; durations `30s`, `250ms`" + `. Any
key can also be set with ` + "`--set KEY=VALUE`" + ` or an environment variable
(` + "`DLFLOW_`" + ` and the key in upper case, ` + "`__`" + ` for each dot); see the README
for the layering, and [STAGES.md](STAGES.md) for writing a stage type.
`

const markdownFlows = `
The stage types of this build (` + "`dlflow stages`" + `) with what they consume and
produce: ranges (byte ranges of the resource, handed to range readers), bytes
(chunks in any order, each at its offset), ordered bytes (chunks in file
order, which also satisfy a stage that takes bytes), or the same as their
input. The graph builder rejects an edge whose producer does not deliver what
its consumer takes, before any I/O.

`

// writeMarkdown prints the reference of the top-level keys top, the keys of
// a stage, and every stage type of reg with its options.
func writeMarkdown(w io.Writer, reg *pipeline.Registry, top []option) {
	fmt.Fprint(w, markdownIntro)
	fmt.Fprint(w, "\n## Top-level keys\n\n")
	optionTable(w, "key", top)

	fmt.Fprint(w, "\n## Stages\n\n`stages:` maps a stage id (lowercase letters, digits, `-` and `_`, starting\nwith a letter) to:\n\n")
	fmt.Fprintln(w, "| key | type | description |\n|---|---|---|")
	for _, o := range options(config.StageConfig{}, "") {
		fmt.Fprintf(w, "| `%s` | %s | %s |\n", o.key, o.kind, cell(o.help))
	}

	fmt.Fprint(w, markdownFlows)
	fmt.Fprint(w, "| type | consumes | produces | summary |\n|---|---|---|---|\n")
	marked := false
	for _, name := range reg.Types() {
		spec, _ := reg.Lookup(name)
		consumes, produces, byConfig := flows(spec)
		mark := ""
		if byConfig {
			mark, marked = `\*`, true
		}
		fmt.Fprintf(w, "| [`%s`](#%s) | %s%s | %s | %s |\n", name, anchor(name), consumes, mark, produces, cell(spec.Summary))
	}
	if marked {
		fmt.Fprintf(w, "\n\\* %s.\n", byConfigNote)
	}

	for _, name := range reg.Types() {
		spec, _ := reg.Lookup(name)
		consumes, produces, byConfig := flows(spec)
		fmt.Fprintf(w, "\n### `%s`\n\n%s\n\nConsumes %s, produces %s", name, sentence(spec.Summary), consumes, produces)
		if byConfig {
			fmt.Fprintf(w, " (%s)", byConfigNote)
		}
		fmt.Fprint(w, ".\n\n")
		if opts := options(spec.Config(), ""); len(opts) > 0 {
			optionTable(w, "key under `config:`", opts)
		} else {
			fmt.Fprintln(w, "No options.")
		}
	}
}

func optionTable(w io.Writer, keyHeader string, opts []option) {
	fmt.Fprintf(w, "| %s | type | default | description |\n|---|---|---|---|\n", keyHeader)
	for _, o := range opts {
		def := ""
		if o.def != "" {
			def = "`" + o.def + "`"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", o.key, o.kind, def, cell(o.help))
	}
}

// sentence capitalizes a summary and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + strings.TrimSuffix(s[1:], ".") + "."
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// anchor is the id GitHub gives a heading: lowercase, spaces as hyphens,
// other punctuation than - and _ dropped.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
