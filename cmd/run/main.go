// Command run is the dlflow CLI: it downloads a URL through a graph of
// stages wired from a YAML config, validates configs, and benchmarks
// topologies against a built-in origin. It ships the built-in stages only;
// see package cmd for a binary with stages of your own.
//
//	go run ./cmd/run URL                          # default topology, picked by the probe
//	go run ./cmd/run -c examples/ranged.yaml --url URL -o PATH --connections 8
//	go run ./cmd/run validate -c examples/ranged.yaml
//	go run ./cmd/run bench                        # offline, built-in origin
package main

import "github.com/dlflow/dlflow/cmd"

func main() { cmd.Main() }
