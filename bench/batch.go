package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// dlflowBatch is the command of a dlflow cell of the small scenario:
// args (get, and -c TOPOLOGY when one is given) -i LIST --jobs jobs --dir
// DIR -q --no-resume, then extra; LIST has a line "URL NAME" per file.
// No --metrics-json: the downloads of a batch run side by side and would
// share one set of per-stage counters.
func dlflowBatch(exe string, env, args []string, jobs int, extra []string) func(context.Context, job) (*exec.Cmd, error) {
	return func(ctx context.Context, j job) (*exec.Cmd, error) {
		var list strings.Builder
		for _, f := range j.files {
			fmt.Fprintf(&list, "%s %s\n", f.url, f.name)
		}
		if err := os.WriteFile(j.list, []byte(list.String()), 0o644); err != nil {
			return nil, err
		}
		args := append(slices.Clip(args), "-i", j.list, "--jobs", fmt.Sprint(jobs), "--dir", j.dir, "-q", "--no-resume")
		cmd := exec.CommandContext(ctx, exe, append(args, extra...)...)
		cmd.Env = env
		return cmd, nil
	}
}

// batchReferenceCells are the reference tools of the small scenario, where
// installed: curl as `xargs -P Jobs` runs it, and aria2c with its own list.
// axel takes one URL per run and no list, so it has no row.
func batchReferenceCells(o Options) []*cell {
	var cells []*cell
	jobs := fmt.Sprint(o.Jobs)
	newCell := func(tool string, command func(ctx context.Context, j job) (*exec.Cmd, error)) *cell {
		return &cell{
			Cell:    Cell{Scenario: ScenarioSmall, Origin: o.Origin, Tool: tool, Jobs: o.Jobs, Files: o.Files, Label: tool + " jobs=" + jobs},
			command: command,
		}
	}
	curl, errCurl := exec.LookPath("curl")
	xargs, errXargs := exec.LookPath("xargs")
	if errCurl == nil && errXargs == nil {
		cells = append(cells, newCell("curl", func(ctx context.Context, j job) (*exec.Cmd, error) {
			return curlBatch(ctx, xargs, curl, o.Jobs, j), nil
		}))
	}
	if aria, err := exec.LookPath("aria2c"); err == nil {
		cells = append(cells, newCell("aria2c", func(ctx context.Context, j job) (*exec.Cmd, error) {
			// Each URL, then its options on indented lines.
			var list strings.Builder
			for _, f := range j.files {
				fmt.Fprintf(&list, "%s\n  out=%s\n", f.url, f.name)
			}
			if err := os.WriteFile(j.list, []byte(list.String()), 0o644); err != nil {
				return nil, err
			}
			return exec.CommandContext(ctx, aria, "-i", j.list, "-j", jobs, "--file-allocation=none",
				"-q", "--allow-overwrite=true", "--auto-file-renaming=false", "-d", j.dir), nil
		}))
	}
	return cells
}

// curlBatch is `xargs -P jobs` running curl over the batch: at most jobs
// curl processes at once, each given its share of the URLs (a run of
// consecutive ones, the last share shorter) in one invocation, `-o` per
// URL, so that each reuses its one connection for all of them. The
// arguments reach xargs NUL-separated on its stdin, so no path is split.
func curlBatch(ctx context.Context, xargs, curl string, jobs int, j job) *exec.Cmd {
	share := (len(j.files) + jobs - 1) / jobs
	var args strings.Builder
	for _, f := range j.files {
		fmt.Fprintf(&args, "-o\x00%s\x00%s\x00", filepath.Join(j.dir, f.name), f.url)
	}
	cmd := exec.CommandContext(ctx, xargs, "-0", "-P", fmt.Sprint(jobs), "-n", fmt.Sprint(3*share), curl, "-sf")
	cmd.Stdin = strings.NewReader(args.String())
	return cmd
}
