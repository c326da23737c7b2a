package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dlflow/dlflow/examples"
)

// A config file may build on a topology instead of spelling out its stages:
//
//	extends: auto            # or stream, ranged, buffered, ..., or a file
//	insert:
//	  count:
//	    type: linecount.tap
//	    after: verify
//	    config: {max_lines: 1000}
//
// The file's own keys lie over those of the topology it extends (maps
// merge key by key, other values replace), then its inserts are spliced
// in (see Insert). A base file may extend another, up to MaxExtends files.

// Auto is the value of extends that leaves the choice of the built-in
// topology to the download (stream or ranged, by what the server answers):
// Options.Auto names the one picked.
const Auto = "auto"

// MaxExtends bounds a chain of files that extend one another.
const MaxExtends = 8

// Extension is what a config file says about the topology it builds on,
// read without building it (ReadExtension).
type Extension struct {
	// Base is where the chain of extends ends: Auto, a built-in topology's
	// file name ("ranged.yaml"), or "" when the last file extends nothing.
	Base string
	// Inserts are the ids of the stages the files of the chain insert.
	Inserts []string
}

// ReadExtension follows the extends of the config file (data, or the file
// read when data is nil) and reports where it ends and what it inserts.
// A problem comes back as an *Error naming the file and line.
func ReadExtension(file string, data []byte) (Extension, error) {
	var ext Extension
	r := &resolver{}
	var chain []string
	for {
		if data == nil {
			var err error
			if data, err = os.ReadFile(file); err != nil {
				return ext, fmt.Errorf("read config: %w", err)
			}
		}
		p := parse(file, data)
		if p.err != nil {
			return ext, &Error{Errs: []*KeyError{asKeyError(p.err)}}
		}
		if m, ok := p.tree["insert"].(map[string]any); ok {
			ext.Inserts = append(ext.Inserts, slices.Sorted(maps.Keys(m))...)
		}
		base, ok := p.tree["extends"]
		if !ok {
			return ext, nil
		}
		next, nextData, isAuto := r.base(file, base, chain, p.positions)
		if len(r.errs) > 0 {
			return ext, &Error{Errs: r.errs}
		}
		switch {
		case isAuto:
			ext.Base = Auto
			return ext, nil
		case strings.HasPrefix(next, builtinPrefix):
			ext.Base = strings.TrimPrefix(next, builtinPrefix)
			return ext, nil
		}
		chain = append(chain, chainKey(file))
		file, data = next, nextData
	}
}

// builtinPrefix starts the name of a built-in topology in messages, as
// the library names it.
const builtinPrefix = "(built-in) "

// resolver loads a config file with what it extends and inserts.
type resolver struct {
	opts   Options
	errs   []*KeyError
	unused []string // stage keys of a file that extends auto, which the topology picked does not have
	// deferred: the chain ends at auto with none picked (Options.Auto
	// ""); pending are the inserts left for the caller, deepest first.
	deferred bool
	pending  []Insert
}

func (r *resolver) fail(pos *Positions, key, format string, args ...any) {
	r.errs = append(r.errs, &KeyError{Key: key, Pos: pos.Lookup(key), Msg: fmt.Sprintf(format, args...)})
}

