package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/cmd/internal/stagedoc"
	"github.com/dlflow/dlflow/examples/customstage"
	"github.com/dlflow/dlflow/pipeline"
)

// The rendering of the list, of a type's detail and of the Markdown
// reference is tested in package stagedoc; these tests hold the command:
// its flags, errors and exit codes.

// stagesRegistry holds throttle.tap alone, so that messages naming the
// known types can be pinned.
func stagesRegistry(t *testing.T) *pipeline.Registry {
	t.Helper()
	reg := pipeline.NewRegistry()
	if err := pipeline.Register(reg, customstage.Def); err != nil {
		t.Fatal(err)
	}
	return reg
}

func runStages(t *testing.T, reg *pipeline.Registry, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := stagesWith(reg, args, &stdout, &stderr)
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func wantResult(t *testing.T, got cliResult, code int, stdout, stderr string) {
	t.Helper()
	if got.code != code || got.stdout != stdout || got.stderr != stderr {
		t.Fatalf("got exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d\nstdout:\n%s\nstderr:\n%s",
			got.code, got.stdout, got.stderr, code, stdout, stderr)
	}
}

func TestStagesDescribe(t *testing.T) {
	wantResult(t, runStages(t, stagesRegistry(t), "throttle.tap"), exitOK, `throttle.tap: passes chunks through at no more than rate bytes per second (limit-rate)
  consumes bytes, produces same as input
  options:
    rate  size  (default 10MiB)  most bytes per second passed on, over all workers of the stage
`, "")
}

func TestStagesUnknownType(t *testing.T) {
	// Nothing is printed for the known type before the unknown one.
	wantResult(t, runStages(t, stagesRegistry(t), "throttle.tap", "throttle.top"), exitUsage, "",
		`dlflow: unknown stage type "throttle.top"; known types: throttle.tap`+"\n")

	res := runCLI(t, "stages", "nope")
	if res.code != exitUsage || res.stdout != "" || !strings.HasPrefix(res.stderr, `dlflow: unknown stage type "nope"; known types: coalesce.buffer, `) {
		t.Fatalf("dlflow stages nope: exit %d, stdout %q, stderr %q; want exit 2 and the known types", res.code, res.stdout, res.stderr)
	}
}

func TestStagesUsage(t *testing.T) {
	res := runStages(t, stagesRegistry(t), "--markdown", "throttle.tap")
	wantResult(t, res, exitUsage, "", "dlflow: --markdown documents every stage type; give no TYPE\n")

	res = runStages(t, stagesRegistry(t), "--bogus")
	wantResult(t, res, exitUsage, "", "dlflow: unknown flag: --bogus (see dlflow stages --help)\n")
	res = runStages(t, stagesRegistry(t), "--help")
	if res.code != exitOK || res.stderr != "" || !strings.Contains(res.stdout, "  dlflow stages --markdown > docs/CONFIG.md\n") {
		t.Fatalf("--help: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

// TestStagesCLI: the CLI lists the types of the default registry, each on
// one line. (A binary with a stage of its own is tested in
// examples/custombuild.)
func TestStagesCLI(t *testing.T) {
	res := runCLI(t, "stages")
	if res.code != exitOK || res.stderr != "" {
		t.Fatalf("dlflow stages: exit %d, stderr %q", res.code, res.stderr)
	}
	var want bytes.Buffer
	stagedoc.List(&want, pipeline.DefaultRegistry)
	if res.stdout != want.String() {
		t.Fatalf("dlflow stages:\n%s\nwant the list of the default registry:\n%s", res.stdout, want.String())
	}
	// Column widths follow the longest type name, which other packages
	// may change: compare lines with their runs of spaces squeezed.
	lines := map[string]bool{}
	for _, l := range strings.Split(res.stdout, "\n") {
		lines[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, want := range []string{
		"file.sink ordered bytes* nothing writes the download into OUTPUT.tmp and renames it to OUTPUT when complete",
		"* with the default config; depends on config (see dlflow stages TYPE)",
	} {
		if !lines[want] {
			t.Errorf("dlflow stages lacks the line\n%s\nin\n%s", want, res.stdout)
		}
	}

	res = runCLI(t, "stages", "file.sink")
	if res.code != exitOK || res.stderr != "" || !strings.HasPrefix(res.stdout, "file.sink: writes the download into OUTPUT.tmp") || !strings.Contains(res.stdout, "\n  options:\n    ") {
		t.Fatalf("dlflow stages file.sink: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}
