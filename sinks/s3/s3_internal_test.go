package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

func TestS3PartSizeFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ size, configured, want int64 }{
		{-1, 8 * mib, 8 * mib},                 // unknown size: as configured
		{10_000_019, 8 * mib, 8 * mib},         // 2 parts
		{8 * mib * maxParts, 8 * mib, 8 * mib}, // exactly 10,000 parts
		{8*mib*maxParts + 1, 8 * mib, 9 * mib}, // one byte more: the next whole MiB
		{1 << 40, 5 * mib, 105 * mib},          // 1 TiB: 104.9 MiB, rounded up
		{5 * (1 << 40), 8 * mib, 525 * mib},    // 5 TiB, the largest S3 object
	} {
		got := partSizeFor(c.size, c.configured)
		if got != c.want {
			t.Errorf("partSizeFor(%d, %d) = %d, want %d", c.size, c.configured, got, c.want)
		}
		if c.size > 0 && (c.size+got-1)/got > maxParts {
			t.Errorf("partSizeFor(%d) = %d makes %d parts", c.size, got, (c.size+got-1)/got)
		}
	}
}

func TestS3ParseObjectURL(t *testing.T) {
	o, err := ParseObjectURL("s3://bucket/a/b.iso")
	if err != nil || o.Bucket != "bucket" || o.Key != "a/b.iso" || o.String() != "s3://bucket/a/b.iso" {
		t.Fatalf("got %+v, %v", o, err)
	}
	if o, err := ParseObjectURL("s3://b/a/..k/.x/k.."); err != nil || o.Key != "a/..k/.x/k.." {
		t.Errorf("dots inside segments: got %+v, %v", o, err)
	}
	for _, bad := range []string{"s3://bucket", "s3://bucket/", "s3:///key", "s3://b/dir/", "http://b/k",
		// Keys that S3 stores as they are, but that name another object
		// for whoever maps keys to paths: refused before any request.
		"s3://b/a/../k", "s3://b/..", "s3://b/../k", "s3://b/./k", "s3://b/a/.", "s3://b/a//k", "s3://b//k"} {
		if _, err := ParseObjectURL(bad); err == nil || !strings.Contains(err.Error(), "s3://") {
			t.Errorf("ParseObjectURL(%q) = %v, want an error", bad, err)
		}
	}
}

// The bound `dlflow validate` prints counts a part for each upload in
// flight and the one being filled.
func TestS3MemoryDeclared(t *testing.T) {
	m := s3Def.Memory(Config{PartSize: 8 << 20, Uploads: 4})
	if m.PerReplica != 5*8<<20 {
		t.Fatalf("PerReplica %d, want %d", m.PerReplica, 5*8<<20)
	}
	u := newUploader(t.Context(), &Sink{cfg: Config{Uploads: 4}, partSize: 8 << 20}, nil)
	defer u.cancel()
	if got := cap(u.free); got != 5 {
		t.Fatalf("%d part buffers, want 5", got)
	}
}

// TestS3PreflightMissingBucket: against a store that has no bucket at all
// (an HTTP server that answers 404 to everything, as S3 does for a missing
// bucket: HEAD with no body, GET with NoSuchBucket), Preflight names the
// bucket, with and without overwrite, where it passed before and the run
// failed later on "remove the upload state ...". The S3 tests of the root
// package check the same against weed.
func TestS3PreflightMissingBucket(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		if r.Method != http.MethodHead {
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>gone</BucketName></Error>`)
		}
	}))
	defer srv.Close()
	for _, overwrite := range []bool{false, true} {
		s := &Sink{cfg: Config{Object: "s3://gone/k.bin", Endpoint: srv.URL, Region: "us-east-1",
			AccessKey: "k", SecretKey: "s", Overwrite: overwrite}}
		err := s.Preflight(context.Background(), &pipeline.Env{})
		s.closeIdle()
		var nb *NoBucketError
		if !errors.As(err, &nb) || nb.Bucket != "gone" || !errors.Is(err, sinks.ErrNoBucket) || err.Error() != "bucket gone does not exist" {
			t.Errorf("overwrite %v: Preflight: %v, want bucket gone does not exist", overwrite, err)
		}
	}
	if asked.Load() == 0 {
		t.Error("the store was never asked")
	}
}

// TestS3PreflightCancel: cancelling the context (Ctrl-C) ends a Preflight
// whose request the store holds unanswered, at once rather than after the
// preflight's minute, and the error is the cancellation.
func TestS3PreflightCancel(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // a store that never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release) // before srv.Close, which waits for the handler
	s := &Sink{cfg: Config{Object: "s3://slow/k.bin", Endpoint: srv.URL, Region: "us-east-1",
		AccessKey: "k", SecretKey: "s"}}
	defer s.closeIdle()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Preflight(ctx, &pipeline.Env{}) }()
	select {
	case <-arrived:
	case err := <-done:
		t.Fatalf("Preflight returned %v before the store answered", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the store was not asked within 10s")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Preflight after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Preflight still waits 10s after its context was cancelled")
	}
}

// TestCRCBindsOnlyWithIntegrity: a CRC32C binds a part's bytes only over
// TLS or to a loopback endpoint; over plain HTTP to another host, whoever
// changes the bytes on the way can match a CRC, so parts carry Content-MD5.
func TestCRCBindsOnlyWithIntegrity(t *testing.T) {
	for raw, want := range map[string]bool{
		"https://s3.eu-west-1.amazonaws.com": true,
		"HTTPS://minio.example.com:9000":     true,
		"http://127.0.0.1:8333":              true,
		"http://127.9.9.9:8333":              true,
		"http://[::1]:9000":                  true,
		"http://localhost:9000":              true,
		"http://10.0.0.5:9000":               false,
		"http://s3.example.com":              false,
		"http://localhost.example.com:9000":  false,
		"http://[::ffff:10.0.0.1]:9000":      false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := crcBinds(u); got != want {
			t.Errorf("crcBinds(%s) = %v, want %v", raw, got, want)
		}
	}
	if crcBinds(nil) {
		t.Error("crcBinds(nil) = true")
	}
}
