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
	"slices"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
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
	// Environment is where and when the bench ran; Topologies the files
	// the dlflow cells ran, with their contents.
	Environment Environment
	Topologies  []TopologyFile
	// Stopped says why runs were cut short (Options.MaxTime), or "".
	Stopped string
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
	res := &Result{Options: o, Servers: map[Scenario]string{}, Environment: captureEnvironment(dir)}
	for _, t := range topologies {
		res.Topologies = append(res.Topologies, t.file())
	}
	var deadline time.Time
	if o.MaxTime > 0 {
		deadline = res.Environment.Start.Add(o.MaxTime)
	}
	defer func() {
		res.Environment.LoadAfter = loadAverage()
		res.Environment.Seconds = time.Since(res.Environment.Start).Seconds()
	}()
	for _, scenario := range o.Scenarios {
		srv, err := startServer(o, scenario, dir)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", scenario, err)
		}
		ts := topologies
		if isS3(scenario) && len(o.Topologies) == 0 {
			ts, err = s3Topologies(dir)
		}
		var cells []*cell
		if err == nil {
			cells, err = matrix(o, scenario, ts)
		}
		if err == nil {
			res.Servers[scenario] = srv.desc
			o.Progress(Event{Kind: ScenarioStarted, Scenario: scenario, Server: srv.desc})
			var stopped bool
			stopped, err = runCells(ctx, o, srv, cells, dir, deadline)
			if stopped && res.Stopped == "" {
				res.Stopped = fmt.Sprintf("--max-time %v: runs after it were not started", o.MaxTime)
			}
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

// runCells runs every cell in rounds, round-robin (run 1 of every cell,
// then run 2, ...), so that a change in the machine's load spreads over all
// cells instead of skewing one; then it summarizes each cell. Each round
// starts one cell further, so that no cell always follows the same one: on
// a VM the host may still be flushing the previous run's writes after our
// sync, and that slowed whichever cell came right after the reference
// tools. The first o.Warmup rounds are not measured; then o.Runs rounds
// run, and more up to o.MaxRuns while a cell's median is not yet known to
// o.Target. No run starts after deadline (when not zero): stopped reports
// that some were left out.
func runCells(ctx context.Context, o Options, srv *server, cells []*cell, dir string, deadline time.Time) (stopped bool, err error) {
	if len(cells) == 0 {
		return false, nil
	}
	var perRound time.Duration
	for _, c := range cells {
		perRound += o.estimate(c.Scenario, c.Connections)
	}
	o.Progress(Event{Kind: Estimated, Scenario: cells[0].Scenario, Estimate: perRound * time.Duration(o.Warmup+o.Runs)})
	start := time.Now()
	for i := 0; i < o.Warmup+o.MaxRuns; i++ {
		if i > 0 {
			perRound = time.Since(start) / time.Duration(i)
			left := max(o.Warmup+o.Runs-i, 1)
			o.Progress(Event{Kind: Estimated, Scenario: cells[0].Scenario, Run: i, Estimate: perRound * time.Duration(left)})
		}
		measured := i - o.Warmup
		if measured >= o.Runs && precise(cells, o.Target) {
			break
		}
		for k := range cells {
			c := cells[(i+k)%len(cells)]
			if c.Failed() {
				continue
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				stopped = true
				break
			}
			ev := Event{Kind: RunStarted, Scenario: c.Scenario, Cell: c.Label, Run: measured + 1, Runs: o.Runs}
			if measured < 0 {
				ev.Kind, ev.Run, ev.Runs = WarmupStarted, i+1, o.Warmup
			}
			o.Progress(ev)
			sum, err := runOnce(ctx, c, srv, dir, measured < 0)
			if ctx.Err() != nil {
				return stopped, context.Cause(ctx)
			}
			if err != nil {
				c.Error = err.Error()
				if errors.As(err, new(*mismatchError)) || isTreeMismatch(err) {
					c.SHA256 = "failed"
				}
				continue
			}
			if srv.sha == "" && len(srv.files) == 0 && srv.tree == nil {
				c.SHA256 = "unverified"
				if i == 0 && c == cells[0] {
					o.Progress(Event{Kind: Unverified, Scenario: c.Scenario, SHA256: sum})
				}
			}
		}
		if stopped {
			break
		}
	}
	for _, c := range cells {
		c.summarize()
	}
	compareToFastestReference(cells)
	compareToPipes(cells)
	compareToBaseline(cells, o.Baseline)
	return stopped, nil
}

// precise reports whether every measured cell's median time is known to
// the target relative width.
func precise(cells []*cell, target float64) bool {
	for _, c := range cells {
		if !c.Failed() && len(c.Seconds) > 0 && summarize(c.Seconds).RelativeWidth() > target {
			return false
		}
	}
	return true
}

// compareToBaseline sets each measured cell's time ratio to the cell
// labelled baseline, when the scenario has it.
func compareToBaseline(cells []*cell, baseline string) {
	if baseline == "" {
		return
	}
	i := slices.IndexFunc(cells, func(c *cell) bool { return c.Label == baseline })
	if i < 0 || len(cells[i].Seconds) == 0 {
		return
	}
	base := cells[i].Seconds
	for _, c := range cells {
		if len(c.Seconds) == 0 {
			continue
		}
		r, lo, hi := 1.0, 1.0, 1.0 // the baseline itself
		if c != cells[i] {
			r, lo, hi = bootstrapRatio(c.Seconds, base)
		}
		c.VsBaseline = &Ratio{Baseline: baseline, Ratio: r, Low: lo, High: hi}
	}
}

// compareToFastestReference sets each measured cell's time over that of
// the fastest reference tool at the same number of connections (one for
// a single stream), or of the fastest at any number when none has the
// cell's: dlflow with 2 connections is not compared to axel with 16 when
// axel ran with 2 too.
func compareToFastestReference(cells []*cell) {
	type key struct {
		format string // extract: the archive's; a cell is compared within its format
		conns  int    // -1: any
	}
	fastest := map[key]float64{}
	for _, c := range cells {
		if c.Tool == "dlflow" || c.Failed() || c.MedianSeconds == 0 {
			continue
		}
		for _, k := range []key{{c.Format, -1}, {c.Format, max(c.Connections, 1)}} {
			if f, ok := fastest[k]; !ok || c.MedianSeconds < f {
				fastest[k] = c.MedianSeconds
			}
		}
	}
	for _, c := range cells {
		if c.Failed() || c.MedianSeconds == 0 {
			continue
		}
		ref, ok := fastest[key{c.Format, max(c.Connections, 1)}]
		if !ok {
			ref, ok = fastest[key{c.Format, -1}]
		}
		if ok {
			c.VsFastestReference = c.MedianSeconds / ref
		}
	}
}

// runOnce runs a cell once from a clean slate in dir, checks the
// output's sha256 (every file's, for a batch) and records the
// measurements; it returns the output's sha256 ("" for a batch).
func runOnce(ctx context.Context, c *cell, srv *server, dir string, warmup bool) (string, error) {
	if srv.tree != nil {
		return "", runExtractOnce(ctx, c, srv, dir, warmup)
	}
	j := job{
		url: srv.url, mirror: srv.mirror, dead: srv.dead, out: filepath.Join(dir, "out.bin"), metrics: filepath.Join(dir, "metrics.json"), trace: filepath.Join(dir, "trace.json"),
		files: srv.files, dir: filepath.Join(dir, "batch.out"), list: filepath.Join(dir, "batch.list"),
		object: srv.object, env: srv.env, endpoint: srv.endpoint,
	}
	defer func() { removeFiles(runFiles(j)) }() // the oracle's parts exist only after the run
	if err := removeFiles(runFiles(j)); err != nil {
		return "", fmt.Errorf("clean up before the run: %w", err)
	}
	if len(j.files) > 0 {
		if err := os.Mkdir(j.dir, 0o755); err != nil {
			return "", err
		}
	}
	if srv.store != nil {
		if err := clearObject(ctx, srv.store); err != nil {
			return "", fmt.Errorf("clean up before the run: %w", err)
		}
		defer clearObject(context.WithoutCancel(ctx), srv.store)
	}
	cmd, err := c.command(ctx, j)
	if err != nil {
		return "", err
	}
	if len(j.env) > 0 {
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, j.env...)
	}
	if c.Command == nil {
		c.Command = commandLine(cmd.Args)
	}
	srv.reset()
	load := loadAverage()
	// Reference tools do not fsync: without a sync their dirty pages
	// would be written back during the next row's run.
	syncDisks()
	m, err := measure(cmd, j.out+".rss")
	if err != nil {
		return "", err
	}
	var stats *origin.Stats
	if srv.stats != nil {
		st := srv.stats()
		stats = &st
	}
	if len(j.files) > 0 {
		bytes, err := verifyBatch(j.dir, j.files)
		if err != nil {
			return "", err
		}
		return "", c.record(m, bytes, stats, j.metrics, j.trace, load, warmup)
	}
	sum, size, err := verifyOutput(ctx, srv, j.out)
	if err != nil {
		return sum, err
	}
	return sum, c.record(m, size, stats, j.metrics, j.trace, load, warmup)
}