// resolve returns the tree of the file (data) with the topology it extends
// under it and its inserts spliced in, and where each key was written;
// nil after a problem, which r.errs holds. chain lists the files that
// extend this one, to stop a loop.
func (r *resolver) resolve(file string, data []byte, chain []string) (map[string]any, *Positions) {
	p := parse(file, data)
	if p.err != nil {
		r.errs = append(r.errs, asKeyError(p.err))
		return nil, nil
	}
	top := len(chain) == 0
	extends, hasExtends := p.tree["extends"]
	_, hasInsert := p.tree["insert"]
	if !hasExtends && !hasInsert && (!top || len(r.opts.Inserts) == 0) {
		return p.tree, p.positions
	}
	tree := copyMap(p.tree)
	delete(tree, "extends")
	delete(tree, "insert")
	positions, where := p.positions, displayName(file)
	inserts := r.inserts(p.tree["insert"], positions)
	if top {
		inserts = append(inserts, r.opts.Inserts...)
	}
	if hasExtends {
		next, nextData, isAuto := r.base(file, extends, chain, positions)
		switch {
		case next == "" && !isAuto:
			return nil, nil // r.base said why
		case isAuto && r.opts.Auto == "":
			if !r.opts.StagesOptional {
				r.fail(positions, "extends", "auto: the topology is picked once the server answered (stream or ranged); check each with Options.Auto (dlflow validate does)")
				return nil, nil
			}
			// Before the pick: the file's own keys, its stages a layer
			// for the topology picked, its inserts for the caller to
			// splice into it (Config.Inserts, Config.Splice).
			r.deferred = true
			r.pending = append(r.pending, inserts...)
			return tree, positions.withInserts(inserts)
		case isAuto:
			if next, nextData = builtin(r.opts.Auto); nextData == nil {
				r.fail(positions, "extends", "auto: no built-in topology %q to pick", r.opts.Auto)
				return nil, nil
			}
		}
		base, basePositions := r.resolve(next, nextData, append(chain, chainKey(file)))
		if base == nil {
			return nil, nil
		}
		if r.deferred { // the chain ends at auto, not picked yet
			r.pending = append(r.pending, inserts...)
			return mergeTree(copyMap(base), tree), basePositions.overlay(positions).withInserts(inserts)
		}
		if isAuto {
			r.dropUnknownStages(tree, base, inserts)
		}
		tree = mergeTree(copyMap(base), tree)
		positions, where = basePositions.overlay(positions), displayName(next)
	}
	if len(inserts) > 0 {
		s := newSplicer(tree, where, positions.Lookup)
		s.splice(inserts)
		r.errs = append(r.errs, s.errs...)
		positions = positions.withInserts(inserts)
	}
	return tree, positions
}

