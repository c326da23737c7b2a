package sinks

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directFile is PATH.tmp opened a second time with O_DIRECT, for the file
// sink's durable writes. Bytes written through it go from the chunk's
// buffer to the disk without passing through the page cache, so fsync has
// no writeback left to do for them: on this project's test machine a 1 GiB
// download with fsync cost a third of the CPU and finished sooner than
// through the page cache (see the file sink's benchmark).
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

// openDirect opens path with O_DIRECT. It returns nil, and no error, where
// the file system does not support direct I/O (tmpfs, some FUSE and
// network file systems): the sink then writes through the page cache.
func openDirect(path string) (*directFile, error) {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_DIOALIGN, &st)
	if err != nil || st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_offset_align == 0 || st.Dio_mem_align == 0 {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// A whole page: a direct write then never shares a page with a
	// buffered edge, whose page the kernel would have to read first.
	offAlign := max(int64(st.Dio_offset_align), int64(os.Getpagesize()))
	return &directFile{f: f, fd: int(f.Fd()), offAlign: offAlign, memAlign: uintptr(st.Dio_mem_align)}, nil
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

// writevAt writes the buffers of iov one after the other from off, with
// as few pwritev calls as the kernel allows. Every buffer must be one that
// span approves whole. It returns what writeAt returns.
func (d *directFile) writevAt(iov [][]byte, off int64) (int, error) {
	done := 0
	for len(iov) > 0 {
		n, err := unix.Pwritev(d.fd, iov, off+int64(done))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL):
			return done, nil
		case err != nil:
			return done, &os.PathError{Op: "write", Path: d.f.Name(), Err: err}
		case n == 0:
			return done, &os.PathError{Op: "write", Path: d.f.Name(), Err: unix.EIO}
		}
		done += n
		if n%int(d.offAlign) != 0 {
			return done, nil
		}
		for len(iov) > 0 && n >= len(iov[0]) {
			n -= len(iov[0])
			iov = iov[1:]
		}
		if n > 0 {
			// Rare: the kernel stopped inside a buffer, at an aligned
			// offset; carry on from there.
			iov = append([][]byte{iov[0][n:]}, iov[1:]...)
		}
	}
	return done, nil
}

func (d *directFile) Close() error { return d.f.Close() }
