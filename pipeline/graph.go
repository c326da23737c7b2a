package pipeline

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Node is one stage of a graph as the user declares it, in a config file or
// in code.
type Node struct {
	// ID names the stage within the graph; other nodes list it in Inputs.
	ID string
	// Type is a registered stage type.
	Type string
	// Inputs are the ids of the stages whose output this stage consumes.
	// Several inputs merge into one channel (and lose their order).
	Inputs []string
	// Workers is the number of replicas reading the one input channel; 0
	// means 1. Replicas of a stage that produces ordered bytes produce bytes
	// in any order.
	Workers int
	// Queue is the capacity of the channel into this stage; 0 picks one from
	// the chunk size (about 2 MiB of chunks, between 2 and 64), 64 for
	// ranges, none for a tap (a stage that passes its chunks on as they
	// are), and less for a stage with Memory.Gather, which counts it.
	Queue int
	// Config is a *C of the type's Def[C] (what Registry.NewConfig
	// returns), already decoded; nil means the defaults.
	Config any
}

// WiringError is a problem with one node of a graph, found by Build before
// any I/O. Key names the node's field at fault ("type", "inputs", "workers",
// "queue", "config") so that a config loader can point at the line.
type WiringError struct {
	Stage string
	Key   string
	Msg   string
}

func (e *WiringError) Error() string { return fmt.Sprintf("stage %q: %s", e.Stage, e.Msg) }

// Graph is a validated, wired set of stages, ready to run. A Graph can be run
// more than once, but not concurrently.
type Graph struct {
	nodes  []*node // sources first, each node after its inputs
	window int64
	// windowOwner is the id of the stage that declares the window.
	windowOwner string
}

type node struct {
	Node
	spec     spec
	stage    Stage
	in       Flow // the flow arriving on the input channel
	out      Flow // what the stage emits, after Same and replicas are resolved
	inputs   []*node
	consumer *node
	queue    int   // capacity of this node's input channel
	chunk    int64 // largest chunk on this node's output edge
	mem      Memory
	reshaped bool // a stage before it reshapes the bytes (Def.Reshapes)
}

const (
	autoQueueBytes = 2 << 20
	autoQueueMin   = 2
	autoQueueMax   = 64
	// autoQueueRanges is the queue of a stage that consumes ranges. A
	// queued range holds no bytes (the window, if any, counts its bytes
	// from when it was handed out), and a reader that finds the ranges
	// continuing its own queued behind it can fetch them with one request.
	autoQueueRanges = 64
)

