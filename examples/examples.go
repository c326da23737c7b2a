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

// WriterTopologies write the bytes in order to standard output, or to the
// writer a program gives (dlflow.Request.Writer), instead of a file:
// `dlflow URL -o -` runs one of them. Bench, which measures files, leaves
// them out.
var WriterTopologies = []string{"stdout.yaml", "stdout-stream.yaml"}

// Extract are the example topologies that unpack an archive into a
// directory (`dlflow URL --extract DIR` runs one of them): ranged, and
// one stream.
var Extract = []string{"extract.yaml", "extract-stream.yaml"}
