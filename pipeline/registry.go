package pipeline

import (
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// Def declares a stage type: its name, what it consumes and produces, its
// configuration with defaults, and how to build it. C is the stage's config
// struct; its fields carry `koanf:"name"` tags (and optionally
// `help:"..."`). A Def is registered with [Register] or [MustRegister],
// usually from an init function:
//
//	func init() { pipeline.MustRegister(pipeline.DefaultRegistry, myDef) }
type Def[C any] struct {
	// Type is the name used in config files, such as "http.reader".
	// By convention "<area>.<role>", lowercase.
	Type string
	// Summary is one line for `dlflow stages`.
	Summary string
	// Consumes and Produces are the flows of the stage's input and output.
	Consumes, Produces Flow
	// Defaults is the config a stage gets for keys the user did not set.
	// The config loader decodes the stage's `config:` subtree into a copy.
	Defaults C
	// New builds a stage from its config.
	New func(C) (Stage, error)
	// Ports, when set, overrides Consumes and Produces for a given config
	// (a file sink consumes ordered bytes in sequential mode and any bytes in
	// positional mode).
	Ports func(C) (consumes, produces Flow)
	// Memory, when set, declares the buffer memory the stage holds, for the
	// bound that validate prints.
	Memory func(C) Memory
	// AnyOrder, for a stage whose Ports can take bytes in any order, says
	// how, as a wiring error suggests it: "set config mode: positional".
	AnyOrder string
	// MaxWorkers, when set, is the most replicas the stage can run with a
	// given config (0: any number) and why, for the error Build reports
	// when a node asks for more: "sequential mode writes one stream".
	MaxWorkers func(C) (n int, why string)
	// Connects says each replica holds one network connection of its own
	// (http.reader): a run's connection count, a --connections setting and
	// a batch's per-host limit are the workers of such stages.
	Connects bool
	// Reshapes says the stage's output is not the resource's bytes at the
	// resource's offsets (a decompressor, a decryptor): stages after it
	// see Env.Reshaped, so that a sink neither checks their offsets
	// against Resource.Size nor resumes by them.
	Reshapes bool
}

// TypeInfo is what [Registry.Describe] tells of a stage type with a
// config.
type TypeInfo struct {
	Summary string
	// Consumes and Produces are the flows with the config.
	Consumes, Produces Flow
	// ByConfig says the config can change the flows (Def.Ports is set).
	ByConfig bool
	// MaxWorkers is the most replicas the config allows, 0 for any.
	MaxWorkers int
	// Connects and Reshapes are the Def's.
	Connects, Reshapes bool
}

// newConfig returns a pointer to a copy of d.Defaults.
func (d Def[C]) newConfig() any {
	c := d.Defaults
	return &c
}

// spec is a Def with its config type erased, as the registry and the graph
// builder use it.
type spec struct {
	Type               string
	Summary            string
	Consumes, Produces Flow
	Config             func() any
	New                func(cfg any) (Stage, error)
	Ports              func(cfg any) (consumes, produces Flow)
	Memory             func(cfg any) Memory
	AnyOrder           string
	MaxWorkers         func(cfg any) (n int, why string)
	Connects           bool
	Reshapes           bool
}

func (d Def[C]) erase() spec {
	s := spec{
		Type:     d.Type,
		Summary:  d.Summary,
		Consumes: d.Consumes,
		Produces: d.Produces,
		Config:   d.newConfig,
		AnyOrder: d.AnyOrder,
		Connects: d.Connects,
		Reshapes: d.Reshapes,
	}
	if d.New != nil {
		s.New = func(cfg any) (Stage, error) { return d.New(*cfg.(*C)) }
	}
	if d.Ports != nil {
		s.Ports = func(cfg any) (Flow, Flow) { return d.Ports(*cfg.(*C)) }
	}
	if d.Memory != nil {
		s.Memory = func(cfg any) Memory { return d.Memory(*cfg.(*C)) }
	}
	if d.MaxWorkers != nil {
		s.MaxWorkers = func(cfg any) (int, string) { return d.MaxWorkers(*cfg.(*C)) }
	}
	return s
}

// Memory declares what a stage holds, for [Graph.MemoryBound].
type Memory struct {
	// ChunkSize is the largest chunk the stage emits; 0 means the size of the
	// chunks it receives (a pass-through).
	ChunkSize int64
	// PerReplica is held by each replica besides the chunk in its hands,
	// such as a coalescing buffer being filled.
	PerReplica int64
	// Window, when positive, makes the stage a reorderer holding at most
	// this many bytes; the graph gets a [Window] of this size.
	Window int64
	// MaxRange, when positive, is the largest range the stage hands out;
	// Build checks it fits the graph's reorder window.
	MaxRange int64
	// Gather, when positive, lets each replica take queued input chunks
	// until their buffers add up to this many bytes, to handle them
	// together (a file sink writes them with one call). A replica always
	// may hold one chunk; the bound counts as many whole input chunks as
	// fit in Gather. The automatic queue of such a stage is what 2 MiB
	// leaves of Gather, at least 2 chunks: the chunks the stage holds are
	// its cushion too.
	Gather int64
}

// Registry maps stage type names to their types. It is safe for concurrent
// use. Built-in stages register into [DefaultRegistry]; tests can use an
// isolated registry from [NewRegistry].
type Registry struct {
	mu    sync.RWMutex
	specs map[string]spec
}

// DefaultRegistry is where stage packages register in their init functions.
var DefaultRegistry = NewRegistry()

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{specs: make(map[string]spec)}
}

