package stagedoc

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/config"
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

// testRegistry holds throttle.tap and mode.sink, so the output can be
// pinned whatever types the built-in packages add.
func testRegistry(t *testing.T) *pipeline.Registry {
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

func TestList(t *testing.T) {
	var out bytes.Buffer
	List(&out, testRegistry(t))
	want := `TYPE          CONSUMES        PRODUCES       SUMMARY
mode.sink     ordered bytes*  nothing        takes bytes in the order its mode asks for
throttle.tap  bytes           same as input  passes chunks through at no more than rate bytes per second (limit-rate)

* with the default config; depends on config (see dlflow stages TYPE)
`
	if out.String() != want {
		t.Fatalf("List:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestDescribe(t *testing.T) {
	var out bytes.Buffer
	reg := testRegistry(t)
	for _, name := range []string{"throttle.tap", "mode.sink"} {
		Describe(&out, reg, name)
	}
	want := `throttle.tap: passes chunks through at no more than rate bytes per second (limit-rate)
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
`
	if out.String() != want {
		t.Fatalf("Describe:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestMarkdown(t *testing.T) {
	var out bytes.Buffer
	markdown(&out, testRegistry(t), []config.Field{
		{Key: "url", Kind: "string", Default: `""`, Help: "what to download"},
		{Key: "http.headers", Kind: "map of string", Help: "extra headers | such as Authorization"},
	})
	want := intro + `
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
` + flowsIntro + `| type | consumes | produces | summary |
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
` + extendsIntro + `| key | type | description |
|---|---|---|
| ` + "`type`" + ` | string | registered stage type of the stage inserted, see dlflow stages |
| ` + "`after`" + ` | string | the stage it goes after: it reads that stage's output, and the stages that read it read the new one |
| ` + "`before`" + ` | string | the stage it goes before: it reads that stage's inputs, and that stage reads the new one |
| ` + "`workers`" + ` | int | replicas reading the one input |
| ` + "`queue`" + ` | int | capacity of the channel into the stage; 0 picks one |
| ` + "`config`" + ` | map | the stage type's own options |
`
	if got := out.String(); got != want {
		t.Fatalf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

// TestTopLevelKeys: the top-level keys come from config.Config with Load's
// defaults, without the stages map.
func TestTopLevelKeys(t *testing.T) {
	top, err := topLevelKeys()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]config.Field{}
	var keys []string
	for _, f := range top {
		got[f.Key] = f
		keys = append(keys, f.Key)
	}
	for _, want := range []config.Field{
		{Key: "url", Kind: "string", Default: `""`, Help: "what to download; --url or the first argument overrides. A list names the file's mirrors after it: url: [A, B]"},
		{Key: "overwrite", Kind: "bool", Default: "false", Help: "replace an existing output file"},
		{Key: "http.connect_timeout", Kind: "duration", Default: "10s", Help: "time allowed to open a TCP connection"},
		{Key: "http.user_agent", Kind: "string", Default: "dlflow/0.1", Help: "User-Agent header of every request"},
		{Key: "http.headers", Kind: "map of string", Default: "", Help: "extra request headers, such as Authorization"},
	} {
		if got[want.Key] != want {
			t.Errorf("key %s: got %+v, want %+v", want.Key, got[want.Key], want)
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
