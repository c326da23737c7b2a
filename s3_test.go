package dlflow_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/s3test"
	"github.com/dlflow/dlflow/pipeline"
	_ "github.com/dlflow/dlflow/sinks/s3" // s3.sink: s3:// output
)

// The tests named S3 run against a real S3-compatible server (SeaweedFS's
// weed, started by s3test on loopback ports). They set the AWS_*
// variables, so none runs in parallel.

const s3PartSize = 8 << 20 // examples/s3.yaml's part_size

// TestMain stops the weed that the S3 tests share.
func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// s3NoLeaks is noLeaks for a test that may start the shared weed, whose
// process waiter outlives it.
func s3NoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt, s3test.IgnoreLeaks()) })
}

// s3Setup makes a bucket named after name on the shared weed (a new one
// each time: -count=N reruns a test on the same weed), points the AWS_*
// variables at it and returns its name and a client.
func s3Setup(t *testing.T, name string) (bucket string, c *minio.Core) {
	t.Helper()
	srv := s3test.Shared(t)
	bucketSeq++
	bucket = fmt.Sprintf("%s-%d", name, bucketSeq)
	srv.Bucket(t, bucket)
	srv.SetEnv(t)
	return bucket, srv.Client(t)
}

var bucketSeq int // tests that set the environment do not run in parallel

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
	s3NoLeaks(t)
	b, c := s3Setup(t, "upload")
	for _, size := range []int64{64 << 20, 10_000_019} {
		t.Run(strconv.FormatInt(size, 10), func(t *testing.T) {
			src := startOrigin(t, origin.Options{Size: size, Seed: 7})
			key := fmt.Sprintf("dir/obj-%d.bin", size)
			if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/" + key}); err != nil {
				t.Fatalf("upload: %v", err)
			}
			sum, n, etag := objectSHA256(t, c, b, key)
			if n != size || sum != origin.SHA256Hex(size, 7) {
				t.Fatalf("object is %d bytes with sha256 %s, want %d bytes with %s", n, sum, size, origin.SHA256Hex(size, 7))
			}
			// A multipart object's ETag ends in -N, N its parts: 8 MiB parts.
			parts := (size + s3PartSize - 1) / s3PartSize
			if want := fmt.Sprintf("-%d", parts); !strings.HasSuffix(etag, want) {
				t.Fatalf("ETag %s, want a multipart ETag of %d parts (ending %s)", etag, parts, want)
			}
			// Each byte once, but for what the probe's answer carried
			// past what its reader took (up to a piece) and what a
			// connection that work stealing replaced had in flight: on
			// loopback the socket buffers hold megabytes, and under load
			// a few replacements sent 15 MB more for 64 MiB. Half the
			// size again still catches a download that fetches twice.
			if got, most := src.Stats().BytesServed, size+max(s3PartSize, size/2); got < size || got > most {
				t.Fatalf("the source served %d bytes, want %d to %d", got, size, most)
			}
			assertNoObject(t, c, b, key+".dlflow-upload")
			if ids := pendingUploads(t, c, b, key); len(ids) != 0 {
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
	s3NoLeaks(t)
	b, c := s3Setup(t, "resume")
	const size = 64 << 20
	key := "big.bin"
	// 2 MiB/s a response: the first run takes seconds, long enough to
	// cancel it after a few parts.
	src := startOrigin(t, origin.Options{Size: size, Seed: 3, RateLimit: 2 << 20})
	req := &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/" + key, Connections: 4}
	d := newClient(t).Start(context.Background(), req)
	before := listedParts(t, c, b, key, 2, 60*time.Second)
	d.Cancel()
	if _, err := d.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want a cancellation", err)
	}
	assertNoObject(t, c, b, key)
	ids := pendingUploads(t, c, b, key)
	if len(ids) != 1 {
		t.Fatalf("after the interruption: pending uploads %v, want 1", ids)
	}
	// A part whose upload was under way when the run was cancelled may
	// still land (weed had its body): list until two listings a
	// moment apart agree.
	var present map[int64]bool // part starts
	for i := 0; ; i++ {
		res, err := c.ListObjectParts(context.Background(), b, key, ids[0], 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		now := map[int64]bool{}
		for _, p := range res.ObjectParts {
			if p.Size == s3PartSize {
				now[int64(p.PartNumber-1)*s3PartSize] = true
			}
		}
		if maps.Equal(now, present) {
			break
		}
		if i == 50 {
			t.Fatalf("the parts of the pending upload still change after %d listings", i)
		}
		present = now
		time.Sleep(300 * time.Millisecond)
	}
	if len(present) < len(before) {
		t.Fatalf("%d whole parts after the interruption, %d were listed before it", len(present), len(before))
	}

	src.ResetStats()
	src.SetFaults(origin.Faults{}) // no rate limit change: Options hold it; faults reset counters
	if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/" + key, Connections: 8}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	sum, n, etag := objectSHA256(t, c, b, key)
	if n != size || sum != origin.SHA256Hex(size, 3) || !strings.HasSuffix(etag, "-8") {
		t.Fatalf("object: %d bytes, sha256 %s, ETag %s; want %d bytes, %s, 8 parts", n, sum, etag, size, origin.SHA256Hex(size, 3))
	}
	assertNoObject(t, c, b, key+".dlflow-upload")
	if ids := pendingUploads(t, c, b, key); len(ids) != 0 {
		t.Fatalf("pending uploads left: %v", ids)
	}
	// The second run asked the source for no byte of the parts in place,
	// but for the probe (the first request), which asks for the first
	// piece before the parts are listed; and it fetched the missing bytes
	// once: a request cut short by work stealing may have sent more than
	// its reader used (what the socket buffers held when it was cut), but
	// less than a part.
	var fetched int64
	for i, r := range src.Log() {
		if r.Method != "GET" || i == 0 {
			continue
		}
		start, end := rangeStart(r.Range)
		for p := range present {
			if start < p+s3PartSize && end > p {
				t.Fatalf("request %d (Range %s) asked for the part at %d, which was in place", i, r.Range, p)
			}
		}
		fetched += r.Bytes
	}
	missing := size - int64(len(present))*s3PartSize
	if fetched < missing || fetched >= missing+s3PartSize {
		t.Fatalf("the second run fetched %d bytes besides the probe; %d were missing", fetched, missing)
	}
	t.Logf("%d of 8 parts were listed in place; the second run fetched %d bytes besides the probe", len(present), fetched)
}

// TestS3AbortOnSourceFailure: the source fails for good mid-way, after
// parts were uploaded; the upload is aborted, and nothing of it stays.
func TestS3AbortOnSourceFailure(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "fail")
	src := startOrigin(t, origin.Options{Size: 64 << 20, Seed: 5})
	// The probe and four pieces are served (the reorder window makes the
	// readers ask for a piece a request), then the file is gone.
	src.SetFaults(origin.Faults{FailStatus: 404, FailCount: 1000, FailAfter: 5})
	logOpt, log := withLog(zerolog.InfoLevel)
	_, err := newClient(t, logOpt).Start(context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/f.bin", Connections: 2}).Wait()
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v, want the source's 404", err)
	}
	assertNothingLeft(t, c, b, "f.bin")
	if !regexp.MustCompile(`"parts":[1-9][0-9]*,"message":"upload aborted"`).MatchString(log.String()) {
		t.Fatalf("no abort of an upload with parts logged:\n%s", log.String())
	}
}

// TestS3ChecksumMismatch: a checksum that does not match aborts the
// upload: no object, no pending upload.
func TestS3ChecksumMismatch(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "checksum")
	src := startOrigin(t, origin.Options{Size: 20 << 20, Seed: 9})
	wrong := "sha256:" + origin.SHA256Hex(20<<20, 10)
	_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/s.bin", Checksum: wrong})
	if !errors.Is(err, pipeline.ErrCorrupt) || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("err = %v, want a sha256 mismatch", err)
	}
	assertNothingLeft(t, c, b, "s.bin")

	right := "sha256:" + origin.SHA256Hex(20<<20, 9)
	if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/s.bin", Checksum: right}); err != nil {
		t.Fatalf("with the right checksum: %v", err)
	}
	if sum, _, _ := objectSHA256(t, c, b, "s.bin"); sum != origin.SHA256Hex(20<<20, 9) {
		t.Fatalf("object sha256 %s", sum)
	}
}

