package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Result is what a bench measured.
type Result struct {
	// Options are those Run ran with, the defaults filled in.
	Options Options
	// Cells are every cell, scenario by scenario in the order of
	// Options.Scenarios, each scenario's in matrix order.
	Cells []Cell
	// Servers describe what each scenario's cells downloaded from, such as
	// "built-in origin on 127.0.0.1, 1MiB generated".
	Servers map[Scenario]string
}

// Failed reports whether any cell failed.
func (r *Result) Failed() bool {
	for i := range r.Cells {
		if r.Cells[i].Failed() {
			return true
		}
	}
	return false
}

// Run runs the bench that opts describe and returns its cells. It blocks
// until every run is done, each run a child process that it waits for. A
// cell whose run fails (a download error, a wrong sha256) records the
// error and runs no more, and the bench goes on: that is not an error of
// Run. Run fails on options it cannot run (a *TopologyError for a
// topology that does not load or wire), an origin that does not start,
// and when ctx ends: it then stops the running child and returns
// context.Cause(ctx) as it is. On error the Result is nil.
func Run(ctx context.Context, opts Options) (*Result, error) {
	o, err := opts.normalized()
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "dlflow-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	topologies, err := loadTopologies(o.Topologies, dir)
	if err != nil {
		return nil, err
	}
	res := &Result{Options: o, Servers: map[Scenario]string{}}
	for _, scenario := range o.Scenarios {
		srv, err := startServer(o, scenario, dir)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", scenario, err)
		}
		cells, err := matrix(o, scenario, topologies)
		if err == nil {
			res.Servers[scenario] = srv.desc
			o.Progress(Event{Kind: ScenarioStarted, Scenario: scenario, Server: srv.desc})
			err = runCells(ctx, o, srv, cells, dir)
		}
		srv.close()
		if err != nil {
			return nil, err
		}
		for _, c := range cells {
			res.Cells = append(res.Cells, c.Cell)
		}
	}
	return res, nil
}

// runCells runs every cell o.Runs times, round-robin (run 1 of every cell,
// then run 2, ...), so that a change in the machine's load spreads over all
// cells instead of skewing one; then it summarizes each cell. Each round
// starts one cell further, so that no cell always follows the same one: on
// a VM the host may still be flushing the previous run's writes after our
// sync, and that slowed whichever cell came right after the reference
// tools.
func runCells(ctx context.Context, o Options, srv *server, cells []*cell, dir string) error {
	out := filepath.Join(dir, "out.bin")
	metricsFile := filepath.Join(dir, "metrics.json")
	for i := range o.Runs {
		for k := range cells {
			c := cells[(i+k)%len(cells)]
			if c.Failed() {
				continue
			}
			o.Progress(Event{Kind: RunStarted, Scenario: c.Scenario, Cell: c.Label, Run: i + 1, Runs: o.Runs})
			sum, err := runOnce(ctx, c, srv, out, metricsFile)
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if err != nil {
				c.Error = err.Error()
				if errors.As(err, new(*mismatchError)) {
					c.SHA256 = "failed"
				}
				continue
			}
			if srv.sha == "" {
				c.SHA256 = "unverified"
				if i == 0 && c == cells[0] {
					o.Progress(Event{Kind: Unverified, Scenario: c.Scenario, SHA256: sum})
				}
			}
		}
	}
	for _, c := range cells {
		c.summarize()
	}
	return nil
}

// runOnce runs a cell once from a clean slate, checks the output's sha256
// and records the measurements; it returns the output's sha256.
func runOnce(ctx context.Context, c *cell, srv *server, out, metricsFile string) (string, error) {
	files := runFiles(out, metricsFile)
	defer removeFiles(files)
	if err := removeFiles(files); err != nil {
		return "", fmt.Errorf("clean up before the run: %w", err)
	}
	srv.reset()
	// Reference tools do not fsync: without a sync their dirty pages
	// would be written back during the next row's run.
	syncDisks()
	m, err := measure(c.command(ctx, srv.url, out, metricsFile), out+".rss")
	if err != nil {
		return "", err
	}
	sum, err := verify(out, srv.sha)
	if err != nil {
		return sum, err
	}
	return sum, c.record(m, out, metricsFile)
}

// runFiles are the files a run may leave behind: the output, dlflow's
// temporary file and its resume state, aria2c's control file, axel's state
// file, GNU time's report and the per-stage metrics.
func runFiles(out, metricsFile string) []string {
	return []string{out, out + ".tmp", out + ".tmp.state", out + ".aria2", out + ".st", out + ".rss", metricsFile}
}

// removeFiles removes the files that exist. It runs before every run as
// well as after: a leftover of an interrupted bench in Dir would make
// aria2c resume from its control file, and axel resume from its state file
// or, with the output alone, refuse to start ("No state file, cannot
// resume!").
func removeFiles(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mismatchError is an output that hashed to something else than expected.
type mismatchError struct{ got, want string }

func (e *mismatchError) Error() string {
	return fmt.Sprintf("sha256 mismatch: got %s, want %s", e.got, e.want)
}

// verify returns the hex sha256 of the file at path, and a *mismatchError
// when want is not "" and differs.
func verify(path, want string) (got string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	got = hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return got, &mismatchError{got: got, want: want}
	}
	return got, nil
}
