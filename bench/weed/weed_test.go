package weed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// start starts a server for t, or skips t without weed unless CI is set.
func start(t *testing.T) *Server {
	t.Helper()
	if _, err := Binary(); errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestServerRoundTrip puts an object, reads its sha256 back, removes it
// and vacuums: the disk space comes back, and Close removes the directory.
func TestServerRoundTrip(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.MakeBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	if err := s.MakeBucket(ctx, "bkt"); err != nil {
		t.Fatalf("a second MakeBucket: %v", err)
	}
	data := make([]byte, 32<<20) // incompressible: weed compresses what it can
	rand.NewChaCha8([32]byte{1}).Read(data)
	if _, err := s.client.PutObject(ctx, "bkt", "k", bytes.NewReader(data), int64(len(data)), "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	got, n, err := s.SHA256(ctx, "bkt", "k")
	if err != nil || got != hex.EncodeToString(want[:]) || n != int64(len(data)) {
		t.Fatalf("SHA256 = %s, %d, %v; want %x, %d", got, n, err, want, len(data))
	}
	full := s.DiskBytes()
	if full < int64(len(data)) {
		t.Fatalf("the data takes %d bytes on disk, under the object's %d", full, len(data))
	}
	if err := s.Remove(ctx, "bkt", "k"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SHA256(ctx, "bkt", "k"); err == nil {
		t.Fatal("the removed object is still read")
	}
	if err := s.Remove(ctx, "bkt", "k"); err != nil {
		t.Fatalf("removing a missing object: %v", err)
	}
	// Compaction runs in the background: wait for it, bounded.
	for i := 0; i < 60 && s.DiskBytes() > full-int64(len(data))/2; i++ {
		if err := s.Vacuum(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if left := s.DiskBytes(); left > full-int64(len(data))/2 {
		t.Fatalf("after vacuum the data takes %d bytes, was %d with the %d-byte object", left, full, len(data))
	}
	dir := s.dir
	s.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left %s: %v", dir, err)
	}
}
