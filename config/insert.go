package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Insert is a stage added to a topology and spliced into it: after a stage
// (it reads what that stage produced, and the stages that read from that
// stage read from it instead) or before one (it reads what that stage read,
// and that stage reads from it). A config file writes inserts under its
// `insert:` key, by id; a program passes them in Options.Inserts (the
// command line's --insert).
type Insert struct {
	// ID is the new stage's id; it must not be a stage of the topology.
	ID string `koanf:"-"`
	// Type is the registered stage type.
	Type string `koanf:"type" help:"registered stage type of the stage inserted, see dlflow stages"`
	// After and Before name the stage it goes after or before: one of them.
	After  string `koanf:"after" help:"the stage it goes after: it reads that stage's output, and the stages that read it read the new one"`
	Before string `koanf:"before" help:"the stage it goes before: it reads that stage's inputs, and that stage reads the new one"`
	// Workers and Queue are the stage's, as under stages: (0 picks).
	Workers int `koanf:"workers" help:"replicas reading the one input"`
	Queue   int `koanf:"queue" help:"capacity of the channel into the stage; 0 picks one"`
	// Config is the stage type's own options.
	Config map[string]any `koanf:"config" help:"the stage type's own options"`
	// Origin names the insert in errors, such as "--insert count=..."; ""
	// for a config file's insert, which errors place by file and line.
	Origin string `koanf:"-"`
}

// anchor is the stage the insert is placed against, and the key that
// names it.
func (in Insert) anchor() (id, key string) {
	if in.Before != "" {
		return in.Before, "before"
	}
	return in.After, "after"
}

// ParseInsert parses the command line's form of an insert,
// ID=TYPE,after=STAGE (or before=STAGE), with optional workers=N and
// queue=N. The stage's own options are set with --set
// stages.ID.config.KEY=VALUE. The error says what is wrong, in lowercase.
func ParseInsert(spec string) (Insert, error) {
	in := Insert{Origin: "--insert " + spec}
	head, rest, _ := strings.Cut(spec, ",")
	id, typ, ok := strings.Cut(head, "=")
	in.ID, in.Type = strings.TrimSpace(id), strings.TrimSpace(typ)
	if !ok || in.ID == "" || in.Type == "" {
		return Insert{}, fmt.Errorf("%q: want ID=TYPE,after=STAGE (or before=STAGE), such as count=linecount.tap,after=verify", spec)
	}
	if !stageID.MatchString(in.ID) {
		return Insert{}, fmt.Errorf("%q: stage id %q: use lowercase letters, digits, - and _, starting with a letter", spec, in.ID)
	}
	seen := map[string]bool{}
	for field := range strings.SplitSeq(rest, ",") {
		if strings.TrimSpace(field) == "" && rest == "" {
			break
		}
		key, value, ok := strings.Cut(field, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || value == "" {
			return Insert{}, fmt.Errorf("%q: %q: want key=value (after, before, workers, queue)", spec, field)
		}
		if seen[key] {
			return Insert{}, fmt.Errorf("%q: %s given twice", spec, key)
		}
		seen[key] = true
		var err error
		switch key {
		case "after":
			in.After = value
		case "before":
			in.Before = value
		case "workers":
			in.Workers, err = parseCount(value)
		case "queue":
			in.Queue, err = parseCount(value)
		default:
			return Insert{}, fmt.Errorf("%q: unknown key %q%s (set the stage's options with --set stages.%s.config.KEY=VALUE)",
				spec, key, suggest(key, []string{"after", "before", "queue", "workers"}), in.ID)
		}
		if err != nil {
			return Insert{}, fmt.Errorf("%q: %s: %w", spec, key, err)
		}
	}
	if err := in.checkAnchor(); err != nil {
		return Insert{}, fmt.Errorf("%q: %w", spec, err)
	}
	return in, nil
}

func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1<<16 {
		return 0, fmt.Errorf("want a count between 0 and 65536, got %q", s)
	}
	return n, nil
}

// checkAnchor says what is wrong with where the insert goes.
func (in Insert) checkAnchor() error {
	switch {
	case in.After != "" && in.Before != "":
		return fmt.Errorf("give after or before, not both")
	case in.After == "" && in.Before == "":
		return fmt.Errorf("say where the stage goes: after=STAGE or before=STAGE")
	}
	return nil
}

// splicer inserts stages into the stages tree of a loaded file (the
// tree's "stages" map, each stage a map as YAML parses it).
type splicer struct {
	stages map[string]any
	where  string   // the topology inserted into, for messages: "(built-in) ranged.yaml"
	base   []string // its stage ids before any insert, sorted
	errs   []*KeyError
	pos    func(key string) Position
}

func newSplicer(tree map[string]any, where string, pos func(string) Position) *splicer {
	stages, _ := tree["stages"].(map[string]any)
	if stages == nil {
		stages = map[string]any{}
		tree["stages"] = stages
	}
	var base []string
	for id, v := range stages {
		if m, ok := v.(map[string]any); ok && m["type"] != nil {
			base = append(base, id)
		}
	}
	slices.Sort(base)
	return &splicer{stages: stages, where: where, base: base, pos: pos}
}

// fail records a problem with the insert at key below it ("" for the
// insert itself).
func (s *splicer) fail(in Insert, key, format string, args ...any) {
	e := &KeyError{Key: "insert." + in.ID, Msg: fmt.Sprintf(format, args...)}
	if key != "" {
		e.Key += "." + key
	}
	if in.Origin != "" {
		e.Pos = Position{File: in.Origin}
	} else if s.pos != nil {
		e.Pos = s.pos(e.Key)
	}
	s.errs = append(s.errs, e)
}

