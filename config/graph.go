package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/stages"
)

// Nodes decodes each stage's own config subtree strictly against its type's
// spec and returns the graph's nodes. The top-level output and overwrite
// fill every file sink that does not set its own, and resume: false turns
// resuming off in all of them. The top-level checksum fills every hash.tap
// that does not set its own; a checksum with no hash.tap to verify it is an
// error, since the run could not keep the promise to verify.
func (cfg *Config) Nodes(reg *pipeline.Registry) ([]pipeline.Node, error) {
	var errs []*KeyError
	var nodes []pipeline.Node
	verifiers := 0
	for _, id := range cfg.StageIDs() {
		sc := cfg.Stages[id]
		prefix := "stages." + id
		spec, ok := reg.Lookup(sc.Type)
		if !ok {
			errs = append(errs, cfg.keyError(prefix+".type", "unknown stage type %q%s; known types: %s",
				sc.Type, pipeline.Suggest(sc.Type, reg.Types()), strings.Join(reg.Types(), ", ")))
			continue
		}
		stageCfg := spec.Config()
		if decodeErrs := Decode(sc.Config, stageCfg, prefix+".config", cfg.Position); len(decodeErrs) > 0 {
			errs = append(errs, decodeErrs...)
			continue
		}
		if fc, ok := stageCfg.(*sinks.FileConfig); ok {
			if fc.Path == "" {
				fc.Path = cfg.Output
			}
			fc.Overwrite = fc.Overwrite || cfg.Overwrite
			fc.Resume = fc.Resume && cfg.Resume
		}
		if hc, ok := stageCfg.(*stages.HashConfig); ok {
			if hc.Checksum == "" {
				hc.Checksum = cfg.Checksum
			}
			verifiers++
		}
		nodes = append(nodes, pipeline.Node{
			ID: id, Type: sc.Type, Inputs: sc.Inputs, Workers: sc.Workers, Queue: sc.Queue, Config: stageCfg,
		})
	}
	if cfg.Checksum != "" {
		if _, _, err := httpx.ParseChecksum(cfg.Checksum); err != nil {
			errs = append(errs, cfg.keyError("checksum", "%v", err))
		}
	}
	if cfg.Checksum != "" && verifiers == 0 && len(errs) == 0 {
		errs = append(errs, cfg.keyError("checksum", "a checksum is set, but no stage verifies it; add a stage of type hash.tap in front of the sink (see examples/)"))
	}
	if len(errs) > 0 {
		return nil, &Error{Errs: errs}
	}
	return nodes, nil
}

// Graph builds the validated graph the config describes. Wiring problems
// come back as an *Error whose entries point at the stage's lines.
func (cfg *Config) Graph(reg *pipeline.Registry) (*pipeline.Graph, error) {
	nodes, err := cfg.Nodes(reg)
	if err != nil {
		return nil, err
	}
	g, err := pipeline.Build(reg, nodes)
	if err == nil {
		return g, nil
	}
	var errs []*KeyError
	for _, e := range flatten(err) {
		var we *pipeline.WiringError
		if !errors.As(e, &we) {
			errs = append(errs, &KeyError{Msg: e.Error()})
			continue
		}
		key := "stages." + we.Stage
		if we.Key != "" {
			key += "." + we.Key
		}
		errs = append(errs, cfg.keyError(key, "%s", we.Msg))
	}
	return nil, &Error{Errs: errs}
}

func (cfg *Config) keyError(key, format string, args ...any) *KeyError {
	return &KeyError{Key: key, Pos: cfg.Position(key), Msg: fmt.Sprintf(format, args...)}
}

func flatten(err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}
