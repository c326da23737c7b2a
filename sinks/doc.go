// Package sinks holds dlflow's terminal stages: the file sink (sequential or
// positional writes into OUTPUT.tmp, renamed when complete) and the discard
// sink. Importing the package registers them in pipeline.DefaultRegistry.
package sinks
