package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a test-only TextUnmarshaler ("16MiB", "512", "1KiB").
type ByteSize int64

func (b *ByteSize) UnmarshalText(text []byte) error {
	s := string(text)
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = rest, m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a byte size like 16MiB, got %q", string(text))
	}
	*b = ByteSize(n * mult)
	return nil
}

type common struct {
	Name    string `koanf:"name"`
	Retries int    `koanf:"retries"`
}

type fetchConfig struct {
	Piece   ByteSize          `koanf:"piece"`
	Workers int               `koanf:"workers"`
	Timeout time.Duration     `koanf:"timeout"`
	Mirrors []string          `koanf:"mirrors"`
	Ports   []uint16          `koanf:"ports"`
	Headers map[string]string `koanf:"headers"`
	Verify  *bool             `koanf:"verify"`
	ETag    string            `koanf:"etag"`
	Ratio   float32           `koanf:"ratio"`
	Small   int8              `koanf:"small"`
	Extra   any               `koanf:"extra"`
	Ignored int               // untagged: not decodable
	Skipped int               `koanf:"-"`
}

type stage struct {
	common  `koanf:",squash"`
	Kind    string      `koanf:"kind"`
	Workers int         `koanf:"workers"`
	Config  fetchConfig `koanf:"config"`
}

type limits struct {
	Min int `koanf:"min"`
	Max int `koanf:"max"`
}

func (l *limits) Validate() error {
	if l.Min > l.Max {
		return errors.New("min must not exceed max")
	}
	return nil
}

type root struct {
	Stages map[string]*stage `koanf:"stages"`
	Limits *limits           `koanf:"limits"`
	Tags   []string          `koanf:"tags"`
}

func defaults() *root {
	return &root{Stages: map[string]*stage{
		"fetch": {Kind: "http", Workers: 4, Config: fetchConfig{Piece: 1 << 20, Timeout: 30 * time.Second}},
	}}
}

// decodeYAML parses doc, decodes it into a fresh defaults() and returns the
// result with the rendered errors.
func decodeYAML(t *testing.T, doc string) (*root, []string) {
	t.Helper()
	var src map[string]any
	if err := yaml.Unmarshal([]byte(doc), &src); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	pos, err := IndexPositions("dl.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("IndexPositions: %v", err)
	}
	dst := defaults()
	return dst, render(Decode(src, dst, "", pos.Lookup))
}

