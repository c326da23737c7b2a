// Package conformance holds the conformance test of issue 21: script.js,
// written with the npm package aria2 (a real aria2 client that nobody here
// wrote), runs one fixed sequence of JSON-RPC calls against
// `aria2c --enable-rpc` and against `dlflow daemon`, and
// conformance_test.go compares the answers' keys and types, the status
// transitions and the notifications. testdata/aria2.golden.json keeps
// aria2c's answers for machines without aria2c (refresh it with
// `go test ./daemon/conformance -run TestConformance -update`).
//
// The package has no code: only the test, the node script
// (package.json pins aria2; `npm ci` here installs it) and the golden file.
package conformance
