package config

import (
	"errors"
	"testing"

	"go.yaml.in/yaml/v3"
)

const positionsDoc = `# dlflow
stages:
  fetch:
    kind: http
    config: {piece: 16MiB, mirrors: [a, "b"]}
  save:
    mirrors:
      - one
      - x: 1
base: &base {min: 1}
limits:
  <<: *base
  max: 2
copy: *base
"a.b": 1
`

func TestLookup(t *testing.T) {
	p, err := IndexPositions("dl.yaml", []byte(positionsDoc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want string
	}{
		{"stages", "dl.yaml:2:1"},
		{"stages.fetch", "dl.yaml:3:3"},
		{"stages.fetch.kind", "dl.yaml:4:5"},
		{"stages.fetch.config.piece", "dl.yaml:5:14"},
		{"stages.fetch.config.mirrors.1", "dl.yaml:5:41"},
		{"stages.save.mirrors.0", "dl.yaml:8:9"},
		{"stages.save.mirrors.1.x", "dl.yaml:9:9"},
		{"stages.fetch.missing", "dl.yaml:3:3"},              // nearest ancestor
		{"stages.fetch.config.piece.deeper", "dl.yaml:5:14"}, // nearest ancestor
		{"limits.max", "dl.yaml:13:3"},
		{"limits.min", "dl.yaml:11:1"}, // merged in: falls back to limits
		{"copy.min", "dl.yaml:14:1"},   // inside an alias: falls back to copy
		{"a.b", "dl.yaml:15:1"},        // dotted keys are indexed as written
		{"nothing", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := p.Lookup(tt.key).String(); got != tt.want {
			t.Errorf("Lookup(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	var nilP *Positions
	if got := nilP.Lookup("stages"); got != (Position{}) {
		t.Errorf("nil Positions: got %v", got)
	}
	empty, err := IndexPositions("e.yaml", nil)
	if err != nil || empty.Lookup("a") != (Position{}) {
		t.Errorf("empty document: %v, %v", empty, err)
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		doc  string
		want string
	}{
		{"a: 1\nb: c: d\n", "dl.yaml:2: mapping values are not allowed in this context"},
		{"a: [1, 2\n", "dl.yaml:1: did not find expected ',' or ']'"},
		{"a:\n\tb: 1\n", "dl.yaml:2: found character that cannot start any token"},
		{"a: *nope\n", "dl.yaml: unknown anchor 'nope' referenced"}, // yaml.v3 gives no line
	}
	for _, tt := range tests {
		_, err := IndexPositions("dl.yaml", []byte(tt.doc))
		if err == nil || err.Error() != tt.want {
			t.Errorf("IndexPositions(%q) error = %v, want %q", tt.doc, err, tt.want)
		}
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != "" || ke.Pos.File != "dl.yaml" {
			t.Errorf("want a *KeyError with the file, got %#v", err)
		}
	}

	if got := ParseError("f.yaml", errors.New("yaml: control characters are not allowed")).Error(); got != "f.yaml: control characters are not allowed" {
		t.Errorf("no line: got %q", got)
	}
	te := &yaml.TypeError{Errors: []string{"line 4: cannot unmarshal !!str `x` into int", "line 5: other"}}
	if got := ParseError("f.yaml", te).Error(); got != "f.yaml:4: cannot unmarshal !!str `x` into int" {
		t.Errorf("type error: got %q", got)
	}
	if ParseError("f.yaml", nil) != nil {
		t.Error("ParseError(nil) != nil")
	}
}