// Register adds the stage type d declares to r. A duplicate or empty
// name, a missing constructor or an impossible flow is an error.
func Register[C any](r *Registry, d Def[C]) error {
	s := d.erase()
	switch {
	case s.Type == "":
		return fmt.Errorf("register stage type: empty name")
	case s.New == nil:
		return fmt.Errorf("register stage type %q: no New function", s.Type)
	case s.Consumes == Same:
		return fmt.Errorf("register stage type %q: a stage cannot consume %q", s.Type, Same)
	case s.Consumes == None && s.Produces == Same:
		return fmt.Errorf("register stage type %q: a source cannot produce %q", s.Type, Same)
	}
	if reflect.TypeOf(s.Config()).Elem().Kind() == reflect.Interface {
		return fmt.Errorf("register stage type %q: the config must be a type, not an interface", s.Type)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.specs[s.Type]; dup {
		return fmt.Errorf("register stage type %q: already registered", s.Type)
	}
	r.specs[s.Type] = s
	return nil
}

// MustRegister is Register for init functions: it panics on error.
func MustRegister[C any](r *Registry, d Def[C]) {
	if err := Register(r, d); err != nil {
		panic(err)
	}
}

// NewConfig returns a pointer to a fresh config of the type registered
// under name, holding its defaults, for a config loader to decode the
// stage's keys into; false when no type has that name.
func (r *Registry) NewConfig(name string) (any, bool) {
	s, ok := r.spec(name)
	if !ok {
		return nil, false
	}
	return s.Config(), true
}

// Describe tells what a stage of the type registered under name does with
// cfg, a pointer from NewConfig (nil or of another type: the defaults);
// false when no type has that name.
func (r *Registry) Describe(name string, cfg any) (TypeInfo, bool) {
	s, ok := r.spec(name)
	if !ok {
		return TypeInfo{}, false
	}
	if cfg == nil || reflect.TypeOf(cfg) != reflect.TypeOf(s.Config()) {
		cfg = s.Config()
	}
	in, out := s.ports(cfg)
	most, _ := s.maxWorkers(cfg)
	return TypeInfo{
		Summary: s.Summary, Consumes: in, Produces: out, ByConfig: s.Ports != nil,
		MaxWorkers: most, Connects: s.Connects, Reshapes: s.Reshapes,
	}, true
}

// spec returns the erased Def registered under name.
func (r *Registry) spec(name string) (spec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.specs[name]
	return s, ok
}

// Types lists the registered type names in sorted order.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.specs))
	for n := range r.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ports returns the flows of a stage type for a config.
func (s spec) ports(cfg any) (consumes, produces Flow) {
	if s.Ports != nil {
		return s.Ports(cfg)
	}
	return s.Consumes, s.Produces
}

// maxWorkers is the most replicas a config allows, 0 for any.
func (s spec) maxWorkers(cfg any) (int, string) {
	if s.MaxWorkers != nil {
		return s.MaxWorkers(cfg)
	}
	return 0, ""
}

func (s spec) memory(cfg any) Memory {
	if s.Memory != nil {
		return s.Memory(cfg)
	}
	return Memory{}
}
