package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dlflow/dlflow/bench/nginx"
	"github.com/dlflow/dlflow/bench/origin"
)

// startExtractServer builds the extract scenario's archives in dir (or
// reuses them) and serves them: the built-in origin, one server per
// format, each with the archive in memory; or nginx, from dir.
func startExtractServer(o Options, dir string) (*server, error) {
	src, err := chooseTree(o)
	if err != nil {
		return nil, err
	}
	a, err := buildArchives(src, filepath.Join(dir, "extract-archives"))
	if err != nil {
		return nil, fmt.Errorf("archives of the %s: %w", src.desc, err)
	}
	sizes := make([]string, 0, len(ArchiveFormats))
	for _, f := range ArchiveFormats {
		fi, err := os.Stat(a.files[f])
		if err != nil {
			return nil, err
		}
		sizes = append(sizes, fmt.Sprintf(".%s %v", f, mib(fi.Size())))
	}
	s := &server{tree: a.tree, archives: map[string]string{}, reset: func() {}}
	what := fmt.Sprintf("%s, %d members, served as %s", a.desc, len(a.tree), strings.Join(sizes, " and "))
	if o.Origin == OriginNginx {
		ngx, err := nginx.Start(nginx.Options{Root: a.dir})
		if err != nil {
			return nil, err
		}
		for _, f := range ArchiveFormats {
			s.archives[f] = ngx.BaseURL() + "/" + archiveName(f)
		}
		s.desc, s.close = "nginx on 127.0.0.1: "+what, func() { ngx.Close() }
		return s, nil
	}
	var servers []*origin.Server
	s.close = func() {
		for _, srv := range servers {
			srv.Close()
		}
	}
	for _, f := range ArchiveFormats {
		data, err := os.ReadFile(a.files[f])
		if err != nil {
			s.close()
			return nil, err
		}
		srv, err := origin.Start(origin.Options{Size: int64(len(data)), Seed: seed, Path: "/" + archiveName(f), Content: func(uint64) []byte { return data }})
		if err != nil {
			s.close()
			return nil, err
		}
		servers = append(servers, srv)
		s.archives[f] = srv.URL()
	}
	s.desc = "built-in origin on 127.0.0.1: " + what
	s.reset = func() {
		for _, srv := range servers {
			srv.ResetStats()
		}
	}
	s.stats = func() origin.Stats {
		var st origin.Stats
		for _, srv := range servers {
			one := srv.Stats()
			st.Requests, st.ConnsAccepted = st.Requests+one.Requests, st.ConnsAccepted+one.ConnsAccepted
			st.MaxOpenConns = max(st.MaxOpenConns, one.MaxOpenConns)
		}
		return st
	}
	return s, nil
}

// perFormat is the dlflow cell c once per archive format, each labelled
// with its format's extension.
func perFormat(c *cell) []*cell {
	var out []*cell
	for _, f := range ArchiveFormats {
		k := &cell{Cell: c.Cell, command: c.command, stageMetrics: c.stageMetrics, traced: c.traced, keepTrace: c.keepTrace}
		k.Format, k.Label = f, c.Label+" ."+f
		k.Sets = slices.Clone(c.Sets)
		out = append(out, k)
	}
	return out
}

// pipe is a shell pipe that the extract scenario compares dlflow to.
type pipe struct {
	label, format string
	script        string // $1: the URL, $2: the directory, made first
	needs         []string
}

// pipes are the reference rows of the extract scenario, as issue #20
// names them: each makes the directory, unpacks into it from curl, then
// syncs, timed as a whole shell command. tar -z and --zstd run gzip -d
// and zstd -d themselves.
var pipes = []pipe{
	{"curl | tar xz", FormatGzip, `curl -sf "$1" | tar xzf - -C "$2" && sync`, []string{"curl", "tar", "gzip", "sync"}},
	{"curl | tar --zstd -x", FormatZstd, `curl -sf "$1" | tar --zstd -xf - -C "$2" && sync`, []string{"curl", "tar", "zstd", "sync"}},
	{"curl | zstd -d | tar x", FormatZstd, `curl -sf "$1" | zstd -dq | tar xf - -C "$2" && sync`, []string{"curl", "tar", "zstd", "sync"}},
}

