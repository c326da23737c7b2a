package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/examples/customstage"
	"github.com/dlflow/dlflow/pipeline"
)

// modeConfig is the config of mode.sink, a test stage type whose input
// depends on its config, with a nested section and a list.
type modeConfig struct {
	Mode    string        `koanf:"mode" help:"ordered | any"`
	Tags    []string      `koanf:"tags" help:"labels"`
	Timeout time.Duration `koanf:"timeout" help:"how long to wait"`
	Limits  struct {
		Max pipeline.ByteSize `koanf:"max" help:"largest chunk"`
	} `koanf:"limits"`
}

// stagesRegistry holds throttle.tap and mode.sink, so the output of the
// stages command can be pinned whatever types the built-in packages add.
func stagesRegistry(t *testing.T) *pipeline.Registry {
	t.Helper()
	reg := pipeline.NewRegistry()
	if err := pipeline.Register(reg, customstage.Def); err != nil {
		t.Fatal(err)
	}
	def := pipeline.Def[modeConfig]{
		Type: "mode.sink", Summary: "takes bytes in the order its mode asks for",
		Consumes: pipeline.Bytes, Produces: pipeline.None,
		Defaults: modeConfig{Mode: "ordered", Timeout: 3 * time.Second},
		New: func(modeConfig) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(context.Context, *pipeline.Env, pipeline.IO) error { return nil }), nil
		},
		Ports: func(c modeConfig) (pipeline.Flow, pipeline.Flow) {
			if c.Mode == "ordered" {
				return pipeline.OrderedBytes, pipeline.None
			}
			return pipeline.Bytes, pipeline.None
		},
	}
	if err := pipeline.Register(reg, def); err != nil {
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

func TestStagesList(t *testing.T) {
	wantResult(t, runStages(t, stagesRegistry(t)), exitOK, `TYPE          CONSUMES        PRODUCES       SUMMARY
mode.sink     ordered bytes*  nothing        takes bytes in the order its mode asks for
throttle.tap  bytes           same as input  passes chunks through at no more than rate bytes per second (limit-rate)

* with the default config; depends on config (see dlflow stages TYPE)
`, "")
}

func TestStagesDescribe(t *testing.T) {
	wantResult(t, runStages(t, stagesRegistry(t), "throttle.tap", "mode.sink"), exitOK, `throttle.tap: passes chunks through at no more than rate bytes per second (limit-rate)
  consumes bytes, produces same as input
  options:
    rate  size  (default 10MiB)  most bytes per second passed on, over all workers of the stage
mode.sink: takes bytes in the order its mode asks for
  consumes ordered bytes, produces nothing (with the default config; depends on config)
  options:
    mode        string          (default ordered)  ordered | any
    tags        list of string  (default none)     labels
    timeout     duration        (default 3s)       how long to wait
    limits.max  size            (default 0B)       largest chunk
`, "")
}

func TestStagesUnknownType(t *testing.T) {
	// Nothing is printed for the known type before the unknown one.
	wantResult(t, runStages(t, stagesRegistry(t), "throttle.tap", "throttle.top"), exitUsage, "",
		`dlflow: unknown stage type "throttle.top"; known types: mode.sink, throttle.tap`+"\n")

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
	if res.code != exitOK || res.stdout != "" || !strings.Contains(res.stderr, "  dlflow stages --markdown > docs/CONFIG.md\n") {
		t.Fatalf("--help: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

// The CLI knows throttle.tap through the blank import in plugins.go, and
// lists every registered type, each on one line.
func TestStagesCLI(t *testing.T) {
	res := runCLI(t, "stages")
	if res.code != exitOK || res.stderr != "" {
		t.Fatalf("dlflow stages: exit %d, stderr %q", res.code, res.stderr)
	}
	// Column widths follow the longest type name, which other packages
	// may change: compare lines with their runs of spaces squeezed.
	lines := map[string]bool{}
	for _, l := range strings.Split(res.stdout, "\n") {
		lines[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, name := range pipeline.DefaultRegistry.Types() {
		spec, _ := pipeline.DefaultRegistry.Lookup(name)
		if !strings.Contains(res.stdout, name+" ") || !strings.Contains(res.stdout, spec.Summary+"\n") {
			t.Errorf("dlflow stages does not list %s:\n%s", name, res.stdout)
		}
	}
	for _, want := range []string{
		"file.sink ordered bytes* nothing writes the download into OUTPUT.tmp and renames it to OUTPUT when complete",
		"throttle.tap bytes same as input passes chunks through at no more than rate bytes per second (limit-rate)",
		"* with the default config; depends on config (see dlflow stages TYPE)",
	} {
		if !lines[want] {
			t.Errorf("dlflow stages lacks the line\n%s\nin\n%s", want, res.stdout)
		}
	}

	res = runCLI(t, "stages", "throttle.tap")
	wantResult(t, res, exitOK, `throttle.tap: passes chunks through at no more than rate bytes per second (limit-rate)
  consumes bytes, produces same as input
  options:
    rate  size  (default 10MiB)  most bytes per second passed on, over all workers of the stage
`, "")
}

func TestStagesMarkdown(t *testing.T) {
	var out bytes.Buffer
	writeMarkdown(&out, stagesRegistry(t), []option{
		{key: "url", kind: "string", def: `""`, help: "what to download"},
		{key: "http.headers", kind: "map of string", help: "extra headers | such as Authorization"},
	})
	want := markdownIntro + `
## Top-level keys

| key | type | default | description |
|---|---|---|---|
| ` + "`url` | string | `\"\"`" + ` | what to download |
| ` + "`http.headers`" + ` | map of string |  | extra headers \| such as Authorization |

## Stages

` + "`stages:` maps a stage id (lowercase letters, digits, `-` and `_`, starting" + `
with a letter) to:

| key | type | description |
|---|---|---|
| ` + "`type`" + ` | string | registered stage type, see dlflow stages |
| ` + "`inputs`" + ` | list of string | ids of the stages this one consumes from |
| ` + "`workers`" + ` | int | replicas reading the one input (connections, for http.reader) |
| ` + "`queue`" + ` | int | capacity of the channel into this stage; 0 picks one |
| ` + "`config`" + ` | map | the stage type's own options |
` + markdownFlows + `| type | consumes | produces | summary |
|---|---|---|---|
| [` + "`mode.sink`" + `](#modesink) | ordered bytes\* | nothing | takes bytes in the order its mode asks for |
| [` + "`throttle.tap`" + `](#throttletap) | bytes | same as input | passes chunks through at no more than rate bytes per second (limit-rate) |

\* with the default config; depends on config.

### ` + "`mode.sink`" + `

Takes bytes in the order its mode asks for.

Consumes ordered bytes, produces nothing (with the default config; depends on config).

| key under ` + "`config:`" + ` | type | default | description |
|---|---|---|---|
| ` + "`mode` | string | `ordered`" + ` | ordered \| any |
| ` + "`tags`" + ` | list of string |  | labels |
| ` + "`timeout` | duration | `3s`" + ` | how long to wait |
| ` + "`limits.max` | size | `0B`" + ` | largest chunk |

### ` + "`throttle.tap`" + `

Passes chunks through at no more than rate bytes per second (limit-rate).

Consumes bytes, produces same as input.

| key under ` + "`config:`" + ` | type | default | description |
|---|---|---|---|
| ` + "`rate` | size | `10MiB`" + ` | most bytes per second passed on, over all workers of the stage |
`
	if got := out.String(); got != want {
		t.Fatalf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

// The top-level keys come from config.Config with Load's defaults, without
// the stages map.
func TestConfigOptions(t *testing.T) {
	got := map[string]option{}
	var keys []string
	for _, o := range configOptions() {
		got[o.key] = o
		keys = append(keys, o.key)
	}
	for _, want := range []option{
		{key: "url", kind: "string", def: `""`, help: "what to download; --url or the first argument overrides"},
		{key: "overwrite", kind: "bool", def: "false", help: "replace an existing output file"},
		{key: "http.connect_timeout", kind: "duration", def: "10s", help: "time allowed to open a TCP connection"},
		{key: "http.user_agent", kind: "string", def: "dlflow/0.1", help: "User-Agent header of every request"},
		{key: "http.headers", kind: "map of string", def: "", help: "extra request headers, such as Authorization"},
	} {
		if got[want.key] != want {
			t.Errorf("option %s: got %+v, want %+v", want.key, got[want.key], want)
		}
	}
	if keys[0] != "url" || keys[1] != "output" {
		t.Errorf("keys start %v, want url, output in declaration order", keys[:2])
	}
	for _, k := range keys {
		if k == "stages" || strings.HasPrefix(k, "stages.") {
			t.Errorf("top-level keys include %s", k)
		}
	}
}
