package testtar

import (
	"bytes"
	"fmt"
	"testing"
)

// Fragment is a run of data in a sparse member; what lies between
// fragments is a hole, read back as zeros.
type Fragment struct {
	Offset int64
	Data   []byte
}

// SparseTar is a tar archive of one sparse regular file, name, of size
// bytes (its logical size, which may be far larger than the archive) that
// holds frags and zeros elsewhere, followed by the end marker. It is in
// the PAX format 1.0 of GNU tar (tar --format=posix --sparse): archive/tar
// reads that but cannot write it, so the blocks are made here. frags must
// be in order, apart, and within size.
func SparseTar(tb testing.TB, name string, size int64, frags []Fragment) []byte {
	tb.Helper()
	// The sparse map, in the data section: the number of fragments, then
	// each fragment's offset and length, one decimal number a line. A file
	// that ends in a hole ends with an empty fragment at its size.
	var m bytes.Buffer
	n := len(frags)
	last := frags[len(frags)-1]
	tail := last.Offset+int64(len(last.Data)) < size
	if tail {
		n++
	}
	fmt.Fprintf(&m, "%d\n", n)
	var data []byte
	for _, f := range frags {
		fmt.Fprintf(&m, "%d\n%d\n", f.Offset, len(f.Data))
		data = append(data, f.Data...)
	}
	if tail {
		fmt.Fprintf(&m, "%d\n0\n", size)
	}
	body := append(pad(m.Bytes()), data...)

	var out bytes.Buffer
	records := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", fmt.Sprint(size))
	out.Write(ustarHeader("PaxHeaders/"+name, 'x', int64(len(records))))
	out.Write(pad([]byte(records)))
	out.Write(ustarHeader("GNUSparseFile.0/"+name, '0', int64(len(body))))
	out.Write(pad(body))
	out.Write(make([]byte, 2*512)) // the end marker
	return out.Bytes()
}

// pad fills b up to a multiple of the 512-byte block.
func pad(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxRecord is one "LEN KEY=VALUE\n" record, LEN counting itself.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	for n != len(fmt.Sprint(n))+len(k)+len(v)+3 {
		n = len(fmt.Sprint(n)) + len(k) + len(v) + 3
	}
	return fmt.Sprintf("%d %s=%s\n", n, k, v)
}

// ustarHeader is the 512-byte ustar header of a member of mode 0644
// modified at ModTime. Names are at most 100 bytes, sizes under 8 GiB.
func ustarHeader(name string, typeflag byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", ModTime.Unix()))
	b[156] = typeflag
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}