// TestS3ExistingObject: an existing object is refused before any request
// to the source, and replaced with Overwrite.
func TestS3ExistingObject(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "exist")
	if _, err := c.PutObject(context.Background(), b, "e.bin", strings.NewReader("old"), 3, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	src := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 1})
	_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/e.bin"})
	if !errors.Is(err, dlflow.ErrOutputExists) || !strings.Contains(err.Error(), "s3://"+b+"/e.bin exists") {
		t.Fatalf("err = %v, want ErrOutputExists naming the object", err)
	}
	if got := src.Stats().Requests; got != 0 {
		t.Fatalf("the source got %d requests, want 0", got)
	}
	if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/e.bin", Overwrite: true}); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	if sum, n, _ := objectSHA256(t, c, b, "e.bin"); n != 1<<20 || sum != origin.SHA256Hex(1<<20, 1) {
		t.Fatalf("object: %d bytes, sha256 %s", n, sum)
	}
}

// TestS3SmallObjects: an empty resource becomes an empty object (S3
// completes no upload of zero parts), and a one-byte one a single part.
func TestS3SmallObjects(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "small")
	for _, size := range []int64{0, 1} {
		src := startOrigin(t, origin.Options{Size: size, Seed: 2})
		key := fmt.Sprintf("s%d", size)
		if _, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/" + key}); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if sum, n, _ := objectSHA256(t, c, b, key); n != size || sum != origin.SHA256Hex(size, 2) {
			t.Fatalf("size %d: object of %d bytes, sha256 %s", size, n, sum)
		}
		assertNoObject(t, c, b, key+".dlflow-upload")
		if ids := pendingUploads(t, c, b, key); len(ids) != 0 {
			t.Fatalf("size %d: pending uploads left: %v", size, ids)
		}
	}
}

