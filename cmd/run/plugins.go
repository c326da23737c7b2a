package main

// Stage types outside the built-in packages get into the CLI the way Caddy
// modules get into a custom build with xcaddy: a blank import of the package,
// whose init function registers its types into pipeline.DefaultRegistry. To
// ship your own stage in a dlflow binary, add a line here (or build your own
// main that imports it); `dlflow stages` then lists it and configs can use it.
import (
	_ "github.com/dlflow/dlflow/examples/customstage" // throttle.tap
)
