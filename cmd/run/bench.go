package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/internal/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// benchSeed picks the generated content; any value works.
const benchSeed = 0xd1f10

// cliEnv, when set to 1, makes a binary that embeds the CLI (the test
// binary, too) behave as the CLI; bench runs each download as such a child
// process so that its peak RSS and CPU time are its own.
const cliEnv = "RUN_DLFLOW_CLI"

type benchFlags struct {
	size        pipeline.ByteSize
	runs        int
	connections int
	rate        pipeline.ByteSize
	dir         string
	configs     []string
	json        bool
}

// benchRow is one topology's measurements.
type benchRow struct {
	Topology    string    `json:"topology"`
	Runs        int       `json:"runs"`
	Seconds     []float64 `json:"seconds"`
	MedianMBps  float64   `json:"median_mbps"`
	MinMBps     float64   `json:"min_mbps"`
	MaxMBps     float64   `json:"max_mbps"`
	PeakRSS     int64     `json:"peak_rss_bytes"`
	CPUSeconds  float64   `json:"cpu_seconds_median"`
	MemoryBound int64     `json:"memory_bound_bytes"`
	Verified    bool      `json:"sha256_ok"`
	Error       string    `json:"error,omitempty"`
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := benchFlags{size: 256 << 20}
	fs := pflag.NewFlagSet("dlflow bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	size := fs.String("size", "256MiB", "size of the generated file")
	fs.IntVar(&f.runs, "runs", 3, "runs per topology; the table shows the median and min-max")
	fs.IntVar(&f.connections, "connections", 8, "range readers for ranged topologies")
	rate := fs.String("rate", "0", "per-connection rate limit of the origin, e.g. 25MiB (0: none)")
	fs.StringVar(&f.dir, "dir", "", "directory for the outputs (default: a temporary directory)")
	fs.StringArrayVarP(&f.configs, "config", "c", nil, "topology to run (repeatable; default: every example)")
	fs.BoolVar(&f.json, "json", false, "print the results as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dlflow bench [flags]

Starts a built-in origin on 127.0.0.1 serving generated data, downloads it
with each topology (the examples by default) as a child process, checks every
output's sha256, and prints time, throughput, peak RSS and CPU time.
Needs no network.

Examples:
  dlflow bench
  dlflow bench --size 1GiB --runs 5 -c examples/ranged.yaml -c examples/stream.yaml
  dlflow bench --rate 25MiB --connections 8

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var err error
	if f.size, err = pipeline.ParseByteSize(*size); err != nil {
		return fail(stderr, usagef("--size: %w", err))
	}
	if f.rate, err = pipeline.ParseByteSize(*rate); err != nil {
		return fail(stderr, usagef("--rate: %w", err))
	}
	if f.runs < 1 {
		return fail(stderr, usagef("--runs must be at least 1"))
	}
	rows, err := runBench(ctx, f, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rows)
	} else {
		printBench(stdout, f, rows)
	}
	for _, r := range rows {
		if !r.Verified {
			return exitFailed
		}
	}
	return exitOK
}

func runBench(ctx context.Context, f benchFlags, progress io.Writer) ([]benchRow, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir := f.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "dlflow-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	topologies, err := benchTopologies(f.configs, dir)
	if err != nil {
		return nil, err
	}
	srv, err := origin.Start(origin.Options{Size: int64(f.size), Seed: benchSeed, RateLimit: int64(f.rate)})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	want := origin.SHA256Hex(int64(f.size), benchSeed)

	var rows []benchRow
	for _, t := range topologies {
		row := benchRow{Topology: t.name, Runs: f.runs, Verified: true, MemoryBound: t.bound}
		var mbps, cpu []float64
		for i := range f.runs {
			fmt.Fprintf(progress, "bench: %s run %d/%d\n", t.name, i+1, f.runs)
			out := filepath.Join(dir, "out.bin")
			m, err := benchOnce(ctx, exe, t.path, srv.URL(), out, f.connections)
			if err == nil {
				err = verify(out, want)
			}
			os.Remove(out)
			if err != nil {
				row.Verified, row.Error = false, err.Error()
				break
			}
			row.Seconds = append(row.Seconds, m.wall.Seconds())
			mbps = append(mbps, float64(f.size)/m.wall.Seconds()/1e6)
			cpu = append(cpu, m.cpu.Seconds())
			row.PeakRSS = max(row.PeakRSS, m.maxRSS)
		}
		if len(mbps) > 0 {
			row.MedianMBps, row.MinMBps, row.MaxMBps = median(mbps), slices.Min(mbps), slices.Max(mbps)
			row.CPUSeconds = median(cpu)
		}
		rows = append(rows, row)
		if ctx.Err() != nil {
			return rows, context.Cause(ctx)
		}
	}
	return rows, nil
}

type benchTopology struct {
	name, path string
	bound      int64
}

// benchTopologies resolves the topology files, writing the embedded
// examples to dir when none are given, and computes each memory bound.
func benchTopologies(files []string, dir string) ([]benchTopology, error) {
	var out []benchTopology
	if len(files) == 0 {
		for _, name := range examples.Topologies {
			data, err := examples.FS.ReadFile(name)
			if err != nil {
				return nil, err
			}
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return nil, err
			}
			files = append(files, path)
		}
	}
	for _, path := range files {
		cfg, err := config.Load(config.Options{File: path, Environ: []string{}})
		if err != nil {
			return nil, configError(err)
		}
		cfg.Output = "OUTPUT"
		g, err := cfg.Graph(pipeline.DefaultRegistry)
		if err != nil {
			return nil, configError(err)
		}
		out = append(out, benchTopology{name: filepath.Base(path), path: path, bound: int64(g.MemoryBound())})
	}
	return out, nil
}

