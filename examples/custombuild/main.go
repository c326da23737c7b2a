// Command custombuild is the dlflow CLI with a stage type of its own: the
// whole of a custom binary is this file. The blank import registers
// throttle.tap (examples/customstage) in its init, before Main reads a
// config, so every command knows it:
//
//	go run ./examples/custombuild stages throttle.tap
//	go run ./examples/custombuild validate -c examples/customstage/throttled.yaml
//	go run ./examples/custombuild -c examples/customstage/throttled.yaml --url URL -o PATH
//
// The release binary (cmd/run) ships the built-in stage types only. To
// ship yours, copy this file and import your package instead; build it
// with go build, as CI builds this one.
package main

import (
	dlcmd "github.com/dlflow/dlflow/cmd"
	_ "github.com/dlflow/dlflow/examples/customstage" // registers throttle.tap
)

func main() { dlcmd.Main() }
