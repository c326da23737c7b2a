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

// s3Upload is the pending upload of TestS3CLIKillAndResume: the store's
// client, the part size and the CLI's arguments.
type s3Upload struct {
	t    *testing.T
	c    *minio.Core
	part int64
	args []string
}

// parts lists the parts of the pending upload, until two listings a
// moment apart agree when settle is set (a part whose body weed had
// when the process stopped still lands).
func (u s3Upload) parts(settle bool) (id string, n int, bytes int64) {
	t, c := u.t, u.c
	t.Helper()
	prev := -1
	for i := 0; i < 50; i++ {
		res, err := c.ListMultipartUploads(context.Background(), "cli", "k/obj.bin", "", "", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Uploads) == 0 {
			return "", 0, 0
		}
		id = res.Uploads[0].UploadID
		lp, err := c.ListObjectParts(context.Background(), "cli", "k/obj.bin", id, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n, bytes = len(lp.ObjectParts), 0
		for _, p := range lp.ObjectParts {
			if p.Size != u.part {
				t.Fatalf("part %d is %d bytes, want %d", p.PartNumber, p.Size, u.part)
			}
			bytes += p.Size
		}
		if !settle || n == prev {
			return id, n, bytes
		}
		prev = n
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatal("the parts of the pending upload still change after 50 listings")
	return
}

// runUntil runs the CLI in a child process until the pending upload
// has n parts, then sends it sig and returns its exit code.
func (u s3Upload) runUntil(n int, sig os.Signal) int {
	t := u.t
	t.Helper()
	child := exec.Command(os.Args[0], u.args...)
	child.Env = append(os.Environ(), cliEnv+"=1")
	var stderr strings.Builder
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = child.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			_ = child.Process.Kill()
			<-done
		}
	}()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not %d parts after 90s; stderr:\n%s", n, stderr.String())
		}
		if _, got, _ := u.parts(false); got >= n {
			break
		}
	}
	if err := child.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the CLI did not stop within 60s of %v; stderr:\n%s", sig, stderr.String())
	}
	return child.ProcessState.ExitCode()
}

// TestS3CLIKillAndResume: `dlflow URL -o s3://bucket/key` in a child
// process is interrupted with SIGINT once a part is uploaded (exit 130:
// the pending upload and its state stay), then run again and killed with
// SIGKILL (nothing of it runs) once more parts are uploaded; the same
// command then resumes the pending upload, fetching only the missing
// parts, and completes the object. Endpoint and credentials come from the
// AWS_* variables, the part size from --set.
func TestS3CLIKillAndResume(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "cli")
	srv.SetEnv(t)
	c := srv.Client(t)
	const size, part = 48 << 20, 6 << 20
	src := startOrigin(t, origin.Options{Size: size, Seed: 4, RateLimit: 1 << 20})
	args := []string{src.URL(), "-o", "s3://cli/k/obj.bin", "--connections", "4",
		"--set", "stages.upload.config.part_size=6MiB", "--set", "stages.split.config.piece=6MiB"}

	u := s3Upload{t: t, c: c, part: part, args: args}
	if code := u.runUntil(1, os.Interrupt); code != exitInterrupted {
		t.Fatalf("after SIGINT: exit %d, want %d", code, exitInterrupted)
	}
	firstID, firstParts, _ := u.parts(true)
	if firstID == "" || firstParts < 1 {
		t.Fatalf("after SIGINT: pending upload %q with %d parts, want it kept with its parts", firstID, firstParts)
	}
	if _, err := c.StatObject(context.Background(), "cli", "k/obj.bin.dlflow-upload", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("after SIGINT: the state object is gone: %v", err)
	}

	// Two more parts, but never the last: with every part in, the upload
	// completes, and a loaded machine may let SIGINT leave most of them.
	want := min(firstParts+2, size/part-1)
	if want <= firstParts {
		t.Fatalf("after SIGINT: %d of %d parts already: none left to upload before kill -9", firstParts, size/part)
	}
	u.runUntil(want, os.Kill)
	id, count, present := u.parts(true)
	if id != firstID || count < want {
		t.Fatalf("after kill -9: upload %q with %d parts, want %q (resumed) with %d or more", id, count, firstID, want)
	}

	// The rerun logs everything, and takes the credentials from --set
	// (the same as the environment's): none is logged.
	src.ResetStats()
	res := runCLI(t, append(args, "--log-level", "debug",
		"--set", "stages.upload.config.access_key="+srv.AccessKey, "--set", "stages.upload.config.secret_key="+srv.SecretKey)...)
	if res.code != exitOK {
		t.Fatalf("rerun: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "resuming the pending upload") || strings.Contains(res.stderr+res.stdout, srv.SecretKey) {
		t.Fatalf("rerun: want a resume logged and no secret key; stderr:\n%s", res.stderr)
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
	t.Logf("%d parts after SIGINT, %d after kill -9; the rerun fetched %d bytes", firstParts, count, served)
	if ups, err := c.ListMultipartUploads(context.Background(), "cli", "k/obj.bin", "", "", "", 10); err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("pending uploads after completion: %+v, %v", ups.Uploads, err)
	}
}
