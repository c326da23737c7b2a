package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/pipeline"
)

// Nodes decodes each stage's own config subtree strictly against its type's
// spec and returns the graph's nodes. A stage config that takes run-wide
// settings (pipeline.SettingsTaker) gets the top-level output, overwrite,
// resume and checksum after its own keys are decoded.
func (cfg *Config) Nodes(reg *pipeline.Registry) ([]pipeline.Node, error) {
	var errs []*KeyError
	var nodes []pipeline.Node
	settings := cfg.Settings()
	for _, id := range cfg.StageIDs() {
		sc := cfg.Stages[id]
		prefix := "stages." + id
		stageCfg, ok := reg.NewConfig(sc.Type)
		if !ok {
			errs = append(errs, cfg.keyError(prefix+".type", "unknown stage type %q%s; known types: %s",
				sc.Type, suggest(sc.Type, reg.Types()), strings.Join(reg.Types(), ", ")))
			continue
		}
		if decodeErrs := Decode(sc.Config, stageCfg, prefix+".config", cfg.Position); len(decodeErrs) > 0 {
			errs = append(errs, decodeErrs...)
			continue
		}
		if st, ok := stageCfg.(pipeline.SettingsTaker); ok {
			st.TakeSettings(settings)
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
	if len(errs) > 0 {
		return nil, &Error{Errs: errs}
	}
	return nodes, nil
}

// Settings are the run-wide settings of the config's top level.
func (cfg *Config) Settings() pipeline.Settings {
	return pipeline.Settings{Output: cfg.Output, Overwrite: cfg.Overwrite, Resume: cfg.Resume, Checksum: cfg.Checksum, Writer: cfg.Writer}
}

// Graph builds the validated graph the config describes. Wiring problems
// come back as an *Error whose entries point at the stage's lines.
func (cfg *Config) Graph(reg *pipeline.Registry) (*pipeline.Graph, error) {
	nodes, err := cfg.Nodes(reg)
	if err != nil {
		return nil, err
	}
	return cfg.Build(reg, nodes)
}

// Build builds the graph of nodes that Nodes returned (and the caller may
// have changed, such as their workers): Graph in two steps. Wiring problems
// come back as an *Error whose entries point at the stage's lines.
func (cfg *Config) Build(reg *pipeline.Registry, nodes []pipeline.Node) (*pipeline.Graph, error) {
	g, err := pipeline.Build(reg, nodes)
	if err == nil {
		if cfg.Checksum != "" && len(pipeline.Reporters[pipeline.Verifier](g)) == 0 {
			// The run could not keep the promise to verify.
			return nil, &Error{Errs: []*KeyError{cfg.keyError("checksum",
				"a checksum is set, but no stage verifies it; add a stage of type hash.tap in front of the sink (see examples/)")}}
		}
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
