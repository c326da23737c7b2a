package pipeline

// Flow says what travels on an edge of the graph. Every stage type declares
// the Flow it consumes and the Flow it produces; [Build] checks that each
// edge's producer satisfies its consumer.
type Flow uint8

const (
	// None: the stage has no such side (a source consumes None, a sink
	// produces None).
	None Flow = iota
	// Ranges: byte ranges of the resource, the unit of work of a ranged
	// download ([Range] values on the edge).
	Ranges
	// Bytes: chunks in any order, each carrying its own offset.
	Bytes
	// OrderedBytes: chunks in file order, each starting where the previous
	// one ended.
	OrderedBytes
	// Same is only valid as what a stage produces: the same Flow it consumes
	// (a pass-through tap keeps order when its input has order).
	Same
)

func (f Flow) String() string {
	switch f {
	case None:
		return "nothing"
	case Ranges:
		return "ranges"
	case Bytes:
		return "bytes"
	case OrderedBytes:
		return "ordered bytes"
	case Same:
		return "same as input"
	}
	return "unknown flow"
}

// carries reports whether a stage that produces f can feed a stage that
// consumes want: equal flows match, and ordered bytes are also bytes.
func (f Flow) carries(want Flow) bool {
	return f == want || (f == OrderedBytes && want == Bytes)
}

func (f Flow) isBytes() bool { return f == Bytes || f == OrderedBytes }

// Range is the byte range [Start, End) of the resource. End is -1 when the
// resource's size is unknown and the range runs to the end of the body.
type Range struct {
	Start, End int64
}

// Len is the number of bytes in the range, or -1 when End is unknown.
func (r Range) Len() int64 {
	if r.End < 0 {
		return -1
	}
	return r.End - r.Start
}
