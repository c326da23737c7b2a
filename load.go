package dlflow

import (
	"errors"
	"slices"
	"strings"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/examples"
)

// load reads the configuration of the download: the topology's YAML <
// DLFLOW_ environment < the request's fields and Config < its Sets. It is
// called once per download. An automatic topology (which the probe picks)
// and a graph built in code have no stages in the configuration: the
// stage keys of the environment and Sets are kept as given, and laid over
// the built-in topology's stages once it is picked (overlayNodes).
func (d *Download) load(t Topology) (*config.Config, error) {
	counts.loads.Add(1)
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
		t.extendOptions(&opts)
	default:
		opts.File, opts.Data, opts.Inserts = t.File, t.Data, t.inserts()
	}
	if opts.Environ == nil {
		// The library reads no environment unless asked; config.Load
		// reads os.Environ() for nil.
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
