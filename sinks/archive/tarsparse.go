package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
)

// holeBlock is the unit of a hole in a sparse member: an aligned run of
// this many zero bytes is skipped instead of written.
const holeBlock = 4 << 10

var zeroBlock [holeBlock]byte

// isSparse tells a sparse member: GNU's old format (type S) or a PAX
// header with GNU sparse records (what GNU tar writes with --sparse).
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for _, k := range []string{"GNU.sparse.major", "GNU.sparse.map", "GNU.sparse.realsize", "GNU.sparse.size"} {
		if _, ok := hdr.PAXRecords[k]; ok {
			return true
		}
	}
	return false
}

// copyData copies a member's data from r into the new file f and returns
// its length. It checks ctx between reads, so that a large member stops
// soon after a cancel.
//
// A sparse member keeps its holes: archive/tar reads a hole back as zeros
// (it does not expose the sparse map), so the zeros are found again here.
// A read during which the archive's byte count did not move (r is a
// *tarData) is all hole, and is skipped without looking; other reads are
// looked at by aligned blocks of holeBlock bytes, and the blocks of zeros
// are skipped. The file's size is set at the end, so that a file ending
// in a hole has it. The CPU time is still linear in the member's size:
// archive/tar fills every hole with zeros as it is read (about 15 GB/s,
// a minute for 1 TiB); the disk holds only the data. A member that is not
// sparse is copied as it is, zeros included.
func copyData(ctx context.Context, f *os.File, r io.Reader, sparse bool, buf []byte) (int64, error) {
	td, _ := r.(*tarData)
	if !sparse || td == nil {
		return copyPlain(ctx, f, r, buf)
	}
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		before := td.er.n
		n, err := r.Read(buf)
		if n > 0 && td.er.n != before {
			if werr := writeNonZero(f, buf[:n], off); werr != nil {
				return off, werr
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return off, f.Truncate(off)
		}
		if err != nil {
			return off, err
		}
	}
}

// copyPlain copies r to f, checking ctx between reads.
func copyPlain(ctx context.Context, f *os.File, r io.Reader, buf []byte) (int64, error) {
	if r == nil {
		return 0, nil
	}
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := f.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// writeNonZero writes p at off in f, less the blocks of zeros aligned on
// holeBlock in the file, which it leaves as holes. Runs of data between
// them go in one write each.
func writeNonZero(f *os.File, p []byte, off int64) error {
	start := -1 // the start in p of the run of data not yet written
	for i := 0; i < len(p); {
		end := min(len(p), i+holeBlock-int((off+int64(i))%holeBlock))
		zero := bytes.Equal(p[i:end], zeroBlock[:end-i])
		switch {
		case !zero && start < 0:
			start = i
		case zero && start >= 0:
			if _, err := f.WriteAt(p[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
		i = end
	}
	if start >= 0 {
		_, err := f.WriteAt(p[start:], off+int64(start))
		return err
	}
	return nil
}
