// Package examples holds the example topologies. They are documentation
// and, embedded, the CLI's defaults: `dlflow URL` runs ranged.yaml or
// stream.yaml from here, so what users read is what runs.
package examples

import "embed"

// FS holds every example topology, by file name ("ranged.yaml", ...).
//
//go:embed *.yaml
var FS embed.FS

// Topologies are the example files that bench runs, in order.
var Topologies = []string{"stream.yaml", "buffered.yaml", "ranged.yaml", "ranged-ordered.yaml"}

// Extract are the example topologies that unpack an archive into a
// directory (`dlflow URL --extract DIR` runs one of them): ranged, and
// one stream.
var Extract = []string{"extract.yaml", "extract-stream.yaml"}
