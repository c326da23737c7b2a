package dlflow

import "github.com/dlflow/dlflow/pipeline"

// ConnectionRanges returns the range each connection of the download is
// fetching now (its start, end, the bytes of it delivered and its
// source), indexed as Progress.Connections: entry i is the connection
// whose bytes are Connections[i]. A connection between ranges, or of a
// stage that does not report ranges (http.source), has the zero
// pipeline.ConnectionRange. Nil before the transfer starts. It may be
// called at any time, from any goroutine.
func (d *Download) ConnectionRanges() []pipeline.ConnectionRange {
	d.mu.Lock()
	conns := d.conns
	d.mu.Unlock()
	var out []pipeline.ConnectionRange
	for _, c := range conns {
		if r, ok := c.(pipeline.RangeReporter); ok {
			out = append(out, r.ConnectionRanges()...)
		} else {
			out = append(out, make([]pipeline.ConnectionRange, len(c.ConnectionBytes()))...)
		}
	}
	return out
}
