package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

type retryPart struct {
	Retries int           `koanf:"retries" help:"attempts (squashed)"`
	Backoff time.Duration `koanf:"backoff" help:"first wait"`
	Workers int           `koanf:"workers" help:"shadowed by the stage's own workers"`
}

type bodyPart struct {
	Buffer  pipeline.ByteSize `koanf:"buffer" help:"read size"`
	Retries int               `koanf:"retries" help:"shadowed by the first squashed struct"`
}

type docStage struct {
	retryPart `koanf:",squash"`
	Workers   int `koanf:"workers" help:"replicas"`
	bodyPart  `koanf:",squash"`
	Limits    *limits `koanf:"limits"`
	Auth      struct {
		User string `koanf:"user" help:"who"`
	} `koanf:"auth"`
	Tags    []string          `koanf:"tags" help:"labels"`
	Headers map[string]string `koanf:"headers" help:"extra"`
	Extra   map[string]any    `koanf:"extra"`
	Verify  *bool             `koanf:"verify" help:"check it"`
	Since   time.Time         `koanf:"since"`
	Name    string            `koanf:"name"`
	Ignored int
	Skipped int `koanf:"-"`
}

func TestFields(t *testing.T) {
	v := &docStage{Workers: 4, Tags: []string{"a", "b"}}
	v.retryPart.Retries, v.Backoff = 3, 250*time.Millisecond
	v.Buffer = 256 << 10
	var got []string
	for _, f := range Fields(v) {
		got = append(got, strings.Join([]string{f.Key, f.Kind, f.Default, f.Help}, " | "))
	}
	want := []string{
		"retries | int | 3 | attempts (squashed)",
		"backoff | duration | 250ms | first wait",
		"workers | int | 4 | replicas",
		"buffer | size | 256KiB | read size",
		"limits.min | int | 0 | ",
		"limits.max | int | 0 | ",
		"auth.user | string | \"\" | who",
		"tags | list of string | [a b] | labels",
		"headers | map of string |  | extra",
		"extra | map |  | ",
		"verify | bool |  | check it",
		"since | struct | 0001-01-01 00:00:00 +0000 UTC | ",
		"name | string | \"\" | ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Fields:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if Fields(3) != nil || Fields((*docStage)(nil)) == nil {
		t.Errorf("Fields(3) = %v, want nil; Fields of a nil *struct lists its keys", Fields(3))
	}
}

// TestFieldsAreDecodeKeys: the keys Fields documents are the keys Decode
// accepts, and a default written back through Decode gives the same
// default: the reference and the decoder read the tags by one walk.
func TestFieldsAreDecodeKeys(t *testing.T) {
	src := &docStage{Workers: 4, Tags: []string{"a", "b"}, Limits: &limits{Min: 1, Max: 9}}
	src.retryPart.Retries, src.Backoff, src.Buffer = 3, time.Second, 1<<20
	tree := map[string]any{}
	fields := Fields(src)
	for _, f := range fields {
		if f.Default == "" || f.Default == `""` || f.Kind == "struct" || strings.HasPrefix(f.Kind, "list") {
			continue
		}
		m := tree
		parts := strings.Split(f.Key, ".")
		for _, p := range parts[:len(parts)-1] {
			if m[p] == nil {
				m[p] = map[string]any{}
			}
			m = m[p].(map[string]any)
		}
		m[parts[len(parts)-1]] = f.Default // a string, as from an env var
	}
	var dst docStage
	if errs := Decode(tree, &dst, "", nil); errs != nil {
		t.Fatalf("Decode of the documented keys: %v", render(errs))
	}
	dst.Tags = src.Tags
	if got := Fields(&dst); !reflect.DeepEqual(got, fields) {
		t.Errorf("round trip:\n%v\nwant\n%v", got, fields)
	}
	// A key that Fields leaves out is unknown to Decode, and the
	// suggestion is among the keys Fields lists.
	errs := render(Decode(map[string]any{"ignored": 1, "workrs": 2}, &dst, "", nil))
	want := []string{`ignored: unknown key "ignored"`, `workrs: unknown key "workrs" (did you mean "workers"?)`}
	if !reflect.DeepEqual(errs, want) {
		t.Errorf("unknown keys: %q, want %q", errs, want)
	}
}