// base finds the topology that extends names, relative to file: Auto, a
// built-in (by name, with or without .yaml, and no slash), or a file
// (relative to file's directory). It returns its name and YAML, or
// isAuto; or "" and nil after a problem, which r.errs holds.
func (r *resolver) base(file string, extends any, chain []string, pos *Positions) (next string, data []byte, isAuto bool) {
	name, ok := extends.(string)
	name = strings.TrimSpace(name)
	switch {
	case !ok || name == "":
		r.fail(pos, "extends", "want the topology to extend: auto, a built-in name (%s) or a file", strings.Join(builtinNames(), ", "))
		return "", nil, false
	case name == Auto:
		return "", nil, true
	case !strings.ContainsAny(name, `/\`):
		if next, data := builtin(name); data != nil {
			return next, data, false
		}
	}
	next = name
	if dir := filepath.Dir(file); !filepath.IsAbs(name) && file != "" && !strings.HasPrefix(file, builtinPrefix) {
		next = filepath.Join(dir, name)
	}
	key := chainKey(next)
	if slices.Contains(chain, key) || key == chainKey(file) {
		r.fail(pos, "extends", "%s extends itself: %s", name, strings.Join(append(append(slices.Clip(chain), chainKey(file)), key), " extends "))
		return "", nil, false
	}
	if len(chain)+1 >= MaxExtends {
		r.fail(pos, "extends", "more than %d files extend one another: %s", MaxExtends, strings.Join(append(slices.Clip(chain), chainKey(file)), " extends "))
		return "", nil, false
	}
	data, err := os.ReadFile(next)
	if err != nil {
		r.fail(pos, "extends", "no topology %q: not a built-in one (%s), and %v", name, strings.Join(builtinNames(), ", "), err)
		return "", nil, false
	}
	return next, data, false
}

// inserts decodes a file's insert key strictly.
func (r *resolver) inserts(v any, pos *Positions) []Insert {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		r.fail(pos, "insert", "want a map of stage id to its type, after or before, and config")
		return nil
	}
	var out []Insert
	for _, id := range slices.Sorted(maps.Keys(m)) {
		key := "insert." + id
		if !stageID.MatchString(id) {
			r.fail(pos, key, "stage id %q: use lowercase letters, digits, - and _, starting with a letter", id)
			continue
		}
		in := Insert{ID: id}
		if errs := Decode(m[id], &in, key, pos.Lookup); len(errs) > 0 {
			r.errs = append(r.errs, errs...)
			continue
		}
		out = append(out, in)
	}
	return out
}

// Inserts are the stages a file that extends auto inserts, when it was
// loaded before the pick (Options.Auto "", with StagesOptional), with
// Options.Inserts after them: a caller that loads the configuration once
// splices them into the stages of the topology it picks (Splice). Nil
// when Load spliced them itself.
func (cfg *Config) Inserts() []Insert { return cfg.inserts }

// Splice returns stages (a topology's, as decoded: the caller's map is not
// changed) with inserts spliced in, as Load splices a file's (see Insert).
// where names the topology in messages, such as "(built-in) ranged.yaml".
// A problem is an *Error that places each insert where it was written (a
// file's line, or its Origin).
func (cfg *Config) Splice(stages map[string]StageConfig, where string, inserts []Insert) (map[string]StageConfig, error) {
	tree := map[string]any{"stages": stagesTree(stages)}
	s := newSplicer(tree, where, cfg.Position)
	s.splice(inserts)
	if len(s.errs) > 0 {
		return nil, &Error{Errs: s.errs}
	}
	out := map[string]StageConfig{}
	if errs := Decode(tree["stages"], &out, "stages", cfg.Position); len(errs) > 0 {
		return nil, &Error{Errs: errs}
	}
	return out, nil
}

// stagesTree is stages as YAML would have written them.
func stagesTree(stages map[string]StageConfig) map[string]any {
	out := make(map[string]any, len(stages))
	for id, sc := range stages {
		m := map[string]any{"type": sc.Type}
		if sc.Inputs != nil {
			m["inputs"] = toAny(sc.Inputs)
		}
		if sc.Workers != 0 {
			m["workers"] = int64(sc.Workers)
		}
		if sc.Queue != 0 {
			m["queue"] = int64(sc.Queue)
		}
		if sc.Config != nil {
			m["config"] = copyMap(sc.Config)
		}
		out[id] = m
	}
	return out
}

// dropUnknownStages removes from the tree of a file that extends auto the
// stages that neither the topology picked nor an insert has: they are
// meant for the other one. Config.Unused lists them.
func (r *resolver) dropUnknownStages(tree, base map[string]any, inserts []Insert) {
	stages, _ := tree["stages"].(map[string]any)
	have, _ := base["stages"].(map[string]any)
	for _, id := range slices.Sorted(maps.Keys(stages)) {
		if _, ok := have[id]; ok || slices.ContainsFunc(inserts, func(in Insert) bool { return in.ID == id }) {
			continue
		}
		delete(stages, id)
		r.unused = append(r.unused, "stages."+id)
	}
}

// mergeTree lays src over dst: maps merge key by key, other values
// replace. It returns dst.
func mergeTree(dst, src map[string]any) map[string]any {
	for k, v := range src {
		sm, ok1 := v.(map[string]any)
		dm, ok2 := dst[k].(map[string]any)
		if ok1 && ok2 {
			dst[k] = mergeTree(dm, sm)
			continue
		}
		dst[k] = copyValue(v)
	}
	return dst
}

// builtin returns the name and YAML of the built-in topology name (with or
// without .yaml); nil data when there is none.
func builtin(name string) (string, []byte) {
	file := strings.TrimSuffix(name, ".yaml") + ".yaml"
	data, err := examples.FS.ReadFile(file)
	if err != nil {
		return "", nil
	}
	return builtinPrefix + file, data
}

// builtinNames are the built-in topologies extends takes by name.
func builtinNames() []string {
	entries, _ := examples.FS.ReadDir(".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return names
}

// displayName names a file in messages.
func displayName(file string) string {
	if file == "" {
		return "the configuration"
	}
	return file
}

// chainKey names a file in a chain of extends, the same for two spellings
// of one path.
func chainKey(file string) string {
	if strings.HasPrefix(file, builtinPrefix) || file == "" {
		return file
	}
	if abs, err := filepath.Abs(file); err == nil {
		return abs
	}
	return filepath.Clean(file)
}

// overlay returns the positions of p with those of top over them.
func (p *Positions) overlay(top *Positions) *Positions {
	out := &Positions{keys: map[string]Position{}}
	for _, q := range []*Positions{p, top} {
		if q != nil {
			maps.Copy(out.keys, q.keys)
		}
	}
	return out
}

// withInserts returns p with the keys of each inserted stage placed where
// its insert was written: stages.ID.KEY at insert.ID.KEY, and its inputs
// at after or before. Inserts given by a program (an Origin) are placed
// by Config.origins instead.
func (p *Positions) withInserts(inserts []Insert) *Positions {
	out := p.overlay(nil)
	for _, in := range inserts {
		if in.Origin != "" {
			continue
		}
		from, to := "insert."+in.ID, "stages."+in.ID
		for k, pos := range p.keys {
			if rest, ok := strings.CutPrefix(k, from); ok && (rest == "" || rest[0] == '.') {
				out.keys[to+rest] = pos
			}
		}
		_, key := in.anchor()
		if pos, ok := p.keys[from+"."+key]; ok {
			out.keys[to+".inputs"] = pos
		}
	}
	return out
}
