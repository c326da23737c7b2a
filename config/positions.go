package config

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Positions maps dotted key paths of a YAML document ("stages.fetch.config",
// "mirrors.0") to where each key was written. It is safe for concurrent
// reads once built.
type Positions struct {
	keys map[string]Position
}

// IndexPositions parses data as YAML and records the position of every
// mapping key and list item. Keys merged in with "<<" and keys inside aliased
// nodes are not recorded (lookups for them fall back to the referring key).
// A parse error is returned as by ParseError.
func IndexPositions(file string, data []byte) (*Positions, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, ParseError(file, err)
	}
	p := &Positions{keys: map[string]Position{}}
	p.walk(file, "", &doc)
	return p, nil
}

func (p *Positions) walk(file, prefix string, n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			p.walk(file, prefix, c)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				continue
			}
			key := join(prefix, k.Value)
			if _, dup := p.keys[key]; !dup {
				p.keys[key] = Position{File: file, Line: k.Line, Col: k.Column}
			}
			p.walk(file, key, v)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			key := join(prefix, strconv.Itoa(i))
			p.keys[key] = Position{File: file, Line: c.Line, Col: c.Column}
			p.walk(file, key, c)
		}
	}
}

// Lookup returns the position of key (of the key itself, or of the item for
// list indexes). For a key that was not written, it returns the position of
// the nearest written ancestor, so a problem inside "stages.fetch" that has
// no key of its own points at "stages.fetch". It returns the zero Position
// when nothing matches or p is nil.
func (p *Positions) Lookup(key string) Position {
	if p == nil {
		return Position{}
	}
	for key != "" {
		if pos, ok := p.keys[key]; ok {
			return pos
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return Position{}
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

// ParseError turns a yaml.v3 error such as "yaml: line 3: mapping values are
// not allowed in this context" into a *KeyError with an empty Key, which
// prints as "FILE:3: mapping values are not allowed in this context". For
// type errors only the first problem is kept. It returns nil for a nil err.
func ParseError(file string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if te := (*yaml.TypeError)(nil); errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	e := &KeyError{Pos: Position{File: file}, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Pos.Line, _ = strconv.Atoi(m[1])
		e.Msg = msg[len(m[0]):]
	}
	return e
}
