package config

import (
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
