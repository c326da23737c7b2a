package dlflow

import (
	"errors"
	"strings"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
)

// Stages added to any topology (issue 19): a Topology carries its base
// (automatic, a built-in name, or a file, which may itself say
// `extends: auto`: resolve) plus the stages inserted into it. The
// topology choice calls pick for the built-in it picked. A topology named
// or picked is loaded with its inserts and the file over it
// (extendOptions), and config.Load splices them in; an automatic one is
// loaded with its inserts left aside (config.Config.Inserts), which
// applyInserts splices into the stages of the built-in picked, for a
// caller that loads once before the pick. For an automatic base, the
// inserts are checked against every built-in topology the probe may pick
// (checkEveryCandidate) before any request.

// extended reports whether t is an automatic topology with stages to
// insert, or a file over the automatic choice: every candidate must then
// take them.
func (t Topology) extended() bool {
	return t.auto() && (len(t.Insert) > 0 || t.extendsAuto)
}

// pick is the topology that runs when the automatic choice picks the
// built-in name: that one, under the file that extends auto (if t is
// one), with t's inserts.
func (t Topology) pick(name string) Topology {
	p := Topology{Name: name, Insert: t.Insert}
	if t.extendsAuto {
		p.File, p.Data, p.extendsAuto, p.fileInserts = t.File, t.Data, true, t.fileInserts
	}
	return p
}

// resolve returns t with what its file says about the automatic choice:
// a File or Data that extends auto (directly or through other files) is
// the automatic topology, with the file over the built-in picked. Any
// other t comes back as it is. A problem with the file is a
// *config.Error, or a *RequestError when it cannot be read.
func (t Topology) resolve() (Topology, error) {
	if t.Name != "" || t.Nodes != nil || t.File == "" && t.Data == nil || t.extendsAuto {
		return t, nil
	}
	ext, err := config.ReadExtension(t.File, t.Data)
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		return t, err
	case err != nil: // the topology file cannot be read
		return t, &RequestError{Field: "Topology", Err: err}
	case ext.Base == config.Auto:
		t.extendsAuto, t.fileInserts = true, ext.Inserts
	}
	return t, nil // any other chain config.Load follows itself
}

// extendOptions completes the options of loading the picked built-in t
// (whose YAML opts holds already): the file that extends auto lies over
// it, and the inserts are spliced in.
func (t Topology) extendOptions(opts *config.Options) {
	if t.extendsAuto {
		opts.Auto = strings.TrimSuffix(t.Name, ".yaml")
		opts.File, opts.Data = t.File, t.Data
	}
	opts.Inserts = t.inserts()
}

// inserts are t's inserts, each named in errors.
func (t Topology) inserts() []config.Insert {
	out := make([]config.Insert, len(t.Insert))
	for i, in := range t.Insert {
		if in.Origin == "" {
			in.Origin = "Topology.Insert " + in.ID
		}
		out[i] = in
	}
	return out
}

// applyInserts returns stages, the decoded stages of the built-in topology
// name that the automatic choice picked, with the stages the download adds
// spliced in: those of a file that extends auto and the request's
// Topology.Insert, which load passed to config.Load before the pick
// (cfg.Inserts). It is the one call a plan that loads the configuration
// once, before the pick, makes for them; load, which loads a topology
// picked or named, has config.Load splice them instead (extendOptions).
// stages is not changed.
func applyInserts(cfg *config.Config, name string, stages map[string]config.StageConfig) (map[string]config.StageConfig, error) {
	if len(cfg.Inserts()) == 0 {
		return stages, nil
	}
	return cfg.Splice(stages, "(built-in) "+builtinName(name), cfg.Inserts())
}

// checkEveryCandidate builds the graph of each built-in topology the probe
// may pick for an extended automatic topology, with the request's stage
// keys laid over it: the inserts must fit every one, or the download fails
// before any request, naming the one they do not fit. It returns the nodes
// of the first (ranged) one, for the probe.
func (d *Download) checkEveryCandidate(p *prep, names []string) ([]pipeline.Node, error) {
	var first []pipeline.Node
	for _, name := range names {
		t := p.topology.pick(name)
		c := *p.cfg
		c.Output = "check" // a file sink needs one to be built; nothing is written
		nodes, _, err := d.overlayNodes(&c, t, p.cfg.Stages)
		if errors.As(err, new(*config.Error)) {
			// Stage keys meant for the other candidate (checkCandidates
			// checks they fit one): the inserts must fit without them.
			nodes, _, err = d.overlayNodes(&c, t, nil)
		}
		if err == nil {
			_, err = d.build(&c, nodes)
		}
		var ce *config.Error
		if errors.As(err, &ce) {
			for _, ke := range ce.Errs {
				if !strings.Contains(ke.Msg, "(built-in) "+builtinName(name)) {
					ke.Msg += " (in " + t.describe() + ", which the automatic choice may pick)"
				}
			}
		}
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = nodes
		}
	}
	return first, nil
}

// describeExtended names a topology with stages added for results and
// logs: "(built-in) ranged.yaml extended by FILE", "... with count
// inserted"; ok is false for any other.
func (t Topology) describeExtended() (string, bool) {
	if t.Name == "" || !t.extendsAuto && len(t.Insert) == 0 {
		return "", false
	}
	s := "(built-in) " + builtinName(t.Name)
	if t.extendsAuto {
		s += " extended by " + Topology{File: t.File, Data: t.Data}.describe()
	}
	if len(t.Insert) > 0 {
		ids := make([]string, len(t.Insert))
		for i, in := range t.Insert {
			ids[i] = in.ID
		}
		s += " with " + strings.Join(ids, ", ") + " inserted"
	}
	return s, true
}