// splice adds inserts to the stages, each once the stage it names is
// there: an insert may name another. Among inserts ready at once, those
// going before a stage are placed in id order, those going after one in
// reverse id order, so that two inserts at the same place end up in id
// order along the flow. What cannot be placed is an error: an unknown
// stage, or inserts that name one another in a cycle.
func (s *splicer) splice(inserts []Insert) {
	pending := map[string]Insert{}
	for _, in := range inserts {
		switch {
		case slices.Contains(s.base, in.ID):
			s.fail(in, "", "stage %q is already in %s; an insert adds a new stage: pick another id (to change that stage, set stages.%s.KEY)", in.ID, s.where, in.ID)
		case pending[in.ID].ID != "":
			s.fail(in, "", "stage %q is inserted twice", in.ID)
		case in.Type == "":
			s.fail(in, "type", "missing: an inserted stage needs a type (list them with `dlflow stages`)")
		default:
			if err := in.checkAnchor(); err != nil {
				s.fail(in, "", "%v", err)
				continue
			}
			pending[in.ID] = in
		}
	}
	for len(pending) > 0 {
		ready := s.ready(pending)
		if len(ready) == 0 {
			s.unplaced(pending)
			return
		}
		for _, in := range ready {
			delete(pending, in.ID)
			s.place(in)
		}
	}
}

// ready lists the pending inserts whose stage is there, in the order
// splice documents.
func (s *splicer) ready(pending map[string]Insert) []Insert {
	var before, after []Insert
	for _, id := range slices.Sorted(maps.Keys(pending)) {
		in := pending[id]
		anchor, _ := in.anchor()
		if !s.has(anchor) {
			continue
		}
		if in.Before != "" {
			before = append(before, in)
		} else {
			after = append(after, in)
		}
	}
	slices.Reverse(after)
	return append(before, after...)
}

// has reports whether the stages have id, with a type (a stage the file
// only sets keys of is not there).
func (s *splicer) has(id string) bool {
	m, ok := s.stages[id].(map[string]any)
	return ok && m["type"] != nil
}

// unplaced reports the inserts that no round could place.
func (s *splicer) unplaced(pending map[string]Insert) {
	reported := map[string]bool{} // a cycle is reported once, at its first insert
	for _, id := range slices.Sorted(maps.Keys(pending)) {
		in := pending[id]
		if reported[id] {
			continue
		}
		anchor, key := in.anchor()
		switch _, inserted := pending[anchor]; {
		case anchor == in.ID:
			s.fail(in, key, "a stage cannot go %s itself", key)
		case inserted:
			chain, ids := s.cycle(pending, in)
			for _, id := range ids {
				reported[id] = true
			}
			s.fail(in, key, "a cycle: %s", chain)
		default:
			s.fail(in, key, "no stage %q in %s (stages: %s)%s", anchor, s.where, strings.Join(s.base, ", "),
				suggest(anchor, s.base))
		}
	}
}

// cycle spells the chain of inserts from in back to itself (or to where
// it enters a loop).
func (s *splicer) cycle(pending map[string]Insert, in Insert) (chain string, ids []string) {
	var parts []string
	seen := map[string]bool{}
	for cur := in; !seen[cur.ID]; {
		seen[cur.ID] = true
		ids = append(ids, cur.ID)
		anchor, key := cur.anchor()
		parts = append(parts, cur.ID+" "+key+" "+anchor)
		next, ok := pending[anchor]
		if !ok {
			break
		}
		cur = next
	}
	return strings.Join(parts, ", "), ids
}

// place adds in to the stages and rewires its neighbours.
func (s *splicer) place(in Insert) {
	stage := map[string]any{"type": in.Type}
	if in.Workers > 0 {
		stage["workers"] = int64(in.Workers)
	}
	if in.Queue > 0 {
		stage["queue"] = int64(in.Queue)
	}
	if in.Config != nil {
		stage["config"] = copyMap(in.Config)
	}
	if in.After != "" {
		stage["inputs"] = []any{in.After}
		for _, v := range s.stages {
			if m, ok := v.(map[string]any); ok {
				m["inputs"] = replaceInput(m["inputs"], in.After, in.ID)
			}
		}
	} else {
		target := s.stages[in.Before].(map[string]any)
		inputs := inputsOf(target["inputs"])
		if len(inputs) == 0 {
			s.fail(in, "before", "stage %q is a source (it has no inputs): nothing can go before it; insert after it instead", in.Before)
			return
		}
		stage["inputs"] = toAny(inputs)
		target["inputs"] = []any{in.ID}
	}
	if m, ok := s.stages[in.ID].(map[string]any); ok {
		// The file set keys of the inserted stage under stages: too;
		// they win, as a file's keys win over what it extends.
		for k, v := range m {
			stage[k] = v
		}
	}
	s.stages[in.ID] = stage
}

// replaceInput returns inputs with each old replaced by new.
func replaceInput(inputs any, old, new string) any {
	ids := inputsOf(inputs)
	if !slices.Contains(ids, old) {
		return inputs
	}
	for i, id := range ids {
		if id == old {
			ids[i] = new
		}
	}
	return toAny(ids)
}

// inputsOf reads a stage's inputs as YAML wrote them: a list, or a
// comma-separated string (as Decode reads one).
func inputsOf(v any) []string {
	var ids []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				ids = append(ids, s)
			}
		}
	case string:
		for part := range strings.SplitSeq(x, ",") {
			if part = strings.TrimSpace(part); part != "" {
				ids = append(ids, part)
			}
		}
	}
	return ids
}

func toAny(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}
