package sinks

import "github.com/dlflow/dlflow/pipeline"

// builtins holds every stage type of this package, in the order their
// files' init functions ran.
var builtins []pipeline.StageType

// builtin registers a stage type of this package into
// pipeline.DefaultRegistry and remembers it for Register. Each stage file
// calls it from its init function.
func builtin(t pipeline.StageType) {
	builtins = append(builtins, t)
	pipeline.MustRegister(pipeline.DefaultRegistry, t)
}

// Register adds every stage type of this package to r, for callers that use
// an isolated registry instead of pipeline.DefaultRegistry.
func Register(r *pipeline.Registry) error {
	for _, t := range builtins {
		if err := pipeline.Register(r, t); err != nil {
			return err
		}
	}
	return nil
}
