package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/pipeline"
)

// TopologyError is a topology that does not load, or does not wire with
// the options' overrides: a problem with the input, found before its
// cell runs.
type TopologyError struct {
	Path string // the topology file
	Err  error  // a *config.Error, or why the file could not be read
}

// Error is Err's message alone: a config error names the file already.
func (e *TopologyError) Error() string { return e.Err.Error() }
func (e *TopologyError) Unwrap() error { return e.Err }

// topology is a topology file and what the matrix needs to know about it.
type topology struct {
	name, path string
	splitter   string // id of its range.splitter stage, or ""
	readers    bool   // it has an http.reader stage
	// boundOf is the topology whose memory bound a topology without a
	// path (dlflow's own choice) reports, when the choice is known.
	boundOf *topology
}

// TopologyFile is a topology that the dlflow cells ran, as the results
// document records it: its name, path, sha256 and contents.
type TopologyFile struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	SHA256   string `json:"sha256"`
	Contents string `json:"contents"`
}

// file describes t for the results document.
func (t topology) file() TopologyFile {
	f := TopologyFile{Name: t.name, Path: t.path}
	if data, err := os.ReadFile(t.path); err == nil {
		sum := sha256.Sum256(data)
		f.SHA256, f.Contents = hex.EncodeToString(sum[:]), string(data)
	}
	return f
}

