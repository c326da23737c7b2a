package dlflow

import (
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
)

// stageKeys says which of the environment's and Sets' keys under stages.
// load applies.
type stageKeys int

const (
	allStageKeys   stageKeys = iota // a topology the user chose: every key applies
	knownStageKeys                  // a topology the library picked: keys of its stages, the others logged
	quietStageKeys                  // knownStageKeys, the others left out silently (a check)
	noStageKeys                     // none: only the top-level keys and http
)

// load reads the configuration of topology with the request layered on:
// the topology's YAML < DLFLOW_ environment < the request's fields and
// Config < its Sets. An automatic topology (before the probe picks one)
// and a graph built in code have no stages in the configuration, only the
// top-level keys and http.
//
// With knownStageKeys, the environment keys and Sets that name stages the
// topology does not have are left out with a log line: they were meant
// for the other built-in topology.
func (d *Download) load(t Topology, keys stageKeys) (*config.Config, error) {
	req := d.req
	opts := config.Options{
		Overrides: req.overrides(),
		Sets:      req.Sets,
		Environ:   req.Environ,
	}
	switch {
	case t.auto() || t.Nodes != nil:
		opts.StagesOptional = true
		opts.File, opts.Data = t.File, t.Data // a file that extends auto: its own keys until the pick
		opts.Inserts = t.inserts()            // for applyInserts, once picked
	case t.Name != "":
		name := builtinName(t.Name)
		data, err := examples.FS.ReadFile(name)
		if err != nil {
			return nil, requestErrorf("Topology", "no built-in topology %q (built-in: %s)", t.Name, strings.Join(append(append(slices.Clip(examples.Topologies), examples.WriterTopologies...), examples.Extract...), ", "))
		}
		opts.File, opts.Data = "(built-in) "+name, data
		if keys != allStageKeys {
			ids := map[string]bool{}
			if keys == knownStageKeys || keys == quietStageKeys {
				var err error
				if ids, err = stageIDs(opts.File, data); err != nil {
					return nil, err
				}
				ids = withInserted(ids, t)
			}
			opts.Sets = d.keepStageKeys(ids, opts.Sets, "--set", setKey, keys == knownStageKeys)
			opts.Environ = d.keepStageKeys(ids, opts.Environ, "environment", envKey, keys == knownStageKeys)
		}
		t.extendOptions(&opts)
	default:
		opts.File, opts.Data, opts.Inserts = t.File, t.Data, t.inserts()
	}
	if opts.Environ == nil {
		// The library reads no environment unless asked; config.Load
		// reads os.Environ() for nil, which keepStageKeys returns for
		// none kept.
		opts.Environ = []string{}
	}
	cfg, err := config.Load(opts)
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		return nil, err
	case err != nil: // the topology file cannot be read
		return nil, &RequestError{Field: "Topology", Err: err}
	}
	if keys == knownStageKeys {
		for _, key := range cfg.Unused() { // a file that extends auto, for the other topology
			d.log.Info().Str("key", key).Str("from", t.File).Msg("ignored: the topology picked for this download has no such stage")
		}
	}
	if req.NoResume {
		cfg.Resume = false
	}
	if req.Writer != nil {
		// The bytes go to the writer: no file to name, none to resume.
		cfg.Output, cfg.Resume, cfg.Writer = "", false, req.Writer
		if d.out != nil {
			cfg.Writer = d.out
		}
	}
	for name, values := range req.Header {
		if cfg.HTTP.Headers == nil {
			cfg.HTTP.Headers = map[string]string{}
		}
		for k := range cfg.HTTP.Headers {
			if strings.EqualFold(k, name) {
				delete(cfg.HTTP.Headers, k) // the request wins over the file
			}
		}
		if len(values) > 0 {
			cfg.HTTP.Headers[name] = values[len(values)-1]
		}
	}
	return cfg, nil
}

// overrides are the request's fields as configuration keys.
func (r *Request) overrides() []config.Override {
	var out []config.Override
	add := func(key string, value any) { out = append(out, config.Override{Key: key, Value: value}) }
	if r.URL != "" {
		add("url", r.URL)
	}
	if r.Path != "" {
		add("output", r.Path)
	}
	if r.Extract != "" {
		add("output", r.Extract)
	}
	if r.Overwrite {
		add("overwrite", true)
	}
	if r.Checksum != "" {
		add("checksum", r.Checksum)
	}
	if r.LimitRate > 0 {
		add("http.limit_rate", r.LimitRate)
	}
	return append(out, r.Config...)
}

// stageIDs lists the stages a built-in topology declares. They never
// change: each topology's are read once.
func stageIDs(file string, data []byte) (map[string]bool, error) {
	if ids, ok := builtinIDs.Load(file); ok {
		return ids.(map[string]bool), nil
	}
	cfg, err := config.Load(config.Options{File: file, Data: data, Environ: []string{}})
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, id := range cfg.StageIDs() {
		ids[id] = true
	}
	builtinIDs.Store(file, ids)
	return ids, nil
}

// builtinIDs holds stageIDs' answers, by file (read only once stored).
var builtinIDs sync.Map

// keepStageKeys drops the entries whose key (as key returns it) names a
// stage not in ids, logging each when logIt.
func (d *Download) keepStageKeys(ids map[string]bool, entries []string, origin string, key func(string) string, logIt bool) []string {
	var kept []string
	for _, e := range entries {
		k := key(e)
		if rest, ok := strings.CutPrefix(k, "stages."); ok {
			id, _, _ := strings.Cut(rest, ".")
			if !ids[id] {
				if logIt {
					d.log.Info().Str("key", k).Str("from", origin).Msg("ignored: the topology picked for this download has no such stage")
				}
				continue
			}
		}
		kept = append(kept, e)
	}
	return kept
}

// setKey is the config key a --set entry sets.
func setKey(set string) string {
	k, _, _ := strings.Cut(set, "=")
	return strings.TrimSpace(k)
}

// envKey is the config key a DLFLOW_ environment entry sets, or "".
func envKey(entry string) string {
	name, _, _ := strings.Cut(entry, "=")
	rest, ok := strings.CutPrefix(name, config.EnvPrefix)
	if !ok {
		return ""
	}
	return strings.ReplaceAll(strings.ToLower(rest), "__", ".")
}
