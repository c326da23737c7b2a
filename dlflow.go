// Package dlflow downloads files over HTTP(S) as a dataflow of stages: the
// library behind the dlflow command.
//
// One call downloads with the defaults:
//
//	res, err := dlflow.Get(ctx, "https://example.com/big.iso", "big.iso")
//
// It probes the URL, picks a topology (parallel range requests for a large
// file on a server that takes them, one stream otherwise), resumes what an
// earlier run left in big.iso.tmp, verifies a checksum where one is known,
// and renames big.iso.tmp to big.iso only when every byte is there and
// synced. On any error nothing is left at the path, and big.iso.tmp keeps
// what was received.
//
// A Client shares HTTP connections and a per-host connection limit among
// downloads; Client.Start returns a Download handle with Progress, Cancel
// and Wait; Client.Batch runs a stream of requests a few at a time.
//
// The graph that downloads is a pipeline.Graph of stages wired from YAML
// (see package config and the examples directory); Request.Topology picks
// one, and stage packages a program imports add their stage types.
package dlflow

import (
	"context"

	_ "github.com/dlflow/dlflow/sinks"  // registers the built-in sinks
	_ "github.com/dlflow/dlflow/stages" // registers the built-in stages
)

// Get downloads url into path with the default settings and returns when
// the download ended. path "" names the file after the server's
// Content-Disposition or the URL's last path segment, in the working
// directory. An existing file at path is an error (ErrOutputExists) and is
// left untouched.
func Get(ctx context.Context, url, path string) (*Result, error) {
	c := NewClient()
	defer c.CloseIdleConnections()
	return c.Do(ctx, &Request{URL: url, Path: path})
}
