package main

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/pipeline"
)

// stagesCmd lists the registered stage types, or shows one in detail.
func stagesCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("dlflow stages", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dlflow stages [TYPE]

Lists every registered stage type with what it consumes and produces, or
shows one type's options with their defaults.

Examples:
  dlflow stages
  dlflow stages http.reader
`)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	reg := pipeline.DefaultRegistry
	if fs.NArg() == 0 {
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tCONSUMES\tPRODUCES\tSUMMARY")
		for _, name := range reg.Types() {
			spec, _ := reg.Lookup(name)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, spec.Consumes, spec.Produces, spec.Summary)
		}
		tw.Flush()
		return exitOK
	}
	for _, name := range fs.Args() {
		spec, ok := reg.Lookup(name)
		if !ok {
			return fail(stderr, usagef("unknown stage type %q; known types: %s", name, strings.Join(reg.Types(), ", ")))
		}
		describeSpec(stdout, spec)
	}
	return exitOK
}

func describeSpec(w io.Writer, spec pipeline.Spec) {
	fmt.Fprintf(w, "%s: %s\n  consumes %s, produces %s\n", spec.Type, spec.Summary, spec.Consumes, spec.Produces)
	opts := options(spec.Config())
	if len(opts) == 0 {
		fmt.Fprintln(w, "  no options")
		return
	}
	fmt.Fprintln(w, "  options:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, o := range opts {
		fmt.Fprintf(tw, "    %s\t%s\t(default %s)\t%s\n", o.key, o.kind, o.def, o.help)
	}
	tw.Flush()
}

type option struct{ key, kind, def, help string }

// options lists the koanf-tagged fields of a config struct, flattening
// squashed embedded structs.
func options(cfg any) []option {
	v := reflect.Indirect(reflect.ValueOf(cfg))
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []option
	for i := range v.NumField() {
		f := v.Type().Field(i)
		tag := f.Tag.Get("koanf")
		name, rest, _ := strings.Cut(tag, ",")
		switch {
		case rest == "squash":
			out = append(out, options(v.Field(i).Interface())...)
			continue
		case name == "" || name == "-":
			continue
		}
		out = append(out, option{key: name, kind: kindName(f.Type), def: defaultText(v.Field(i)), help: f.Tag.Get("help")})
	}
	return out
}

func kindName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[pipeline.ByteSize]():
		return "size"
	}
	if t.String() == "time.Duration" {
		return "duration"
	}
	return t.Kind().String()
}

func defaultText(v reflect.Value) string {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	if v.Kind() == reflect.String && v.String() == "" {
		return `""`
	}
	return fmt.Sprint(v.Interface())
}
