package sinks

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openDirect opens file, which is at path, a second time with O_DIRECT.
// It returns nil, and no error, where the file system does not support
// direct I/O (tmpfs, some FUSE and network file systems): the sink then
// writes through the page cache. It fails when path no longer leads to
// file: direct writes would go to another file.
func openDirect(file *os.File, path string) (*directFile, error) {
	var st unix.Statx_t
	err := unix.Statx(int(file.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st)
	if err != nil || st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_offset_align == 0 || st.Dio_mem_align == 0 {
		return nil, nil
	}
	f, err := openRegular(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := sameFile(file, f); err != nil {
		f.Close()
		return nil, err
	}
	// A whole page: a direct write then never shares a page with a
	// buffered edge, whose page the kernel would have to read first.
	offAlign := max(int64(st.Dio_offset_align), int64(os.Getpagesize()))
	return &directFile{f: f, fd: int(f.Fd()), offAlign: offAlign, memAlign: uintptr(st.Dio_mem_align)}, nil
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
