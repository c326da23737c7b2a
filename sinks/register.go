package sinks

import "github.com/dlflow/dlflow/pipeline"

// builtinType is a stage type of this package: its name, and how to add
// it to a registry.
type builtinType struct {
	name string
	add  func(*pipeline.Registry) error
}

// typeOf is the builtinType of d.
func typeOf[C any](d pipeline.Def[C]) builtinType {
	return builtinType{name: d.Type, add: func(r *pipeline.Registry) error { return pipeline.Register(r, d) }}
}

// builtins holds every stage type of this package, in the order their
// files' init functions ran.
var builtins []builtinType

// builtin registers a stage type of this package into
// pipeline.DefaultRegistry and remembers it for Register. Each stage file
// calls it from its init function.
func builtin[C any](d pipeline.Def[C]) {
	t := typeOf(d)
	builtins = append(builtins, t)
	if err := t.add(pipeline.DefaultRegistry); err != nil {
		panic(err)
	}
}

// Register adds every stage type of this package to r, for callers that use
// an isolated registry instead of pipeline.DefaultRegistry.
func Register(r *pipeline.Registry) error {
	for _, t := range builtins {
		if err := t.add(r); err != nil {
			return err
		}
	}
	return nil
}