func render(errs []*KeyError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// decodeErrorsCases are the cases of TestDecodeErrors.
var decodeErrorsCases = []struct {
	name string
	doc  string
	want []string
}{
	{"unknown key with suggestion", `
stages:
  fetch:
    config:
      piec: 16MiB
`, []string{`dl.yaml:5:7: stages.fetch.config.piec: unknown key "piec" (did you mean "piece"?)`}},
	{"unknown key without suggestion", `
stages:
  fetch:
    colour: red
`, []string{`dl.yaml:4:5: stages.fetch.colour: unknown key "colour"`}},
	{"untagged and dash fields are unknown", `
stages: {fetch: {config: {Ignored: 1, "-": 2}}}
`, []string{
		`dl.yaml:2:39: stages.fetch.config.-: unknown key "-"`,
		`dl.yaml:2:27: stages.fetch.config.Ignored: unknown key "Ignored"`,
	}},
	{"mistyped int", `
stages:
  fetch:
    workers: eight
`, []string{`dl.yaml:4:5: stages.fetch.workers: want an integer, got "eight"`}},
	{"bad duration", `
stages:
  fetch:
    config:
      timeout: 5 minutes
`, []string{`dl.yaml:5:7: stages.fetch.config.timeout: want a duration like 30s, got "5 minutes"`}},
	{"bare non-zero duration", `
stages: {fetch: {config: {timeout: 30}}}
`, []string{`dl.yaml:2:27: stages.fetch.config.timeout: want a duration like 30s, got 30`}},
	{"text unmarshaler error", `
stages:
  dl:
    config:
      piece: lots
`, []string{`dl.yaml:5:7: stages.dl.config.piece: want a byte size like 16MiB, got "lots"`}},
	{"overflow", `
stages:
  fetch:
    config:
      small: 300
      ports: [80, 70000, -1]
      ratio: 1e300
`, []string{
		`dl.yaml:6:19: stages.fetch.config.ports.1: want an integer between 0 and 65535, got 70000`,
		`dl.yaml:6:26: stages.fetch.config.ports.2: want a non-negative integer, got -1`,
		`dl.yaml:7:7: stages.fetch.config.ratio: want a number in float32 range, got 1e+300`,
		`dl.yaml:5:7: stages.fetch.config.small: want an integer between -128 and 127, got 300`,
	}},
	{"wrong shapes", `
stages:
  fetch:
    config:
      mirrors: {a: b}
      etag: [1, 2]
      headers: [x]
limits: 5
tags: {a: 1}
`, []string{
		`dl.yaml:8:1: limits: want a map, got 5`,
		`dl.yaml:6:7: stages.fetch.config.etag: want a string, got a list`,
		`dl.yaml:7:7: stages.fetch.config.headers: want a map, got a list`,
		`dl.yaml:5:7: stages.fetch.config.mirrors: want a list, got a map`,
		`dl.yaml:9:1: tags: want a list, got a map`,
	}},
	{"multiple errors across stages", `
stages:
  fetch:
    workers: x
    config: {verify: maybe}
  save:
    kind: [file]
    config:
      piece: 4MiB
      workrs: 2
`, []string{
		`dl.yaml:5:14: stages.fetch.config.verify: want a boolean, got "maybe"`,
		`dl.yaml:4:5: stages.fetch.workers: want an integer, got "x"`,
		`dl.yaml:10:7: stages.save.config.workrs: unknown key "workrs" (did you mean "workers"?)`,
		`dl.yaml:7:5: stages.save.kind: want a string, got a list`,
	}},
	{"validate hook", `
limits: {min: 5, max: 1}
`, []string{`dl.yaml:2:1: limits: min must not exceed max`}},
	{"validate skipped when fields fail", `
limits: {min: 5, max: x}
`, []string{`dl.yaml:2:18: limits.max: want an integer, got "x"`}},
}

func TestDecodeErrors(t *testing.T) {
	for _, tt := range decodeErrorsCases {
		t.Run(tt.name, func(t *testing.T) {
			_, got := decodeYAML(t, tt.doc)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	dst, errs := decodeYAML(t, `
stages:
  fetch:
    name: primary      # squashed from common
    retries: 3
    config:
      piece: 16MiB
      etag: 123
      mirrors: [a, b]
      ratio: 1
      verify: true
      headers: {accept: "*/*"}
      extra: {any: [thing]}
      timeout: 0
  save:
    kind: file
    config: ~
tags: ~
limits: {min: 1, max: 2}
`)
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %q", errs)
	}
	verify := true
	want := &root{
		Stages: map[string]*stage{
			"fetch": {common: common{Name: "primary", Retries: 3}, Kind: "http", Workers: 4, Config: fetchConfig{
				Piece: 16 << 20, ETag: "123", Mirrors: []string{"a", "b"}, Ratio: 1, Verify: &verify,
				Headers: map[string]string{"accept": "*/*"}, Extra: map[string]any{"any": []any{"thing"}},
			}},
			"save": {Kind: "file"},
		},
		Limits: &limits{Min: 1, Max: 2},
	}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("got  %+v\nwant %+v", dst.Stages["fetch"], want.Stages["fetch"])
	}
}

// TestDecodeEnvStrings decodes the flat string values env vars and flags
// produce, into an existing struct, at a prefix.
func TestDecodeEnvStrings(t *testing.T) {
	dst := defaults().Stages["fetch"]
	src := map[string]any{
		"workers": "8",
		"config": map[string]any{
			"ratio":   "1.5",
			"verify":  "false",
			"timeout": "1m",
			"mirrors": "a, b,,c",
			"ports":   "80,443",
			"piece":   "2KiB",
			"small":   "-128",
		},
	}
	errs := Decode(src, dst, "stages.fetch", nil)
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %q", render(errs))
	}
	verify := false
	want := &stage{Kind: "http", Workers: 8, Config: fetchConfig{
		Piece: 2048, Ratio: 1.5, Verify: &verify, Timeout: time.Minute,
		Mirrors: []string{"a", "b", "c"}, Ports: []uint16{80, 443}, Small: -128,
	}}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("got  %+v\nwant %+v", dst, want)
	}

	errs = Decode(map[string]any{"workers": "8.5", "config": map[string]any{"small": "-129"}}, dst, "stages.fetch", nil)
	want2 := []string{
		`stages.fetch.config.small: want an integer between -128 and 127, got "-129"`,
		`stages.fetch.workers: want an integer, got "8.5"`,
	}
	if got := render(errs); !reflect.DeepEqual(got, want2) {
		t.Errorf("errors:\n got  %q\n want %q", got, want2)
	}
	if dst.Workers != 8 || dst.Config.Small != -128 {
		t.Errorf("failed keys must keep their values, got workers=%d small=%d", dst.Workers, dst.Config.Small)
	}
}

