package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestFillWordDefinition(t *testing.T) {
	const seed = 42
	p := make([]byte, 64)
	Fill(p, 0, seed)
	for w := range 8 {
		got := binary.LittleEndian.Uint64(p[8*w:])
		if want := mix(seed ^ uint64(w)); got != want {
			t.Fatalf("word %d = %#x, want %#x", w, got, want)
		}
	}
	// Known splitmix64 output for state 0 (first output of seed 0).
	if got := mix(0); got != 0xe220a8397b1dcdaf {
		t.Fatalf("mix(0) = %#x", got)
	}
}

func TestFillUnaligned(t *testing.T) {
	const seed = 7
	ref := make([]byte, 256)
	Fill(ref, 0, seed)
	for off := range 20 {
		for n := range 80 {
			p := make([]byte, n)
			Fill(p, int64(off), seed)
			if !bytes.Equal(p, ref[off:off+n]) {
				t.Fatalf("Fill(off=%d, n=%d) mismatch", off, n)
			}
		}
	}
	other := make([]byte, 256)
	Fill(other, 0, seed+1)
	if bytes.Equal(ref, other) {
		t.Fatal("different seeds gave the same content")
	}
}

func TestReader(t *testing.T) {
	const size, seed = 1<<20 + 13, 3
	want := make([]byte, size)
	Fill(want, 0, seed)

	r := NewReader(size, seed)
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAll: err=%v equal=%v len=%d", err, bytes.Equal(got, want), len(got))
	}
	if pos, err := r.Seek(-100, io.SeekEnd); err != nil || pos != size-100 {
		t.Fatalf("Seek = %d, %v", pos, err)
	}
	tail, _ := io.ReadAll(r)
	if !bytes.Equal(tail, want[size-100:]) {
		t.Fatal("tail after Seek mismatch")
	}
	ra := r.(io.ReaderAt)
	buf := make([]byte, 50)
	n, err := ra.ReadAt(buf, size-20)
	if n != 20 || err != io.EOF || !bytes.Equal(buf[:n], want[size-20:]) {
		t.Fatalf("ReadAt at end = %d, %v", n, err)
	}
	if n, err := ra.ReadAt(buf, size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt past end = %d, %v", n, err)
	}

	if sum := SHA256(size, seed); sum != sha256.Sum256(want) {
		t.Fatal("SHA256 mismatch")
	}
	path := filepath.Join(t.TempDir(), "f.bin")
	if err := WriteFile(path, size, seed); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(data, want) {
		t.Fatalf("WriteFile content mismatch (err=%v)", err)
	}
	if SHA256Hex(0, 1) != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatal("SHA256Hex of empty content wrong")
	}
}

func BenchmarkFill(b *testing.B) {
	buf := make([]byte, bufSize)
	b.SetBytes(int64(len(buf)))
	var off int64
	for b.Loop() {
		Fill(buf, off, 1)
		off += int64(len(buf))
	}
}

func BenchmarkFillUnaligned(b *testing.B) {
	buf := make([]byte, bufSize-3)
	b.SetBytes(int64(len(buf)))
	off := int64(5)
	for b.Loop() {
		Fill(buf, off, 1)
		off += int64(len(buf))
	}
}