// Build checks the nodes against the registry and wires them. It does no
// I/O. It reports every problem it finds, each as a *WiringError, joined
// with errors.Join.
func Build(reg *Registry, nodes []Node) (*Graph, error) {
	var errs []error
	fail := func(id, key, format string, args ...any) {
		errs = append(errs, &WiringError{Stage: id, Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	all := newNodes(reg, nodes, fail)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	order, cyclic := topoSort(all)
	if cyclic != nil {
		return nil, &WiringError{Stage: cyclic.ID, Key: "inputs", Msg: "the inputs form a cycle"}
	}

	g := &Graph{nodes: order}
	var windowOwner *node
	for _, n := range order {
		g.wire(n, fail)
		if n.mem.Window > 0 {
			if windowOwner != nil {
				fail(n.ID, "type", "only one stage may reorder with a window; %q already does", windowOwner.ID)
			}
			windowOwner, g.window, g.windowOwner = n, n.mem.Window, n.ID
		}
	}
	if windowOwner != nil {
		for _, n := range order {
			if n.mem.MaxRange > g.window {
				fail(n.ID, "config", "hands out ranges of %v, larger than the reorder window of %q (%v); lower the range size or raise the window", ByteSize(n.mem.MaxRange), windowOwner.ID, ByteSize(g.window))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return g, nil
}

// newNodes checks each node against the registry, builds its stage and
// links it to its inputs, reporting each problem to fail. The nodes come
// back in declaration order, without those it could not build.
func newNodes(reg *Registry, nodes []Node, fail func(id, key, format string, args ...any)) []*node {
	byID := make(map[string]*node, len(nodes))
	declared := make(map[string]bool, len(nodes)) // including stages rejected below
	var all []*node
	for _, n := range nodes {
		switch {
		case n.ID == "":
			fail(n.ID, "", "a stage needs an id")
			continue
		case declared[n.ID]:
			fail(n.ID, "", "two stages have this id")
			continue
		}
		declared[n.ID] = true
		if nd := newNode(reg, n, fail); nd != nil {
			byID[n.ID] = nd
			all = append(all, nd)
		}
	}

	for _, n := range all {
		for _, id := range n.Inputs {
			p := byID[id]
			switch {
			case p == nil && declared[id]:
				// id's own problem is already reported
			case p == nil:
				fail(n.ID, "inputs", "input %q is not a stage%s", id, suggest(id, keys(byID)))
			case p == n:
				fail(n.ID, "inputs", "a stage cannot be its own input")
			case p.consumer != nil && p.consumer != n:
				fail(n.ID, "inputs", "%q already feeds %q; a chunk has one owner, so chain stages instead of sharing an input", id, p.consumer.ID)
			default:
				p.consumer = n
				n.inputs = append(n.inputs, p)
			}
		}
	}
	return all
}

// newNode checks n against its type and builds its stage; nil when it
// reported a problem that leaves no stage.
func newNode(reg *Registry, n Node, fail func(id, key, format string, args ...any)) *node {
	spec, ok := reg.spec(n.Type)
	if !ok {
		fail(n.ID, "type", "unknown stage type %q%s (known types: %s)", n.Type, suggest(n.Type, reg.Types()), strings.Join(reg.Types(), ", "))
		return nil
	}
	if n.Workers < 0 {
		fail(n.ID, "workers", "workers must be at least 1, got %d", n.Workers)
	}
	if n.Workers == 0 {
		n.Workers = 1
	}
	if n.Queue < 0 {
		fail(n.ID, "queue", "queue must be 0 (automatic) or more, got %d", n.Queue)
	}
	if n.Config == nil {
		n.Config = spec.Config()
	} else if want, got := reflect.TypeOf(spec.Config()), reflect.TypeOf(n.Config); want != got {
		fail(n.ID, "config", "config for %s must be a %v, got %v", n.Type, want, got)
		return nil
	}
	stage, err := spec.New(n.Config)
	if err != nil {
		fail(n.ID, "config", "%v", err)
		return nil
	}
	if most, why := spec.maxWorkers(n.Config); most > 0 && n.Workers > most {
		fail(n.ID, "workers", "%s runs at most %d %s (%s); set workers: %d", n.Type, most, plural(most, "worker"), why, most)
	}
	in, out := spec.ports(n.Config)
	return &node{Node: n, spec: spec, stage: stage, in: in, out: out, mem: spec.memory(n.Config)}
}

// wire resolves the flows and queue of n, whose inputs are already wired.
func (g *Graph) wire(n *node, fail func(id, key, format string, args ...any)) {
	declaredIn := n.in
	switch {
	case declaredIn == None && len(n.inputs) > 0:
		fail(n.ID, "inputs", "%s is a source and takes no inputs", n.Type)
		return
	case declaredIn != None && len(n.inputs) == 0:
		fail(n.ID, "inputs", "%s consumes %s; list the stage that produces them in inputs", n.Type, declaredIn)
		return
	}

	var arriving Flow
	for _, p := range n.inputs {
		n.reshaped = n.reshaped || p.reshaped || p.spec.Reshapes
		f := p.out
		if f == Same {
			return // p could not be wired; its error is reported
		}
		if arriving != None && arriving != f {
			if arriving.isBytes() && f.isBytes() {
				f = Bytes
			} else {
				fail(n.ID, "inputs", "inputs deliver both %s and %s", arriving, f)
				return
			}
		}
		if len(n.inputs) > 1 && f == OrderedBytes {
			f = Bytes // merged inputs interleave
		}
		arriving = f
	}
	if declaredIn != None && !arriving.carries(declaredIn) {
		fail(n.ID, "inputs", "%s", flowMismatch(n, arriving))
		return
	}
	if declaredIn != None {
		n.in = arriving
	}

	if n.out == Same {
		n.out = n.in
	}
	if n.out == OrderedBytes && n.Workers > 1 {
		n.out = Bytes
	}
	if n.out != None && n.consumer == nil {
		fail(n.ID, "", "its output (%s) goes nowhere; add a stage with inputs: [%s], such as a sink", n.out, n.ID)
	}

	n.chunk = n.mem.ChunkSize
	if n.chunk == 0 {
		n.chunk = n.inChunk()
	}
	n.queue = n.Queue
	if n.queue == 0 && len(n.inputs) > 0 {
		n.queue = autoQueue(n.in, n.inChunk())
		switch c := n.inChunk(); {
		case n.tap():
			n.queue = tapQueue
		case n.mem.Gather > 0 && c > 0:
			// What a gathering stage holds in its writes is its cushion
			// too: the queue gets what autoQueueBytes leaves of it.
			n.queue = int(min(max((autoQueueBytes-n.held())/c, autoQueueMin), int64(n.queue)))
		}
	}
}

// tapQueue is the automatic queue of a tap (see node.tap): none, a tap
// takes each chunk from the hand of the stage before it. Its work is
// short (a counter, a hash), so it is waiting when the next chunk comes.
const tapQueue = 0

// tap reports whether n passes the chunks it receives on as they are (it
// produces Same, in chunks of its input's size) to a stage after it. Such
// a stage gets no automatic queue (tapQueue): the queue that lets the
// network run on while the disk stalls is the sink's, and a queue in
// front of each tap as well only multiplies the memory a stall holds
// (issue 20: stream.yaml's two taps at 8 chunks each held 4 MiB of a
// 26 MiB peak RSS).
func (n *node) tap() bool {
	return n.spec.Produces == Same && n.mem.ChunkSize == 0 && n.consumer != nil && n.in.isBytes()
}

func (n *node) inChunk() int64 {
	var c int64
	for _, p := range n.inputs {
		c = max(c, p.chunk)
	}
	return c
}

// held is the most input a replica holds at once: one chunk, or as many
// as fit in its Memory.Gather.
func (n *node) held() int64 {
	c := n.inChunk()
	if c <= 0 || n.mem.Gather <= c {
		return c
	}
	return n.mem.Gather / c * c
}

func autoQueue(f Flow, chunk int64) int {
	if f == Ranges {
		return autoQueueRanges
	}
	if !f.isBytes() || chunk <= 0 {
		return 1
	}
	return int(min(max(autoQueueBytes/chunk, autoQueueMin), autoQueueMax))
}

func flowMismatch(n *node, arriving Flow) string {
	from := n.inputs[0].ID + " delivers"
	if len(n.inputs) > 1 {
		from = "its inputs deliver"
	}
	msg := fmt.Sprintf("%s consumes %s, but %s %s", n.Type, n.spec.Consumes, from, arriving)
	if n.spec.Ports != nil {
		msg = fmt.Sprintf("%s in this mode consumes %s, but %s %s", n.Type, n.in, from, arriving)
	}
	switch {
	case n.in == OrderedBytes && arriving == Bytes:
		msg += "; add a reorder stage (reorder.heap) before it"
		switch {
		case n.spec.AnyOrder != "":
			msg += " or " + n.spec.AnyOrder + " to take bytes in any order"
		case n.spec.Ports != nil:
			msg += " or switch it to a mode that takes bytes in any order (see `dlflow stages " + n.Type + "`)"
		}
	case n.in.isBytes() && arriving == Ranges:
		msg += "; ranges must go through a reader (http.reader) first"
	case n.in == Ranges && arriving.isBytes():
		msg += "; ranges come from a splitter (range.splitter)"
	}
	return msg
}

func topoSort(all []*node) (order []*node, cyclic *node) {
	pending := make(map[*node]int, len(all))
	var ready []*node
	for _, n := range all {
		pending[n] = len(n.inputs)
		if len(n.inputs) == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		if c := n.consumer; c != nil {
			if pending[c]--; pending[c] == 0 {
				ready = append(ready, c)
			}
		}
	}
	if len(order) < len(all) {
		for _, n := range all {
			if pending[n] > 0 {
				return nil, n
			}
		}
	}
	return order, nil
}

// StageInfo describes one wired stage of a graph.
type StageInfo struct {
	ID, Type        string
	Workers         int
	Inputs          []string
	Consumes        Flow  // as it arrives on the input channel
	Produces        Flow  // as it leaves
	Queue           int   // capacity of the input channel
	InChunk, Chunk  int64 // largest chunk in and out
	Config          any
	HoldsPerReplica int64
	ReorderWindow   int64
	Sink, Source    bool
	// Connects: each replica holds a network connection (Def.Connects).
	Connects bool
	// Reshaped: a stage before this one reshapes the bytes (Def.Reshapes).
	Reshaped bool
}

// Stages describes the wired stages, sources first, each after its inputs.
func (g *Graph) Stages() []StageInfo {
	infos := make([]StageInfo, 0, len(g.nodes))
	for _, n := range g.nodes {
		si := StageInfo{
			ID: n.ID, Type: n.Type, Workers: n.Workers, Inputs: n.Inputs,
			Consumes: n.in, Produces: n.out, Queue: n.queue,
			InChunk: n.inChunk(), Chunk: n.chunk, Config: n.Config,
			HoldsPerReplica: n.mem.PerReplica + n.held(), ReorderWindow: n.mem.Window,
			Sink: n.out == None, Source: len(n.inputs) == 0,
			Connects: n.spec.Connects, Reshaped: n.reshaped,
		}
		infos = append(infos, si)
	}
	return infos
}

// Stage returns the stage value of the node with the given id, so a caller
// can reach what the stage exposes (a progress counter, a digest) before,
// during or after a run.
func (g *Graph) Stage(id string) (Stage, bool) {
	for _, n := range g.nodes {
		if n.ID == id {
			return n.stage, true
		}
	}
	return nil, false
}

// Connections is the most network connections a run of g holds at once:
// the workers of every stage whose Def Connects, or 0 when none does.
func (g *Graph) Connections() int {
	total := 0
	for _, n := range g.nodes {
		if n.spec.Connects {
			total += n.Workers
		}
	}
	return total
}

// MaxRange is the largest range a stage of g hands out (Memory.MaxRange:
// a splitter's piece), or 0 when none does.
func (g *Graph) MaxRange() int64 {
	var most int64
	for _, n := range g.nodes {
		most = max(most, n.mem.MaxRange)
	}
	return most
}

// MemoryBound is the most buffer memory a run of g can borrow at once: every
// queue full of its largest chunks, every replica holding its own buffers
// and a chunk in hand, and the reorder window full.
func (g *Graph) MemoryBound() ByteSize {
	var total int64
	for _, n := range g.nodes {
		if len(n.inputs) > 0 && n.in.isBytes() {
			total += int64(n.queue) * n.inChunk()
		}
		total += int64(n.Workers) * (n.mem.PerReplica + n.held())
	}
	return ByteSize(total + g.window)
}

// Describe renders the wiring and the memory bound as text, one stage a line,
// for `dlflow validate`.
func (g *Graph) Describe() string {
	var b strings.Builder
	width := 0
	for _, n := range g.nodes {
		width = max(width, len(n.ID))
	}
	for _, s := range g.Stages() {
		workers := "1 worker"
		if s.Workers > 1 {
			workers = fmt.Sprintf("%d workers", s.Workers)
		}
		fmt.Fprintf(&b, "%-*s  %-15s %-10s", width, s.ID, s.Type, workers)
		if !s.Source {
			fmt.Fprintf(&b, "  <- %s via queue %d", strings.Join(s.Inputs, ", "), s.Queue)
			if s.Consumes.isBytes() {
				fmt.Fprintf(&b, " x %v", ByteSize(s.InChunk))
			}
			fmt.Fprintf(&b, " (%s)", s.Consumes)
		}
		if !s.Sink {
			fmt.Fprintf(&b, "  -> %s", s.Produces)
			if s.Produces.isBytes() {
				fmt.Fprintf(&b, " in chunks up to %v", ByteSize(s.Chunk))
			}
		}
		if s.ReorderWindow > 0 {
			fmt.Fprintf(&b, ", window %v", ByteSize(s.ReorderWindow))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "peak buffer memory: at most %s (%d bytes)\n", ceilMiB(g.MemoryBound()), int64(g.MemoryBound()))
	return b.String()
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to got
// within an edit distance of 2 (and shorter than got itself), or "". Error
// messages about names append it.
func suggest(got string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(got, c); d < bestDist && d < len(got) {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// ceilMiB renders a bound in MiB rounded up to a tenth, so that "at most"
// stays true.
func ceilMiB(b ByteSize) string {
	tenths := (int64(b)*10 + (1<<20 - 1)) >> 20
	return fmt.Sprintf("%d.%dMiB", tenths/10, tenths%10)
}