type measurement struct {
	wall, cpu time.Duration
	maxRSS    int64
}

func benchOnce(ctx context.Context, exe, topology, url, out string, connections int) (measurement, error) {
	cmd := exec.CommandContext(ctx, exe, "get", "-c", topology, "--url", url, "-o", out, "-q")
	if connections > 0 && hasReader(topology) {
		cmd.Args = append(cmd.Args, "--connections", fmt.Sprint(connections))
	}
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %v: %s", filepath.Base(topology), err, strings.TrimSpace(stderr.String()))
	}
	m := measurement{wall: wall}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.maxRSS = ru.Maxrss << 10 // Linux reports KiB
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return m, nil
}

func hasReader(topology string) bool {
	data, err := os.ReadFile(topology)
	return err == nil && strings.Contains(string(data), "http.reader")
}

func verify(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("sha256 mismatch: got %s, want %s", got, want)
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func printBench(w io.Writer, f benchFlags, rows []benchRow) {
	fmt.Fprintf(w, "origin: 127.0.0.1, %v generated", f.size)
	if f.rate > 0 {
		fmt.Fprintf(w, ", %v/s per connection", f.rate)
	}
	fmt.Fprintf(w, "; %d runs per topology, %d connections for ranged\n\n", f.runs, f.connections)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "topology\tmedian time\tMB/s median (min-max)\tpeak RSS\tCPU s\tbuffer bound\tsha256")
	for _, r := range rows {
		if !r.Verified {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t%v\tFAILED: %s\n", r.Topology, pipeline.ByteSize(r.MemoryBound), r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2fs\t%.0f (%.0f-%.0f)\t%v\t%.2f\t%v\tok\n", r.Topology, median(r.Seconds),
			r.MedianMBps, r.MinMBps, r.MaxMBps, pipeline.ByteSize(r.PeakRSS), r.CPUSeconds, pipeline.ByteSize(r.MemoryBound))
	}
	tw.Flush()
}

func sha256Sum(data []byte) [32]byte { return sha256.Sum256(data) }
