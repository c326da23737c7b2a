// Package origin implements a deterministic HTTP origin server for tests and
// benchmarks, with runtime-switchable fault injection.
//
// The served content is a pure function of (offset, seed): every 8-byte word w
// (covering offsets 8w..8w+7, little-endian) is splitmix64(seed ^ w). This lets
// tests verify any byte range without keeping the file in memory.
package origin

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
)

// mix is the splitmix64 finalizer applied to x (including the golden-ratio
// increment).
func mix(x uint64) uint64 {
	z := x + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Fill fills p with the content bytes at offsets [off, off+len(p)) of the
// resource generated from seed. off must be >= 0.
func Fill(p []byte, off int64, seed uint64) {
	if len(p) == 0 {
		return
	}
	w := uint64(off) >> 3
	if r := int(off & 7); r != 0 {
		var word [8]byte
		binary.LittleEndian.PutUint64(word[:], mix(seed^w))
		n := copy(p, word[r:])
		p = p[n:]
		w++
	}
	// Aligned middle, four words per iteration.
	for len(p) >= 32 {
		q := p[:32:32]
		binary.LittleEndian.PutUint64(q[0:], mix(seed^w))
		binary.LittleEndian.PutUint64(q[8:], mix(seed^(w+1)))
		binary.LittleEndian.PutUint64(q[16:], mix(seed^(w+2)))
		binary.LittleEndian.PutUint64(q[24:], mix(seed^(w+3)))
		p = p[32:]
		w += 4
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, mix(seed^w))
		p = p[8:]
		w++
	}
	if len(p) > 0 {
		var word [8]byte
		binary.LittleEndian.PutUint64(word[:], mix(seed^w))
		copy(p, word[:])
	}
}

// Reader reads the deterministic content of a resource. It implements
// io.Reader, io.Seeker and io.ReaderAt. ReadAt is safe for concurrent use;
// Read and Seek are not.
type Reader struct {
	size int64
	seed uint64
	pos  int64
}

// NewReader returns a reader over size bytes of content generated from seed.
// The result also implements io.ReaderAt.
func NewReader(size int64, seed uint64) io.ReadSeeker {
	return &Reader{size: size, seed: seed}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	n, _ := r.ReadAt(p, r.pos)
	r.pos += int64(n)
	return n, nil
}

// ReadAt implements io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("origin: negative offset")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	var err error
	if rem := r.size - off; int64(len(p)) > rem {
		p = p[:rem]
		err = io.EOF
	}
	Fill(p, off, r.seed)
	return len(p), err
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, errors.New("origin: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("origin: negative position")
	}
	r.pos = abs
	return abs, nil
}

// SHA256 returns the SHA-256 digest of size bytes of content generated from
// seed.
func SHA256(size int64, seed uint64) [32]byte {
	h := sha256.New()
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		Fill(buf[:n], off, seed)
		h.Write(buf[:n])
		off += n
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// SHA256Hex is SHA256 encoded as lower-case hex.
func SHA256Hex(size int64, seed uint64) string {
	sum := SHA256(size, seed)
	return hex.EncodeToString(sum[:])
}

// WriteFile writes size bytes of content generated from seed to path,
// creating or truncating it with mode 0o644.
func WriteFile(path string, size int64, seed uint64) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		Fill(buf[:n], off, seed)
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}