// pipeCells are the pipes whose tools are installed, as the reference
// tool "pipe".
func pipeCells(o Options) []*cell {
	var cells []*cell
	for _, p := range pipes {
		if slices.ContainsFunc(append([]string{"sh", "mkdir"}, p.needs...), func(tool string) bool {
			_, err := exec.LookPath(tool)
			return err != nil
		}) {
			continue
		}
		script := `mkdir "$2" && ` + p.script
		cells = append(cells, &cell{
			Cell: Cell{Scenario: ScenarioExtract, Origin: o.Origin, Tool: "pipe", Label: p.label, Format: p.format, Durable: true},
			command: func(ctx context.Context, j job) (*exec.Cmd, error) {
				return exec.CommandContext(ctx, "sh", "-c", script, "pipe", j.url, j.out), nil
			},
		})
	}
	return cells
}

// pipeVersion is the versions of tar and zstd, the pipes' tools.
func pipeVersion() string {
	var vs []string
	for _, tool := range []string{"tar", "zstd"} {
		if v := toolVersion(tool); v != "" {
			vs = append(vs, v)
		}
	}
	return strings.Join(vs, "; ")
}

// runExtractOnce is runOnce for the extract scenario: the cell unpacks
// its format's archive into a fresh directory, whose tree is checked
// against the source's.
func runExtractOnce(ctx context.Context, c *cell, srv *server, dir string, warmup bool) error {
	j := job{url: srv.archives[c.Format], out: filepath.Join(dir, "extract.out"), metrics: filepath.Join(dir, "metrics.json"), trace: filepath.Join(dir, "trace.json")}
	leftovers := func() []string {
		// dlflow's temporary directories are siblings of the output.
		tmp, _ := filepath.Glob(filepath.Join(dir, ".extract.out*"))
		return append(runFiles(j), tmp...)
	}
	defer func() { removeFiles(leftovers()) }()
	if err := removeFiles(leftovers()); err != nil {
		return fmt.Errorf("clean up before the run: %w", err)
	}
	cmd, err := c.command(ctx, j)
	if err != nil {
		return err
	}
	if c.Command == nil {
		c.Command = commandLine(cmd.Args)
	}
	srv.reset()
	load := loadAverage()
	syncDisks() // the previous run's removal, written back before this one
	m, err := measure(cmd, j.out+".rss")
	if err != nil {
		return err
	}
	var stats *origin.Stats
	if srv.stats != nil {
		st := srv.stats()
		stats = &st
	}
	bytes, err := verifyTree(j.out, srv.tree)
	if err != nil {
		return err
	}
	return c.record(m, bytes, stats, j.metrics, j.trace, load, warmup)
}

// compareToPipes sets each dlflow cell's speed against every pipe of its
// format: the pipe's median time over the cell's (1.15: the cell takes
// 13% less time than the pipe).
func compareToPipes(cells []*cell) {
	for _, c := range cells {
		if c.Tool != "dlflow" || c.Failed() || c.MedianSeconds == 0 {
			continue
		}
		for _, p := range cells {
			if p.Tool == "pipe" && p.Format == c.Format && !p.Failed() && p.MedianSeconds > 0 {
				c.VsPipes = append(c.VsPipes, PipeRatio{Pipe: p.Label, Speed: p.MedianSeconds / c.MedianSeconds})
			}
		}
	}
}

// PipeRatio is a dlflow cell's speed against one shell pipe of the
// extract scenario: the pipe's median time over the cell's, so that 1 or
// more is as fast as the pipe or faster.
type PipeRatio struct {
	Pipe  string  `json:"pipe"`
	Speed float64 `json:"speed"`
}

// pipesText is a cell's speeds against the pipes, for the table.
func pipesText(rs []PipeRatio) string {
	if len(rs) == 0 {
		return "-"
	}
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%.2fx %s", r.Speed, r.Pipe))
	}
	return strings.Join(parts, ", ")
}

// isTreeMismatch reports whether err is an extracted tree unlike the
// source's.
func isTreeMismatch(err error) bool { return errors.As(err, new(*treeMismatchError)) }
