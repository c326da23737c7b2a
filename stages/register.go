package stages

import "github.com/dlflow/dlflow/pipeline"

// builtins holds the spec of every stage type of this package, in the order
// their files' init functions ran.
var builtins []pipeline.Spec

// builtin registers a stage type of this package into
// pipeline.DefaultRegistry and remembers it for Register. Each stage file
// calls it from its init function.
func builtin(s pipeline.Spec) {
	builtins = append(builtins, s)
	if err := pipeline.DefaultRegistry.Add(s); err != nil {
		panic(err)
	}
}

// Register adds every stage type of this package to r, for callers that use
// an isolated registry instead of pipeline.DefaultRegistry.
func Register(r *pipeline.Registry) error {
	for _, s := range builtins {
		if err := r.Add(s); err != nil {
			return err
		}
	}
	return nil
}
