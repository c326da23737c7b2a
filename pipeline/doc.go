// Package pipeline is the core of dlflow: chunks and their buffer pools, the
// stage contract, the registry of stage types, and the graph builder and
// runner that wire stages together with bounded channels.
//
// A download is a graph of stages. Sources produce, transforms consume and
// produce, sinks consume. Edges carry either byte ranges of the resource
// ([Range]) or bytes ([Chunk]). Every stage type declares what it consumes and
// produces (see [Flow]), so a miswired graph is rejected by [Build] before
// any network or disk I/O.
//
// The framework owns the channels: it makes them, sizes them, and closes a
// stage's output once every replica of every producer feeding it has
// returned. A stage never closes a channel.
//
// Package pipeline imports no other package of dlflow; a custom stage author
// imports only this package.
package pipeline
