package sinks

import (
	"os"
	"unsafe"
)

// directFile is PATH.tmp opened a second time with O_DIRECT, for the file
// sink's durable writes. Bytes written through it go from the chunk's
// buffer to the disk without passing through the page cache, so fsync has
// no writeback left to do for them, and the CPU does not copy them: a
// 1 GiB download with fsync cost 0.45 s of CPU direct against 0.75 s
// through the page cache on this project's test VM. But each write waits
// for the disk, which is why the sink keeps several in flight and, with
// direct: auto, measures whether it pays (see choose.go).
//
// O_DIRECT needs the file offset, the length and the memory address
// aligned (the file system says to what, via statx). A chunk rarely is
// aligned end to end, so the sink writes its aligned middle here and its
// unaligned edges through the ordinary descriptor; Linux keeps the two
// coherent. Pooled buffers start on a 4 KiB boundary and pieces are aligned
// to 4 KiB, so in practice only the last chunk of a file has an edge.
type directFile struct {
	f        *os.File
	fd       int
	offAlign int64 // file offsets and lengths are multiples of this
	memAlign uintptr
}

// span returns where, within p (to be written at off), the part that may
// go direct begins and ends; start == end when no part may.
func (d *directFile) span(p []byte, off int64) (start, end int) {
	head := int((d.offAlign - off%d.offAlign) % d.offAlign)
	if head >= len(p) {
		return 0, 0
	}
	if uintptr(unsafe.Pointer(&p[head]))%d.memAlign != 0 {
		return 0, 0
	}
	n := (len(p) - head) / int(d.offAlign) * int(d.offAlign)
	return head, head + n
}

// writeAt writes all of p at off, which span must have approved. It
// returns how many bytes it wrote; a short count with a nil error means the
// file system refused direct I/O for the rest (EINVAL), and the caller
// should write the rest through the page cache.
func (d *directFile) writeAt(p []byte, off int64) (int, error) {
	return d.writevAt([][]byte{p}, off)
}

func (d *directFile) Close() error { return d.f.Close() }