// TestS3ChangedSourceStartsOver: after an interruption the file changes
// on the server (new ETag and content); the next run does not resume the
// pending upload (its parts belong to the old file) but aborts it and
// uploads the new file whole.
func TestS3ChangedSourceStartsOver(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "changed")
	const size = 32 << 20
	src := startOrigin(t, origin.Options{Size: size, Seed: 20, RateLimit: 2 << 20})
	req := &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/c.bin", Connections: 2}
	d := newClient(t).Start(context.Background(), req)
	listedParts(t, c, b, "c.bin", 1, 60*time.Second)
	d.Cancel()
	if _, err := d.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want a cancellation", err)
	}
	old := pendingUploads(t, c, b, "c.bin")
	if len(old) != 1 {
		t.Fatalf("pending uploads %v, want 1", old)
	}

	// One GET of the old version, then the file is version 2 (Seed+1).
	src.SetFaults(origin.Faults{ChangeETagAfter: 1})
	resp, err := http.Get(src.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	src.ResetStats()
	logOpt, log := withLog(zerolog.InfoLevel)
	if _, err := newClient(t, logOpt).Start(context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/c.bin"}).Wait(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if sum, n, _ := objectSHA256(t, c, b, "c.bin"); n != size || sum != origin.SHA256Hex(size, 21) {
		t.Fatalf("object: %d bytes, sha256 %s; want the new file, %s", n, sum, origin.SHA256Hex(size, 21))
	}
	if !strings.Contains(log.String(), "ETag is now") || !strings.Contains(log.String(), "not resuming the pending upload") {
		t.Fatalf("no reason logged for starting over:\n%s", log.String())
	}
	if got := src.Stats().BytesServed; got < size {
		t.Fatalf("the second run fetched %d bytes, want the whole file (%d)", got, size)
	}
	if ids := pendingUploads(t, c, b, "c.bin"); len(ids) != 0 {
		t.Fatalf("pending uploads left: %v (the old one was %v)", ids, old)
	}
}

// TestS3MissingBucket: an upload to a bucket that does not exist fails
// before any request to the source, with or without Overwrite, with an
// error that names the bucket (it was "remove the upload state ...:
// denied"); and a key with a ".." segment is refused before any request
// at all, to the store included.
func TestS3MissingBucket(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "nobucket")
	missing := b + "-missing"
	src := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 1})
	for _, overwrite := range []bool{false, true} {
		_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + missing + "/k.bin", Overwrite: overwrite})
		if !errors.Is(err, dlflow.ErrNoBucket) || !strings.Contains(err.Error(), "bucket "+missing+" does not exist") {
			t.Fatalf("overwrite %v: err = %v, want ErrNoBucket naming %s", overwrite, err, missing)
		}
	}
	if got := src.Stats().Requests; got != 0 {
		t.Fatalf("the source got %d requests, want 0", got)
	}
	if ok, err := c.BucketExists(context.Background(), missing); ok || err != nil {
		t.Fatalf("bucket %s exists (%v, %v)", missing, ok, err)
	}

	_, err := uploadTo(t, context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/a/../k.bin"})
	if err == nil || !strings.Contains(err.Error(), `".."`) {
		t.Fatalf("err = %v, want the key refused", err)
	}
	if got := src.Stats().Requests; got != 0 {
		t.Fatalf("the source got %d requests, want 0", got)
	}
	// The store itself refuses to stat a key with a ".." segment (400), so
	// what a normalizing service would have made of it is what is checked.
	assertNoObject(t, c, b, "k.bin")
}

// TestS3SwitchedSource: the source switches the file during the upload
// and ignores If-Range (206 from the new file, with its validators). The
// answer's validators tell; the download restarts, and the object is the
// new file whole, never parts of both.
func TestS3SwitchedSource(t *testing.T) {
	s3NoLeaks(t)
	b, c := s3Setup(t, "switched")
	const size = 20 << 20
	src := startOrigin(t, origin.Options{Size: size, Seed: 30})
	src.SetFaults(origin.Faults{ChangeETagAfter: 2, IgnoreIfRange: true})
	logOpt, log := withLog(zerolog.WarnLevel)
	_, err := newClient(t, logOpt).Start(context.Background(), &dlflow.Request{URL: src.URL(), Path: "s3://" + b + "/s.bin", Connections: 4,
		Sets: []string{"stages.fetch.config.max_request=1MiB"}}).Wait()
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if sum, n, _ := objectSHA256(t, c, b, "s.bin"); n != size || sum != origin.SHA256Hex(size, 31) {
		t.Fatalf("object: %d bytes, sha256 %s; want the new file, %s", n, sum, origin.SHA256Hex(size, 31))
	}
	if !contains(log.String(), "restarting the download from zero", "resource changed on the server") {
		t.Errorf("no restart warning:\n%s", log)
	}
	if ids := pendingUploads(t, c, b, "s.bin"); len(ids) != 0 {
		t.Fatalf("pending uploads left: %v", ids)
	}
}
