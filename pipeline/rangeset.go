package pipeline

import "sort"

// RangeSet is a set of byte offsets kept as sorted, disjoint, non-adjacent
// ranges with known ends. The zero value is empty and ready to use. It is not
// safe for concurrent use.
type RangeSet struct {
	rs []Range
}

// Add puts r into the set, merging it with ranges it overlaps or touches.
func (s *RangeSet) Add(r Range) {
	if r.End <= r.Start {
		return
	}
	// first range that ends at or after r.Start (could merge with r)
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End >= r.Start })
	j := i
	for j < len(s.rs) && s.rs[j].Start <= r.End {
		r.Start = min(r.Start, s.rs[j].Start)
		r.End = max(r.End, s.rs[j].End)
		j++
	}
	if i == j {
		s.rs = append(s.rs, Range{})
		copy(s.rs[i+1:], s.rs[i:])
		s.rs[i] = r
		return
	}
	s.rs[i] = r
	s.rs = append(s.rs[:i+1], s.rs[j:]...)
}

// Ranges returns the ranges in offset order. The slice is a copy.
func (s *RangeSet) Ranges() []Range { return append([]Range(nil), s.rs...) }

// Len is the number of bytes in the set.
func (s *RangeSet) Len() int64 {
	var n int64
	for _, r := range s.rs {
		n += r.End - r.Start
	}
	return n
}

// Contains reports whether every byte of r is in the set.
func (s *RangeSet) Contains(r Range) bool {
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End > r.Start })
	return i < len(s.rs) && s.rs[i].Start <= r.Start && r.End <= s.rs[i].End
}

// Missing returns the ranges of [0, size) that are not in the set.
func (s *RangeSet) Missing(size int64) []Range {
	var out []Range
	next := int64(0)
	for _, r := range s.rs {
		if r.Start >= size {
			break
		}
		if r.Start > next {
			out = append(out, Range{Start: next, End: r.Start})
		}
		next = max(next, r.End)
	}
	if next < size {
		out = append(out, Range{Start: next, End: size})
	}
	return out
}

// PrefixEnd is the end of the range that starts at 0, or 0 when offset 0 is
// not in the set.
func (s *RangeSet) PrefixEnd() int64 {
	if len(s.rs) > 0 && s.rs[0].Start == 0 {
		return s.rs[0].End
	}
	return 0
}

// NextMissing is the first offset at or after off that is not in the set.
func (s *RangeSet) NextMissing(off int64) int64 {
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End > off })
	if i < len(s.rs) && s.rs[i].Start <= off {
		return s.rs[i].End
	}
	return off
}