// verifyOutput checks a run's output against the server's sha256: the
// file at out, or the object in the store of an s3 scenario. It returns
// the output's sha256 and size.
func verifyOutput(ctx context.Context, srv *server, out string) (string, int64, error) {
	if srv.store != nil {
		return verifyObject(ctx, srv.store, srv.sha)
	}
	sum, err := verify(out, srv.sha)
	if err != nil {
		return sum, 0, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return sum, 0, err
	}
	return sum, fi.Size(), nil
}

// commandLine is a run's argv as the results document records it: the
// executable by its base name, so that the document does not depend on
// where the binary was built.
func commandLine(args []string) []string {
	out := slices.Clone(args)
	if len(out) > 0 {
		out[0] = filepath.Base(out[0])
	}
	return out
}

// runFiles are the files a run may leave behind: the output, dlflow's
// temporary file and its resume state, aria2c's control file, axel's state
// file, GNU time's report, the per-stage metrics and the oracle's parts;
// for a batch, the directory of its outputs and the list.
func runFiles(j job) []string {
	files := []string{j.out, j.out + ".tmp", j.out + ".tmp.state", j.out + ".aria2", j.out + ".st", j.out + ".rss", j.metrics, j.trace, j.dir, j.list}
	parts, _ := filepath.Glob(j.out + ".part*")
	return append(files, parts...)
}

// removeFiles removes the files (and directories, with what they hold)
// that exist. It runs before every run as well as after: a leftover of an
// interrupted bench in Dir would make aria2c resume from its control file,
// and axel resume from its state file or, with the output alone, refuse to
// start ("No state file, cannot resume!").
func removeFiles(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
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

// verifyBatch checks the sha256 of every file of a batch in dir and
// returns their total size. An error names the first file that is
// missing or wrong (a *mismatchError for a wrong one).
func verifyBatch(dir string, files []batchFile) (int64, error) {
	var total int64
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if _, err := verify(path, f.sha); err != nil {
			if errors.As(err, new(*mismatchError)) {
				return 0, fmt.Errorf("%s: %w", f.name, err)
			}
			return 0, err // it names the path
		}
		fi, err := os.Stat(path)
		if err != nil {
			return 0, err
		}
		total += fi.Size()
	}
	return total, nil
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