func TestDecodeScalars(t *testing.T) {
	var (
		i64 int64
		u64 uint64
		u8  uint8
		f64 float64
		s   string
		d   time.Duration
		a   any
		m   map[string]int
	)
	tests := []struct {
		src  any
		dst  any
		want any    // value of *dst when err == ""
		err  string // expected single error
	}{
		{int64(math.MaxInt64), &i64, int64(math.MaxInt64), ""},
		{"9223372036854775808", &i64, nil, `x: want an integer between -9223372036854775808 and 9223372036854775807, got "9223372036854775808"`},
		{uint64(math.MaxUint64), &u64, uint64(math.MaxUint64), ""},
		{uint64(math.MaxUint64), &i64, nil, `x: want an integer between -9223372036854775808 and 9223372036854775807, got 18446744073709551615`},
		{"18446744073709551616", &u64, nil, `x: want an integer between 0 and 18446744073709551615, got "18446744073709551616"`},
		{float64(3), &u8, uint8(3), ""}, // integral floats, e.g. from JSON
		{2.5, &u8, nil, `x: want a non-negative integer, got 2.5`},
		{int(7), &f64, 7.0, ""},
		{"x", &f64, nil, `x: want a number, got "x"`},
		{true, &s, "true", ""},
		{1.5, &s, "1.5", ""},
		{time.Date(2001, 2, 3, 0, 0, 0, 0, time.UTC), &s, "2001-02-03T00:00:00Z", ""},
		{"90s", &d, 90 * time.Second, ""},
		{0, &d, time.Duration(0), ""},
		{[]string{"k"}, &a, []string{"k"}, ""},
		{map[string]string{"a": "1"}, &m, map[string]int{"a": 1}, ""},
		{map[string]any{"a": "one"}, &m, nil, `x.a: want an integer, got "one"`},
		{make(chan int), &m, nil, `x: want a map, got a chan int`},
		{1, m, nil, `x: cannot decode into map[string]int: want a non-nil pointer`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%T(%v)->%T", tt.src, tt.src, tt.dst), func(t *testing.T) {
			got := render(Decode(tt.src, tt.dst, "x", nil))
			if tt.err != "" {
				if len(got) != 1 || got[0] != tt.err {
					t.Errorf("errors: got %q, want %q", got, tt.err)
				}
				return
			}
			if len(got) != 0 {
				t.Fatalf("unexpected errors: %q", got)
			}
			if v := reflect.ValueOf(tt.dst).Elem().Interface(); !reflect.DeepEqual(v, tt.want) {
				t.Errorf("got %#v, want %#v", v, tt.want)
			}
		})
	}
}

func TestDecodeNullKeepsDefaults(t *testing.T) {
	dst := defaults()
	src := map[string]any{"stages": map[string]any{"fetch": map[string]any{"workers": nil, "config": map[string]any{"timeout": nil}}}}
	if errs := Decode(src, dst, "", nil); len(errs) != 0 {
		t.Fatalf("unexpected errors: %q", render(errs))
	}
	if !reflect.DeepEqual(dst, defaults()) {
		t.Errorf("null values changed defaults: %+v", dst.Stages["fetch"])
	}
}

func TestKeyErrorString(t *testing.T) {
	tests := []struct {
		err  KeyError
		want string
	}{
		{KeyError{Key: "a.b", Msg: "bad"}, "a.b: bad"},
		{KeyError{Key: "a.b", Pos: Position{File: "f.yaml", Line: 3, Col: 5}, Msg: "bad"}, "f.yaml:3:5: a.b: bad"},
		{KeyError{Key: "a", Pos: Position{Line: 3}, Msg: "bad"}, "3: a: bad"},
		{KeyError{Pos: Position{File: "f.yaml", Line: 3}, Msg: "bad"}, "f.yaml:3: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// fuzzTarget is a representative destination for FuzzDecode.
type fuzzTarget struct {
	root  `koanf:",squash"`
	Size  ByteSize                             `koanf:"size"`
	Sizes map[string]ByteSize                  `koanf:"sizes"`
	Ptrs  []*limits                            `koanf:"ptrs"`
	Deep  map[string][]map[string]*fetchConfig `koanf:"deep"`
	U     uint32                               `koanf:"u"`
	B     bool                                 `koanf:"b"`
	D     *time.Duration                       `koanf:"d"`
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"stages: {fetch: {workers: 8, config: {piece: 16MiB, timeout: 30s}}}",
		"stages:\n  fetch:\n    config:\n      piec: 1\n      mirrors: [a, b]\n",
		"limits: {min: 2, max: 1}\nptrs: [{min: 1}, ~, {max: x}]\n",
		"deep: {a: [{b: {workers: '3', headers: {x: 1}}}]}\nu: -1\nb: yes\nd: 0\n",
		"sizes: {a: 1KiB, b: [1]}\ntags: a,b\nsize: 1.5\n",
		"? [a, b]\n: 1\n1: 2\nstages: {1: {config: {ratio: .inf}}}\n",
		"base: &b {min: 1}\nlimits:\n  <<: *b\n  max: 0\n",
		"- 1\n- 2\n",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var src any
		if err := yaml.Unmarshal([]byte(doc), &src); err != nil {
			if ParseError("f.yaml", err) == nil {
				t.Fatal("ParseError returned nil")
			}
			return
		}
		pos, err := IndexPositions("f.yaml", []byte(doc))
		if err != nil {
			t.Fatalf("IndexPositions failed on valid YAML: %v", err)
		}
		var dst fuzzTarget
		for _, e := range Decode(src, &dst, "", pos.Lookup) {
			if e == nil || e.Msg == "" || e.Error() == "" {
				t.Fatalf("empty error: %#v", e)
			}
			if e.Pos.Line < 0 || e.Pos.Col < 0 {
				t.Fatalf("bad position: %#v", e)
			}
		}
	})
}
