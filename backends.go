package dlflow

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// A backend is a package of stage types that registers them in
// pipeline.DefaultRegistry when a program imports it, as a database/sql
// driver or an rclone backend does. The dlflow command imports every one;
// this package imports none, so that a program that only downloads files
// links neither the S3 client nor the decompressors. A request that needs
// one the program did not import fails before any I/O with a
// *MissingBackendError naming the import.
type backend struct {
	name   string   // for people: "S3"
	path   string   // the import path
	stages []string // the stage types it registers
}

var backends = []backend{
	{name: "S3", path: "github.com/dlflow/dlflow/sinks/s3", stages: []string{"s3.sink"}},
	{name: "decompress", path: "github.com/dlflow/dlflow/stages/decompress", stages: []string{"decompress"}},
	{name: "archive", path: "github.com/dlflow/dlflow/sinks/archive", stages: []string{"tar.extract"}},
}

// ErrMissingBackend is what a *MissingBackendError wraps. Test for it with
// errors.Is.
var ErrMissingBackend = errors.New("backend not imported")

// MissingBackendError is the error of a request that needs a stage type
// which a backend package registers when imported, in a program that did
// not import it (or with a Client whose registry, see WithRegistry, lacks
// it). It is returned before any network or disk I/O; adding the import
// (a blank import is enough) is the fix:
//
//	import _ "github.com/dlflow/dlflow/sinks/s3"
type MissingBackendError struct {
	// Need is what the request asks for that needs the backend: "s3://
	// output", "extraction", or `stage type "decompress"` for a topology
	// that names it.
	Need string
	// Backend names the backend for people: "S3", "decompress".
	Backend string
	// Import is the package to import: "github.com/dlflow/dlflow/sinks/s3".
	Import string
	// Stage is the stage type that is not registered.
	Stage string
}

func (e *MissingBackendError) Error() string {
	return fmt.Sprintf("%s needs the %s backend: import _ %q", e.Need, e.Backend, e.Import)
}

func (e *MissingBackendError) Unwrap() error { return ErrMissingBackend }

// missingBackend is the error for the first of types that reg lacks and a
// backend registers, or nil. need says what asked for them; "" names the
// stage type instead. A type no backend registers is left for the graph
// builder to report (a typo, with its suggestion).
func missingBackend(reg *pipeline.Registry, need string, types ...string) error {
	for _, typ := range types {
		if _, ok := reg.NewConfig(typ); ok {
			continue
		}
		for _, b := range backends {
			for _, s := range b.stages {
				if s != typ {
					continue
				}
				n := need
				if n == "" {
					n = fmt.Sprintf("stage type %q", typ)
				}
				return &MissingBackendError{Need: n, Backend: b.name, Import: b.path, Stage: typ}
			}
		}
	}
	return nil
}

// checkBackends refuses a request whose topology needs a backend that is
// not registered in the client's registry: the built-in topologies the
// automatic choice may pick for its output (s3.yaml for s3:// output, the
// extract ones for Request.Extract), or the stages of the topology it
// names (cfg, loaded with every stage key, or Topology.Nodes).
func (d *Download) checkBackends(cfg *config.Config) error {
	req, reg := d.req, d.client.reg
	switch {
	case req.Topology.Nodes != nil:
		types := make([]string, 0, len(req.Topology.Nodes))
		for _, n := range req.Topology.Nodes {
			types = append(types, n.Type)
		}
		return missingBackend(reg, "", types...)
	case !req.Topology.auto():
		types := make([]string, 0, len(cfg.Stages))
		for _, id := range cfg.StageIDs() {
			types = append(types, cfg.Stages[id].Type)
		}
		return missingBackend(reg, "", types...)
	}
	need, names := "", req.autoTopologies()
	switch {
	case sinks.IsObjectURL(cfg.Output):
		need, names = "s3:// output", []string{"s3"}
	case req.Extract != "":
		need = "extraction"
	}
	for _, name := range names {
		types, err := builtinTypes(name)
		if err != nil {
			return err
		}
		if err := missingBackend(reg, need, types...); err != nil {
			return err
		}
	}
	return nil
}

// builtinTypesOf caches builtinTypes: a built-in topology never changes.
var builtinTypesOf sync.Map // name -> []string

// builtinTypes lists the stage types of the built-in topology name, sorted.
func builtinTypes(name string) ([]string, error) {
	if t, ok := builtinTypesOf.Load(name); ok {
		return t.([]string), nil
	}
	file := builtinName(name)
	data, err := examples.FS.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("built-in topology %s: %w", file, err)
	}
	cfg, err := config.Load(config.Options{File: "(built-in) " + file, Data: data, Environ: []string{}})
	if err != nil {
		return nil, err
	}
	var types []string
	for _, id := range cfg.StageIDs() {
		types = append(types, cfg.Stages[id].Type)
	}
	sort.Strings(types)
	builtinTypesOf.Store(name, types)
	return types, nil
}
