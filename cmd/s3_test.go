package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/s3test"
)

// TestS3CLIKillAndResume: `dlflow URL -o s3://bucket/key` in a child
// process is killed with SIGKILL (nothing of it runs) once parts are
// uploaded; the same command then resumes the pending upload, fetching
// only the missing parts, and completes the object. Endpoint and
// credentials come from the AWS_* variables, the part size from --set.
func TestS3CLIKillAndResume(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "cli")
	srv.SetEnv(t)
	c := srv.Client(t)
	const size, part = 48 << 20, 6 << 20
	src := startOrigin(t, origin.Options{Size: size, Seed: 4, RateLimit: 1 << 20})
	args := []string{src.URL(), "-o", "s3://cli/k/obj.bin", "--connections", "4",
		"--set", "stages.upload.config.part_size=6MiB", "--set", "stages.split.config.piece=6MiB"}

	child := exec.Command(os.Args[0], args...)
	child.Env = append(os.Environ(), cliEnv+"=1")
	var stderr strings.Builder
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = child.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = child.Process.Kill()
			<-done
		}
	})

	// Bounded wait until two parts are stored, then kill -9.
	var uploadID string
	var parts []minio.ObjectPart
	for deadline := time.Now().Add(90 * time.Second); len(parts) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no two parts after 90s; stderr:\n%s", stderr.String())
		}
		res, err := c.ListMultipartUploads(context.Background(), "cli", "k/obj.bin", "", "", "", 10)
		if err != nil || len(res.Uploads) == 0 {
			continue
		}
		uploadID = res.Uploads[0].UploadID
		lp, err := c.ListObjectParts(context.Background(), "cli", "k/obj.bin", uploadID, 0, 1000)
		if err == nil {
			parts = lp.ObjectParts
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	// A part whose body weed had when the process died still lands: list
	// until two listings a moment apart agree.
	present, count := int64(-1), 0
	for i := 0; ; i++ {
		lp, err := c.ListObjectParts(context.Background(), "cli", "k/obj.bin", uploadID, 0, 1000)
		if err != nil {
			t.Fatalf("the pending upload is gone after kill -9: %v", err)
		}
		now := int64(0)
		for _, p := range lp.ObjectParts {
			if p.Size != part {
				t.Fatalf("part %d is %d bytes, want %d", p.PartNumber, p.Size, part)
			}
			now += p.Size
		}
		if now == present {
			count = len(lp.ObjectParts)
			break
		}
		if i == 50 {
			t.Fatal("the parts of the pending upload still change after 50 listings")
		}
		present = now
		time.Sleep(300 * time.Millisecond)
	}

	src.ResetStats()
	res := runCLI(t, args...)
	if res.code != exitOK {
		t.Fatalf("rerun: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	body, _, _, err := c.GetObject(context.Background(), "cli", "k/obj.bin", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	h := sha256.New()
	if n, err := io.Copy(h, body); err != nil || n != size {
		t.Fatalf("object: %d bytes, %v", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != origin.SHA256Hex(size, 4) {
		t.Fatalf("object sha256 %s, want %s", got, origin.SHA256Hex(size, 4))
	}
	// The rerun fetched the missing parts, plus at most the probe's first
	// piece, which it asks for before it knows the part is in place, and
	// what requests cut short by work stealing sent past their cut.
	served := src.Stats().BytesServed
	if served < size-present || served > size-present+2*part {
		t.Fatalf("the rerun fetched %d bytes; %d were missing (%d parts in place)", served, size-present, count)
	}
	t.Logf("%d parts were in place; the rerun fetched %d bytes", count, served)
	if ups, err := c.ListMultipartUploads(context.Background(), "cli", "k/obj.bin", "", "", "", 10); err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("pending uploads after completion: %+v, %v", ups.Uploads, err)
	}
}
