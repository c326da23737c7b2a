package dlflow_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/s3test"
	"github.com/dlflow/dlflow/pipeline"
)

// The tests named S3 run against a real S3-compatible server (SeaweedFS's
// weed, started by s3test on loopback ports). They set the AWS_*
// variables, so none runs in parallel.

const s3PartSize = 8 << 20 // examples/s3.yaml's part_size

// s3Setup starts weed with a bucket, points the AWS_* variables at it and
// returns a client of it.
func s3Setup(t *testing.T, bucket string) (*s3test.Server, *minio.Core) {
	t.Helper()
	srv := s3test.Start(t)
	srv.Bucket(t, bucket)
	srv.SetEnv(t)
	return srv, srv.Client(t)
}

// objectSHA256 is the sha256 of the object and its size and ETag.
func objectSHA256(t *testing.T, c *minio.Core, bucket, key string) (sum string, size int64, etag string) {
	t.Helper()
	body, info, _, err := c.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer body.Close()
	h := sha256.New()
	n, err := io.Copy(h, body)
	if err != nil {
		t.Fatalf("read %s/%s: %v", bucket, key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, info.ETag
}

// assertNoObject fails unless key is absent.
func assertNoObject(t *testing.T, c *minio.Core, bucket, key string) {
	t.Helper()
	_, err := c.StatObject(context.Background(), bucket, key, minio.StatObjectOptions{})
	if code := minio.ToErrorResponse(err).Code; code != "NoSuchKey" && code != "NotFound" {
		t.Fatalf("stat s3://%s/%s: %v (code %q), want no such key", bucket, key, err, code)
	}
}

// pendingUploads lists the ids of the pending multipart uploads of key.
func pendingUploads(t *testing.T, c *minio.Core, bucket, key string) []string {
	t.Helper()
	res, err := c.ListMultipartUploads(context.Background(), bucket, key, "", "", "", 1000)
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	var ids []string
	for _, u := range res.Uploads {
		if u.Key == key {
			ids = append(ids, u.UploadID)
		}
	}
	return ids
}

// assertNothingLeft fails unless key, its state object and any pending
// upload of key are all absent: what a failure must leave.
func assertNothingLeft(t *testing.T, c *minio.Core, bucket, key string) {
	t.Helper()
	assertNoObject(t, c, bucket, key)
	assertNoObject(t, c, bucket, key+".dlflow-upload")
	if ids := pendingUploads(t, c, bucket, key); len(ids) != 0 {
		t.Fatalf("pending uploads of %s left: %v", key, ids)
	}
}

func uploadTo(t *testing.T, ctx context.Context, req *dlflow.Request) (*dlflow.Result, error) {
	t.Helper()
	return newClient(t).Start(ctx, req).Wait()
}

func TestS3UploadWhileDownloading(t *testing.T) {
	noLeaks(t)
	_, c := s3Setup(t, "up")
	for _, size := range []int64{64 << 20, 10_000_019} {
		t.Run(strconv.FormatInt(size, 10), func(t *testing.T) {
			src := startOrigin(t, origin.Options{Size: size, Seed: 7})
			key := fmt.Sprintf("dir/obj-%d.bin", size)
			if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://up/" + key}); err != nil {
				t.Fatalf("upload: %v", err)
			}
			sum, n, etag := objectSHA256(t, c, "up", key)
			if n != size || sum != origin.SHA256Hex(size, 7) {
				t.Fatalf("object is %d bytes with sha256 %s, want %d bytes with %s", n, sum, size, origin.SHA256Hex(size, 7))
			}
			// A multipart object's ETag ends in -N, N its parts: 8 MiB parts.
			parts := (size + s3PartSize - 1) / s3PartSize
			if want := fmt.Sprintf("-%d", parts); !strings.HasSuffix(etag, want) {
				t.Fatalf("ETag %s, want a multipart ETag of %d parts (ending %s)", etag, parts, want)
			}
			if got := src.Stats().BytesServed; got != size {
				t.Fatalf("the source served %d bytes, want %d (each byte once)", got, size)
			}
			assertNoObject(t, c, "up", key+".dlflow-upload")
			if ids := pendingUploads(t, c, "up", key); len(ids) != 0 {
				t.Fatalf("pending uploads left: %v", ids)
			}
		})
	}
}

// listedParts waits until the pending upload of key has at least n parts
// and returns their numbers, or fails after limit.
func listedParts(t *testing.T, c *minio.Core, bucket, key string, n int, limit time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, id := range pendingUploads(t, c, bucket, key) {
			res, err := c.ListObjectParts(context.Background(), bucket, key, id, 0, 1000)
			if err != nil {
				t.Fatalf("list parts: %v", err)
			}
			if len(res.ObjectParts) >= n {
				var nums []int
				for _, p := range res.ObjectParts {
					nums = append(nums, p.PartNumber)
				}
				return nums
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the upload of %s did not reach %d parts in %v", key, n, limit)
	return nil
}

// rangeStart is the first offset of a Range header bytes=a-b, or -1.
func rangeStart(h string) (start, end int64) {
	a, b, ok := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	if !ok {
		return -1, -1
	}
	start, _ = strconv.ParseInt(a, 10, 64)
	end, err := strconv.ParseInt(b, 10, 64)
	if err != nil {
		end = -1
	}
	return start, end + 1
}

// TestS3ResumeAfterInterrupt cancels an upload once some parts are in
// (an interruption: the pending upload stays), then runs again: the
// second run lists the parts, fetches only the bytes of the others, and
// the object is whole.
func TestS3ResumeAfterInterrupt(t *testing.T) {
	noLeaks(t)
	_, c := s3Setup(t, "resume")
	const size = 64 << 20
	key := "big.bin"
	// 2 MiB/s a response: the first run takes seconds, long enough to
	// cancel it after a few parts.
	src := startOrigin(t, origin.Options{Size: size, Seed: 3, RateLimit: 2 << 20})
	req := &dlflow.Request{URL: src.URL(), Path: "s3://resume/" + key, Connections: 4}
	d := newClient(t).Start(context.Background(), req)
	before := listedParts(t, c, "resume", key, 2, 60*time.Second)
	d.Cancel()
	if _, err := d.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want a cancellation", err)
	}
	assertNoObject(t, c, "resume", key)
	ids := pendingUploads(t, c, "resume", key)
	if len(ids) != 1 {
		t.Fatalf("after the interruption: pending uploads %v, want 1", ids)
	}
	res, err := c.ListObjectParts(context.Background(), "resume", key, ids[0], 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	present := map[int64]bool{} // part starts
	for _, p := range res.ObjectParts {
		if p.Size == s3PartSize {
			present[int64(p.PartNumber-1)*s3PartSize] = true
		}
	}
	if len(present) < len(before) {
		t.Fatalf("%d whole parts after the interruption, %d were listed before it", len(present), len(before))
	}

	src.ResetStats()
	src.SetFaults(origin.Faults{}) // no rate limit change: Options hold it; faults reset counters
	if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://resume/" + key, Connections: 8}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	sum, n, etag := objectSHA256(t, c, "resume", key)
	if n != size || sum != origin.SHA256Hex(size, 3) || !strings.HasSuffix(etag, "-8") {
		t.Fatalf("object: %d bytes, sha256 %s, ETag %s; want %d bytes, %s, 8 parts", n, sum, etag, size, origin.SHA256Hex(size, 3))
	}
	assertNoObject(t, c, "resume", key+".dlflow-upload")
	if ids := pendingUploads(t, c, "resume", key); len(ids) != 0 {
		t.Fatalf("pending uploads left: %v", ids)
	}
	// The second run asked the source for the missing parts only: no
	// request but the probe (the first) touched a part in place, and the
	// others add up to the missing bytes.
	var fetched int64
	for i, r := range src.Log() {
		if r.Method != "GET" {
			continue
		}
		start, end := rangeStart(r.Range)
		overlaps := false
		for p := range present {
			if start < p+s3PartSize && (end < 0 || end > p) {
				overlaps = true
			}
		}
		switch {
		case overlaps && i > 0:
			t.Fatalf("request %d (Range %s) fetched bytes of a part already uploaded (parts at %v)", i, r.Range, present)
		case !overlaps:
			fetched += r.Bytes
		}
	}
	if want := size - int64(len(present))*s3PartSize; fetched != want {
		t.Fatalf("the second run fetched %d bytes for the missing parts, want %d (%d of 8 parts were in place)", fetched, want, len(present))
	}
	t.Logf("%d of 8 parts were in place; the second run fetched %d bytes", len(present), fetched)
}

// TestS3AbortOnSourceFailure: the source fails for good mid-way; the
// upload is aborted, and nothing of it stays.
func TestS3AbortOnSourceFailure(t *testing.T) {
	noLeaks(t)
	_, c := s3Setup(t, "fail")
	src := startOrigin(t, origin.Options{Size: 64 << 20, Seed: 5})
	// The probe and the first GET are served, then the file is gone.
	src.SetFaults(origin.Faults{FailStatus: 404, FailCount: 1000, FailAfter: 2})
	_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://fail/f.bin", Connections: 2})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v, want the source's 404", err)
	}
	assertNothingLeft(t, c, "fail", "f.bin")
}

// TestS3ChecksumMismatch: a checksum that does not match aborts the
// upload: no object, no pending upload.
func TestS3ChecksumMismatch(t *testing.T) {
	noLeaks(t)
	_, c := s3Setup(t, "sum")
	src := startOrigin(t, origin.Options{Size: 20 << 20, Seed: 9})
	wrong := "sha256:" + origin.SHA256Hex(20<<20, 10)
	_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://sum/s.bin", Checksum: wrong})
	if !errors.Is(err, pipeline.ErrCorrupt) || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("err = %v, want a sha256 mismatch", err)
	}
	assertNothingLeft(t, c, "sum", "s.bin")

	right := "sha256:" + origin.SHA256Hex(20<<20, 9)
	if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://sum/s.bin", Checksum: right}); err != nil {
		t.Fatalf("with the right checksum: %v", err)
	}
	if sum, _, _ := objectSHA256(t, c, "sum", "s.bin"); sum != origin.SHA256Hex(20<<20, 9) {
		t.Fatalf("object sha256 %s", sum)
	}
}

// TestS3ExistingObject: an existing object is refused before any request
// to the source, and replaced with Overwrite.
func TestS3ExistingObject(t *testing.T) {
	noLeaks(t)
	_, c := s3Setup(t, "exist")
	if _, err := c.PutObject(context.Background(), "exist", "e.bin", strings.NewReader("old"), 3, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	src := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 1})
	_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://exist/e.bin"})
	if !errors.Is(err, dlflow.ErrOutputExists) || !strings.Contains(err.Error(), "s3://exist/e.bin exists") {
		t.Fatalf("err = %v, want ErrOutputExists naming the object", err)
	}
	if got := src.Stats().Requests; got != 0 {
		t.Fatalf("the source got %d requests, want 0", got)
	}
	if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://exist/e.bin", Overwrite: true}); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	if sum, n, _ := objectSHA256(t, c, "exist", "e.bin"); n != 1<<20 || sum != origin.SHA256Hex(1<<20, 1) {
		t.Fatalf("object: %d bytes, sha256 %s", n, sum)
	}
}
