package dlflow

import (
	"io"
	"sync/atomic"

	"github.com/dlflow/dlflow/pipeline"
)

// The built-in topologies of a download to Request.Writer: the one for a
// server that takes ranges and a file of rangedThreshold or more, and the
// one stream for the others.
const (
	writerRanged = "stdout"
	writerStream = "stdout-stream"
)

// The built-in topologies that unpack into Request.Extract.
const (
	extractRanged = "extract"
	extractStream = "extract-stream"
)

// autoTopology is the built-in topology the library picks for res: ranged
// when the server takes ranges and the file is large enough to gain from
// them, else one stream; each with a sink that unpacks into
// Request.Extract, or writes to Request.Writer, when one is set.
func (r *Request) autoTopology(res *pipeline.Resource) Topology {
	ranged := res.AcceptRanges && res.Size >= rangedThreshold
	switch {
	case r.Extract != "" && ranged:
		return r.Topology.pick(extractRanged)
	case r.Extract != "":
		return r.Topology.pick(extractStream)
	case r.Writer != nil && ranged:
		return r.Topology.pick(writerRanged)
	case r.Writer != nil:
		return r.Topology.pick(writerStream)
	case ranged:
		return r.Topology.pick("ranged")
	}
	return r.Topology.pick("stream")
}

// autoTopologies are the built-in topologies the probe may pick for r, the
// ranged one first.
func (r *Request) autoTopologies() []string {
	if r.Extract != "" {
		return []string{extractRanged, extractStream}
	}
	if r.Writer != nil {
		return []string{writerRanged, writerStream}
	}
	return []string{"ranged", "stream"}
}

// countingWriter is Request.Writer as the sink sees it: it counts the
// bytes that went out, which a download cannot take back (a file that
// changed on the server cannot start over once there are some).
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// wrote reports whether bytes went out to the request's writer.
func (d *Download) wrote() bool { return d.out != nil && d.out.n.Load() > 0 }