// loadTopologies resolves the topology files, writing the embedded
// examples to dir when none are given: those named, or
// examples.Topologies.
func loadTopologies(files []string, dir string, embedded ...string) ([]topology, error) {
	if len(embedded) == 0 {
		embedded = examples.Topologies
	}
	if len(files) == 0 {
		for _, name := range embedded {
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
	var out []topology
	for _, path := range files {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		cfg, err := config.Load(config.Options{File: abs, Environ: []string{}})
		if err != nil {
			return nil, &TopologyError{Path: abs, Err: err}
		}
		t := topology{name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), path: abs}
		for _, id := range cfg.StageIDs() {
			switch cfg.Stages[id].Type {
			case "range.splitter":
				t.splitter = id
			case "http.reader":
				t.readers = true
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// memoryBound is what validate prints for the topology with these
// overrides.
func (t topology) memoryBound(reg *pipeline.Registry, sets []string, connections int) (int64, error) {
	cfg, err := config.Load(config.Options{File: t.path, Environ: []string{}, Sets: sets})
	if err != nil {
		return 0, &TopologyError{Path: t.path, Err: err}
	}
	cfg.Output = "OUTPUT"
	nodes, err := cfg.Nodes(reg)
	if err != nil {
		return 0, &TopologyError{Path: t.path, Err: err}
	}
	if connections > 0 {
		config.SetConnections(reg, nodes, connections)
	}
	g, err := cfg.Build(reg, nodes)
	if err != nil {
		return 0, &TopologyError{Path: t.path, Err: err}
	}
	return int64(g.MemoryBound()), nil
}

// matrix expands the cells of one scenario: every topology x connections
// (when it has readers) x piece size (when it has a splitter) x
// combination of varied values, then the reference tools when asked. The
// small scenario's batch runs without -c (dlflow picks each file's
// topology) unless topologies were given.
func matrix(o Options, scenario Scenario, topologies []topology) ([]*cell, error) {
	var cells []*cell
	if (scenario == ScenarioSmall || scenario == ScenarioExtract) && len(o.Topologies) == 0 {
		topologies = []topology{{name: "auto"}}
	}
	variations := combinations(o.Vary)
	for _, t := range topologies {
		conns, pieces := []int{0}, []pipeline.ByteSize{0}
		if t.readers {
			conns = o.Connections
		}
		if t.splitter != "" && len(o.Pieces) > 0 {
			pieces = o.Pieces
		}
		for _, n := range conns {
			for _, p := range pieces {
				for _, vary := range variations {
					c, err := dlflowCell(o, scenario, t, n, p, vary)
					if err != nil {
						return nil, err
					}
					if scenario == ScenarioExtract {
						cells = append(cells, perFormat(c)...)
						continue
					}
					cells = append(cells, c)
					if scenario == ScenarioMirrors {
						cells = append(cells, withMirror(c, "+mirror", func(j job) string { return j.mirror }),
							withMirror(c, "+dead", func(j job) string { return j.dead }))
					}
				}
			}
		}
	}
	switch {
	case o.Compare && scenario == ScenarioExtract:
		cells = append(cells, chosenTools(o, pipeCells(o))...)
	case o.Compare && isS3(scenario):
		cells = append(cells, chosenTools(o, s3ReferenceCells(o, scenario))...)
	case o.Compare && scenario == ScenarioSmall:
		cells = append(cells, chosenTools(o, batchReferenceCells(o))...)
	case o.Compare:
		cells = append(cells, chosenTools(o, referenceCells(o, scenario))...)
	}
	return cells, nil
}

// dlflowCell is the cell of topology t with n connections (0: its own),
// piece size p (0: its own) and one combination of varied values, on top
// of Options.Sets. A topology without a path is dlflow's own choice.
func dlflowCell(o Options, scenario Scenario, t topology, n int, p pipeline.ByteSize, vary []setting) (*cell, error) {
	c := &cell{Cell: Cell{Scenario: scenario, Origin: o.Origin, Tool: "dlflow", Connections: n, Piece: int64(p)}}
	if t.path != "" {
		c.Topology = filepath.Base(t.path)
	}
	c.Label = t.name
	var extra []string
	if n > 0 {
		c.Label += fmt.Sprintf(" c=%d", n)
		extra = append(extra, "--connections", fmt.Sprint(n))
	}
	sets := slices.Clone(o.Sets)
	if p > 0 {
		c.Label += fmt.Sprintf(" piece=%v", p)
		sets = append(sets, fmt.Sprintf("stages.%s.config.piece=%v", t.splitter, p))
	}
	for _, v := range vary {
		c.Label += " " + v.label
		sets = append(sets, v.set)
	}
	for _, s := range sets {
		extra = append(extra, "--set", s)
	}
	c.Sets = sets
	c.Durable = fsyncs(t.path, sets)
	get := []string{"get"}
	if t.path != "" || t.boundOf != nil {
		bt := t
		if t.path == "" {
			bt = *t.boundOf
		}
		bound, err := bt.memoryBound(o.Registry, sets, n)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Label, err)
		}
		c.MemoryBound = bound
	}
	if t.path != "" {
		get = append(get, "-c", t.path)
	}
	exe, env := o.Executable, append(os.Environ(), o.Env...)
	if scenario == ScenarioSmall {
		// The bound is validate's for one download, not for a batch.
		c.MemoryBound, c.Jobs, c.Files = 0, o.Jobs, o.Files
		c.Label += fmt.Sprintf(" jobs=%d", o.Jobs)
		c.command = dlflowBatch(exe, env, get, o.Jobs, extra)
		return c, nil
	}
	// Every run is traced, for the distributions (time to first byte,
	// per-connection throughput); the timeline keeps the last run's.
	c.stageMetrics, c.traced, c.keepTrace = true, true, o.Timeline
	out := "-o"
	if scenario == ScenarioExtract {
		out = "--extract"
	}
	c.command = func(ctx context.Context, j job) (*exec.Cmd, error) {
		target := j.out
		if j.object != "" {
			target = j.object
		}
		args := append(slices.Clip(get), "--url", j.url, out, target, "-q", "--no-resume", "--metrics-json", j.metrics, "--trace-json", j.trace)
		cmd := exec.CommandContext(ctx, exe, append(args, extra...)...)
		cmd.Env = env
		return cmd, nil
	}
	return c, nil
}

// withMirror is cell c with --mirror URL added, the URL picked from the
// job; suffix ends its label.
func withMirror(c *cell, suffix string, url func(job) string) *cell {
	m := &cell{Cell: c.Cell, command: c.command, stageMetrics: c.stageMetrics, traced: c.traced, keepTrace: c.keepTrace}
	m.Label += " " + suffix
	m.Sets = slices.Clone(c.Sets)
	m.command = func(ctx context.Context, j job) (*exec.Cmd, error) {
		cmd, err := c.command(ctx, j)
		if err == nil {
			cmd.Args = append(cmd.Args, "--mirror", url(j))
		}
		return cmd, err
	}
	return m
}

// setting is one varied value: the --set it passes and the label it adds.
type setting struct {
	set, label string
}

// combinations are every combination of the varied values, in the order
// given (the last key varies fastest); with nothing varied it is one
// empty combination.
func combinations(varies []Vary) [][]setting {
	keys := make([]string, len(varies))
	for i, v := range varies {
		keys[i] = v.Key
	}
	labels := varyLabels(keys)
	combos := [][]setting{nil}
	for i, v := range varies {
		var next [][]setting
		for _, c := range combos {
			for _, val := range v.Values {
				next = append(next, append(slices.Clip(c), setting{set: v.Key + "=" + val, label: labels[i] + "=" + val}))
			}
		}
		combos = next
	}
	return combos
}

// varyLabels names each key by its last part, since fsync=false reads
// better in a table than stages.write.config.fsync=false; keys that share
// a last part keep their stage too (fetch.buffer, write.buffer).
func varyLabels(keys []string) []string {
	last := func(k string) string { return k[strings.LastIndexByte(k, '.')+1:] }
	count := map[string]int{}
	for _, k := range keys {
		count[last(k)]++
	}
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = last(k)
		if count[labels[i]] > 1 {
			if stage, _, ok := strings.Cut(strings.TrimPrefix(k, "stages."), "."); ok && strings.HasPrefix(k, "stages.") {
				labels[i] = stage + "." + labels[i]
			} else {
				labels[i] = k
			}
		}
	}
	return labels
}

// chosenTools keeps the reference cells of the tools o.Tools names (all
// when it names none), each with its version.
func chosenTools(o Options, cells []*cell) []*cell {
	cells = slices.DeleteFunc(cells, func(c *cell) bool {
		return len(o.Tools) > 0 && !slices.Contains(o.Tools, c.Tool)
	})
	for _, c := range cells {
		c.ToolVersion = toolVersion(c.Tool)
	}
	return cells
}

// ReferenceTools are the tools that --compare can add.
// "pipe" is the extract scenario's shell pipes, s5cmd the s3 scenarios';
// the others have no row there.
var ReferenceTools = []string{"curl", "curl+fsync", "aria2c", "axel", "oracle", "pipe", "s5cmd"}

// toolVersion is the first line of a reference tool's --version (axel's
// first line of -V, the oracle's curl's), or "" when it does not tell.
func toolVersion(tool string) string {
	flag := "--version"
	if tool == "pipe" {
		return pipeVersion()
	}
	if tool == "oracle" { // curls under a shell
		tool = "curl"
	}
	tool = strings.TrimSuffix(tool, "+fsync") // curl+fsync is curl's version
	switch tool {
	case "axel":
		flag = "-V"
	case "s5cmd":
		flag = "version"
	}
	path, err := exec.LookPath(tool)
	if err != nil {
		return ""
	}
	out, _ := exec.Command(path, flag).Output()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// fsyncOff matches a setting, or a line of a topology file, that turns a
// sink's fsync off.
var fsyncOff = regexp.MustCompile(`(?m)(^\s*|\.)fsync\s*[:=]\s*(false|0|no|off)\s*$`)

// fsyncs reports whether a dlflow cell makes its output durable: its
// sinks fsync by default; a --set or a line of the topology file may turn
// that off.
func fsyncs(topology string, sets []string) bool {
	for _, s := range sets {
		if fsyncOff.MatchString(s) {
			return false
		}
	}
	if topology != "" {
		if data, err := os.ReadFile(topology); err == nil && fsyncOff.Match(data) {
			return false
		}
	}
	return true
}

// referenceCells are curl (one stream), "curl + fsync" (curl, then an
// fsync of the file and its directory, timed together: what dlflow's
// durable rename costs on top), aria2c, axel and the oracle (one cell per
// number of connections each), when they are installed.
func referenceCells(o Options, scenario Scenario) []*cell {
	var cells []*cell
	if curl, err := exec.LookPath("curl"); err == nil {
		cells = append(cells, &cell{
			Cell: Cell{Scenario: scenario, Origin: o.Origin, Tool: "curl", Label: "curl"},
			command: func(ctx context.Context, j job) (*exec.Cmd, error) {
				return exec.CommandContext(ctx, curl, "-sf", "-o", j.out, j.url), nil
			},
		})
		sh, errSh := exec.LookPath("sh")
		sync, errSync := exec.LookPath("sync") // coreutils: sync FILE fsyncs FILE
		if errSh == nil && errSync == nil {
			cells = append(cells, &cell{
				Cell: Cell{Scenario: scenario, Origin: o.Origin, Tool: "curl+fsync", Label: "curl + fsync", Durable: true},
				command: func(ctx context.Context, j job) (*exec.Cmd, error) {
					return exec.CommandContext(ctx, sh, "-c", `"$1" -sf -o "$3" "$4" && "$2" "$3" "$(dirname "$3")"`,
						"sh", curl, sync, j.out, j.url), nil
				},
			})
		}
	}
	if aria, err := exec.LookPath("aria2c"); err == nil && scenario == ScenarioMirrors {
		// As aria2 users run it on a file with two sources.
		cells = append(cells, &cell{
			Cell: Cell{Scenario: scenario, Origin: o.Origin, Tool: "aria2c", Connections: 16, Label: "aria2c -x8 -s16 A B"},
			command: func(ctx context.Context, j job) (*exec.Cmd, error) {
				return exec.CommandContext(ctx, aria, "-x8", "-s16", "--file-allocation=none",
					"-q", "--allow-overwrite=true", "--auto-file-renaming=false",
					"-d", filepath.Dir(j.out), "-o", filepath.Base(j.out), j.url, j.mirror), nil
			},
		})
	}
	if aria, err := exec.LookPath("aria2c"); err == nil {
		for _, n := range referenceConnections(o.Connections, 16) { // aria2c's limit
			x := fmt.Sprint(n)
			cells = append(cells, &cell{
				Cell: Cell{Scenario: scenario, Origin: o.Origin, Tool: "aria2c", Connections: n, Label: "aria2c c=" + x},
				command: func(ctx context.Context, j job) (*exec.Cmd, error) {
					return exec.CommandContext(ctx, aria, "-x"+x, "-s"+x, "-k1M", "--file-allocation=none",
						"-q", "--allow-overwrite=true", "--auto-file-renaming=false",
						"-d", filepath.Dir(j.out), "-o", filepath.Base(j.out), j.url), nil
				},
			})
		}
	}
	if axel, err := exec.LookPath("axel"); err == nil {
		for _, n := range referenceConnections(o.Connections, math.MaxUint16) { // axel reads -n as an unsigned short
			cells = append(cells, axelCell(o.Origin, scenario, axel, n))
		}
	}
	return append(cells, oracleCells(o, scenario)...)
}

// axelCell runs axel with n connections (fewer on a small file: axel
// gives each at least 100KB). axel exits 0 when its download loop ends
// "ready", which includes some write errors and, on a server without
// ranges, a connection closed early; so only the sha256 check, as for every
// cell, tells a complete output. It resumes when OUT.st exists, and
// refuses to start when OUT exists without it: runOnce removes both first.
func axelCell(origin Origin, scenario Scenario, axel string, n int) *cell {
	x := fmt.Sprint(n)
	return &cell{
		Cell: Cell{Scenario: scenario, Origin: origin, Tool: "axel", Connections: n, Label: "axel c=" + x},
		command: func(ctx context.Context, j job) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, axel, "-n", x, "-q", "-o", j.out, j.url), nil
		},
	}
}

// referenceConnections are the numbers of connections of the
// multi-connection reference tools: conns, capped at limit and without
// duplicates, or 8 when the topologies' own are asked for.
func referenceConnections(conns []int, limit int) []int {
	if conns[0] == 0 {
		return []int{8}
	}
	var out []int
	for _, n := range conns {
		if n = min(max(n, 1), limit); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
