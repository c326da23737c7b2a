package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/bench/weed"
)

// The object every run of the s3 scenarios writes, removed before and
// after each run.
const (
	s3Bucket = "dlflow-bench"
	s3Key    = "out.bin"
)

// isS3 reports whether scenario s uploads its outputs to a store.
func isS3(s Scenario) bool { return s == ScenarioS3 || s == ScenarioS3Cap }

// objectStore is the store of an s3 scenario, as a server sees it.
type objectStore interface {
	Remove(ctx context.Context, bucket, key string) error
	SHA256(ctx context.Context, bucket, key string) (string, int64, error)
	Vacuum(ctx context.Context) error
}

// startS3 starts the origin of an s3 scenario (plain, or every TCP
// connection capped at ConnRate for s3cap) and a weed in dir/weed, with
// the bench's bucket. weed's disk stays about one object's size: each
// run's object is removed after its check and the space compacted.
func startS3(o Options, scenario Scenario, dir string) (*server, error) {
	if _, err := weed.Binary(); err != nil {
		return nil, fmt.Errorf("the %s scenario needs an S3 store: %w", scenario, err)
	}
	size := int64(o.Size)
	opts := origin.Options{Size: size, Seed: seed}
	desc := fmt.Sprintf("built-in origin on 127.0.0.1, %v generated", o.Size)
	if scenario == ScenarioS3Cap {
		opts.ConnRateLimit = int64(o.ConnRate)
		desc += fmt.Sprintf(", %v/s per TCP connection", o.ConnRate)
	}
	srv, err := origin.Start(opts)
	if err != nil {
		return nil, err
	}
	storeDir := filepath.Join(dir, "weed")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		srv.Close()
		return nil, err
	}
	store, err := weed.Start(weed.Options{Dir: storeDir})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = store.MakeBucket(ctx, s3Bucket)
		cancel()
		if err != nil {
			store.Close()
		}
	}
	if err != nil {
		srv.Close()
		os.RemoveAll(storeDir)
		return nil, err
	}
	return &server{
		url: srv.URL(), sha: origin.SHA256Hex(size, seed),
		desc:   desc + fmt.Sprintf("; uploaded to s3://%s/%s of SeaweedFS (weed) on %s", s3Bucket, s3Key, store.Endpoint),
		object: "s3://" + s3Bucket + "/" + s3Key, env: store.Environ(), endpoint: store.Endpoint, store: store,
		reset: srv.ResetStats, stats: srv.Stats,
		close: func() { srv.Close(); store.Close(); os.RemoveAll(storeDir) },
	}, nil
}

// s3Topologies are the s3 scenarios' dlflow cells when no topology is
// given: `dlflow URL -o s3://...`, dlflow's own choice, which is s3.yaml,
// whose memory bound the cell reports (written to dir).
func s3Topologies(dir string) ([]topology, error) {
	ts, err := loadTopologies([]string{}, dir, "s3.yaml")
	if err != nil {
		return nil, err
	}
	return []topology{{name: "auto", readers: true, splitter: ts[0].splitter, boundOf: &ts[0]}}, nil
}

// clearObject removes the run's object and any upload of it left
// pending, and gives weed the space back.
func clearObject(ctx context.Context, store objectStore) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := store.Remove(ctx, s3Bucket, s3Key); err != nil {
		return fmt.Errorf("remove s3://%s/%s: %w", s3Bucket, s3Key, err)
	}
	if err := store.Remove(ctx, s3Bucket, s3Key+".dlflow-upload"); err != nil {
		return fmt.Errorf("remove the upload state of s3://%s/%s: %w", s3Bucket, s3Key, err)
	}
	return store.Vacuum(ctx)
}

// verifyObject reads the run's object back: its sha256 against want
// (a *mismatchError when it differs) and its size.
func verifyObject(ctx context.Context, store objectStore, want string) (string, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	got, n, err := store.SHA256(ctx, s3Bucket, s3Key)
	if err != nil {
		return "", 0, err
	}
	if want != "" && got != want {
		return got, n, &mismatchError{got: got, want: want}
	}
	return got, n, nil
}

// s5cmdCell is the reference row of the s3 scenarios, `curl URL | s5cmd
// pipe s3://BUCKET/KEY` (s5cmd's defaults: 5 parts of 50MB in flight),
// or a reason it does not run.
func s5cmdCell(o Options, scenario Scenario) (*cell, string) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		return nil, "curl is not installed"
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		return nil, "no sh to run the pipe"
	}
	s5, err := exec.LookPath("s5cmd")
	if err != nil {
		return nil, "s5cmd is not on PATH; install it with: " + S5cmdInstallHint
	}
	// sh has no pipefail: a curl cut short uploads fewer bytes, which the
	// object's check finds.
	return &cell{
		Cell: Cell{Scenario: scenario, Origin: o.Origin, Tool: "s5cmd", Label: "curl | s5cmd pipe", Durable: true},
		command: func(ctx context.Context, j job) (*exec.Cmd, error) {
			if j.object == "" {
				return nil, errors.New("s5cmd pipe: no object to write")
			}
			return exec.CommandContext(ctx, sh, "-c", `"$1" -sf "$2" | "$3" --endpoint-url "$4" pipe "$5"`,
				"sh", curl, j.url, s5, j.endpoint, j.object), nil
		},
	}, ""
}

// S5cmdInstallHint is how to install s5cmd: built in a module of its
// own, where `go install github.com/peak/s5cmd/v2@v2.3.0` failed on a
// machine whose module proxy refuses to list versions.
const S5cmdInstallHint = "d=$(mktemp -d) && cd $d && go mod init x && go get github.com/peak/s5cmd/v2@v2.3.0 && go build -o $(go env GOPATH)/bin/s5cmd github.com/peak/s5cmd/v2"

// s3ReferenceCells are the s3 scenarios' reference rows; a row that
// cannot run is reported through o.Progress with its reason.
func s3ReferenceCells(o Options, scenario Scenario) []*cell {
	c, why := s5cmdCell(o, scenario)
	if c == nil {
		if len(o.Tools) == 0 || strings.Contains(strings.Join(o.Tools, ","), "s5cmd") {
			o.Progress(Event{Kind: Skipped, Scenario: scenario, Cell: "curl | s5cmd pipe", Reason: why})
		}
		return nil
	}
	return []*cell{c}
}
