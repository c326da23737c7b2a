package config

import (
	"errors"
	"sync"

	"github.com/knadh/koanf/parsers/yaml"
)

// A batch loads the same topology for every download, several times each
// (to check it, to pick it, to build it): parsing its YAML was two thirds
// of the CPU a small file cost. parsed remembers what a file's bytes parse
// to, which depends on nothing else.
var parsed = struct {
	sync.Mutex
	files map[parseKey]*parsedFile
}{files: map[parseKey]*parsedFile{}}

// parseCacheMax bounds the files remembered; a program that loads more
// distinct ones starts over.
const parseCacheMax = 64

type parseKey struct{ file, data string }

// parsedFile is a file's key positions and its YAML as a tree; both are
// read only once made.
type parsedFile struct {
	positions *Positions
	tree      map[string]any
	err       error // a positioned *KeyError
}

// parse returns what data, named file in errors, parses to.
func parse(file string, data []byte) *parsedFile {
	key := parseKey{file, string(data)}
	parsed.Lock()
	p, ok := parsed.files[key]
	parsed.Unlock()
	if ok {
		return p
	}
	p = &parsedFile{}
	if p.positions, p.err = IndexPositions(file, data); p.err == nil {
		if tree, err := yaml.Parser().Unmarshal(data); err != nil {
			p.err = ParseError(file, err)
		} else {
			p.tree = tree
		}
	}
	parsed.Lock()
	if len(parsed.files) >= parseCacheMax {
		clear(parsed.files)
	}
	parsed.files[key] = p
	parsed.Unlock()
	return p
}

// treeProvider is a koanf provider of a parsed tree, which it hands out as
// a copy: koanf merges nested maps into its own by reference, so the
// cached tree must not be handed out itself. confmap.Provider copies by
// reflection, which cost a batch more than the parse it saved.
type treeProvider struct{ tree map[string]any }

// ReadBytes is not supported: the tree is already parsed.
func (p treeProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("treeProvider does not support ReadBytes")
}

// Read returns a deep copy of the tree.
func (p treeProvider) Read() (map[string]any, error) { return copyMap(p.tree), nil }

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyValue(v)
	}
	return out
}

// copyValue copies the maps and lists a YAML parse makes; scalars are
// values already.
func copyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return copyMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	default:
		return v
	}
}
