// Package config loads a dlflow configuration and builds the pipeline graph
// it describes.
//
// Values are layered, each layer overriding the one before: built-in
// defaults < the YAML file < environment variables (DLFLOW_ prefix) <
// overrides (what the command line's named flags set) < sets (--set
// key=value). Decoding is strict: an
// unknown or mistyped key is an error that names the file, line, column and
// key path, and every such error is reported, not only the first.
//
// Environment variables map to keys by dropping the prefix, lowercasing, and
// reading a double underscore as a dot: DLFLOW_STAGES__FETCH__WORKERS=16 sets
// stages.fetch.workers, DLFLOW_HTTP__USER_AGENT sets http.user_agent.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/dlflow/dlflow/httpx"

	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable the loader reads.
const EnvPrefix = "DLFLOW_"

// Config is a whole dlflow configuration.
type Config struct {
	URL       string                 `koanf:"url" help:"what to download; --url or the first argument overrides. A list names the file's mirrors after it: url: [A, B]"`
	Output    string                 `koanf:"output" help:"where to write it; -o overrides"`
	Mirrors   []string               `koanf:"mirrors" help:"other URLs of the same file, fetched from at the same time (--mirror adds to them)"`
	Overwrite bool                   `koanf:"overwrite" help:"replace an existing output file"`
	Resume    bool                   `koanf:"resume" help:"continue a partial download (OUTPUT.tmp and its state file) when the server still has the same file; false starts over (--no-resume)"`
	Checksum  string                 `koanf:"checksum" help:"expected digest as algorithm:hex (sha256, sha512, sha1, md5), verified by the topology's hash.tap; --checksum overrides"`
	HTTP      httpx.HTTPConfig       `koanf:"http" help:"how requests reach the server"`
	Stages    map[string]StageConfig `koanf:"stages" help:"the stages of the graph, keyed by stage id"`

	// Writer is handed to the stages as pipeline.Settings.Writer. No file,
	// environment variable or override sets it: a program does, after
	// Load (see dlflow.Request.Writer).
	Writer io.Writer `koanf:"-"`

	file      string
	unused    []string // see Unused
	inserts   []Insert // see Inserts
	positions *Positions
	origins   map[string]string // key -> where a non-file layer set it
}

// StageConfig is one stage of the graph as written in the config.
type StageConfig struct {
	Type    string         `koanf:"type" help:"registered stage type, see dlflow stages"`
	Inputs  []string       `koanf:"inputs" help:"ids of the stages this one consumes from"`
	Workers int            `koanf:"workers" help:"replicas reading the one input (connections, for http.reader)"`
	Queue   int            `koanf:"queue" help:"capacity of the channel into this stage; 0 picks one"`
	Config  map[string]any `koanf:"config" help:"the stage type's own options"`
}

// Options says where Load reads from.
type Options struct {
	// File is the YAML file to read; "" reads none unless Data is set.
	File string
	// Data, when set, is the YAML itself (an embedded topology); File then
	// only names it in error messages.
	Data []byte
	// Environ lists "KEY=value" pairs; nil reads os.Environ().
	Environ []string
	// Overrides set keys above the file and the environment, the way a
	// command line's named flags do.
	Overrides []Override
	// Sets are "key=value" overrides (--set), applied last.
	Sets []string
	// Auto is the built-in topology ("stream", "ranged", ...) that a file's
	// `extends: auto` stands for in this load: the one the download
	// picked. With Auto "", such a file loads only with StagesOptional,
	// and without its stages and inserts.
	Auto string
	// Inserts are stages spliced into the topology after the file's own
	// (see Insert); the command line's --insert.
	Inserts []Insert
	// StagesOptional accepts a configuration without stages: the graph
	// comes from elsewhere (built in code, or a topology picked later).
	// Stage entries that are there are not checked.
	StagesOptional bool
}

// Override sets one key of the configuration.
type Override struct {
	// Key is the dotted key path, such as "output" or "http.user_agent".
	Key string
	// Value is the value; a string is parsed as an environment variable's
	// is ("8" sets an integer key to 8).
	Value any
	// Origin names where the value came from in error messages, such as
	// "--output"; "" names the key.
	Origin string
}

// Error is every problem found in a configuration, one per line.
type Error struct {
	Errs []*KeyError
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Errs))
	for i, ke := range e.Errs {
		lines[i] = ke.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and layers the configuration and decodes it strictly. It does
// not build the graph; see Graph. A problem with the input is an *Error.
func Load(opts Options) (*Config, error) {
	cfg := &Config{HTTP: httpx.DefaultHTTPConfig(), Resume: true, origins: map[string]string{}}
	k := koanf.New(".")

	if err := cfg.loadFile(k, opts); err != nil {
		return nil, err
	}
	var errs []*KeyError
	envLayer, err := loadEnv(opts.Environ)
	if err == nil {
		err = cfg.merge(k, envLayer, func(key string) string {
			return "$" + EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
		})
	}
	if err == nil && len(opts.Overrides) > 0 {
		err = cfg.mergeOverrides(k, opts.Overrides)
	}
	if err != nil {
		return nil, err
	}
	for _, set := range opts.Sets {
		key, value, ok := strings.Cut(set, "=")
		if !ok || strings.TrimSpace(key) == "" {
			errs = append(errs, &KeyError{Pos: Position{File: "--set"}, Msg: fmt.Sprintf("%q: want key=value, such as stages.fetch.workers=16", set)})
			continue
		}
		key = strings.TrimSpace(key)
		if err := k.Load(confmap.Provider(map[string]any{key: value}, "."), nil); err != nil {
			return nil, err
		}
		cfg.origins[key] = "--set " + key
	}

	raw := k.Raw()
	splitURLList(raw)
	errs = append(errs, Decode(raw, cfg, "", cfg.Position)...)
	if !opts.StagesOptional {
		errs = append(errs, cfg.check()...)
	}
	if len(errs) > 0 {
		return nil, &Error{Errs: errs}
	}
	return cfg, nil
}

// splitURLList reads `url: [A, B, ...]` as url A with mirrors B, ...
// (before those of the mirrors key).
func splitURLList(raw map[string]any) {
	list, ok := raw["url"].([]any)
	if !ok || len(list) == 0 {
		return
	}
	raw["url"] = list[0]
	mirrors := append([]any(nil), list[1:]...)
	if m, ok := raw["mirrors"].([]any); ok {
		mirrors = append(mirrors, m...)
	}
	raw["mirrors"] = mirrors
}

func (cfg *Config) loadFile(k *koanf.Koanf, opts Options) error {
	cfg.file = opts.File
	data := opts.Data
	if data == nil && opts.File != "" {
		var err error
		if data, err = os.ReadFile(opts.File); err != nil {
			return fmt.Errorf("read config: %w", err)
		}
	}
	if data == nil {
		switch {
		case len(opts.Inserts) > 0 && opts.StagesOptional:
			// The topology is picked later: the caller splices them.
			cfg.inserts = opts.Inserts
			cfg.insertOrigins(opts.Inserts)
		case len(opts.Inserts) > 0:
			return &Error{Errs: []*KeyError{{Key: "insert", Pos: Position{File: opts.Inserts[0].Origin},
				Msg: "no topology to insert into: give a config file or a built-in topology"}}}
		}
		return nil
	}
	r := &resolver{opts: opts}
	tree, positions := r.resolve(opts.File, data, nil)
	if len(r.errs) > 0 {
		return &Error{Errs: r.errs}
	}
	cfg.positions, cfg.unused = positions, r.unused
	if r.deferred {
		cfg.inserts = r.pending
	}
	cfg.insertOrigins(opts.Inserts)
	// The provider copies the tree: k never changes the cached one.
	return k.Load(treeProvider{tree}, nil)
}

// insertOrigins places the keys of the stages a program inserts at their
// Origin (the command line's --insert).
func (cfg *Config) insertOrigins(inserts []Insert) {
	for _, in := range inserts {
		for _, key := range []string{"", ".type", ".inputs", ".workers", ".queue", ".config"} {
			cfg.origins["stages."+in.ID+key] = in.Origin
		}
	}
}

func asKeyError(err error) *KeyError {
	var ke *KeyError
	if errors.As(err, &ke) {
		return ke
	}
	return &KeyError{Msg: err.Error()}
}

func loadEnv(environ []string) (*koanf.Koanf, error) {
	if environ == nil {
		environ = os.Environ()
	}
	layer := koanf.New(".")
	err := layer.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
			return strings.ReplaceAll(key, "__", "."), value
		},
	}), nil)
	return layer, err
}

func (cfg *Config) mergeOverrides(k *koanf.Koanf, overrides []Override) error {
	layer := koanf.New(".")
	origins := map[string]string{}
	for _, o := range overrides {
		if err := layer.Set(o.Key, o.Value); err != nil {
			return err
		}
		origins[o.Key] = o.Origin
	}
	return cfg.merge(k, layer, func(key string) string {
		if o := origins[key]; o != "" {
			return o
		}
		return key
	})
}

// merge lays layer over k and remembers which keys it set.
func (cfg *Config) merge(k, layer *koanf.Koanf, origin func(key string) string) error {
	for _, key := range layer.Keys() {
		cfg.origins[key] = origin(key)
	}
	return k.Merge(layer)
}

// Position says where a key was set: the file position, or the environment
// variable or flag that overrode it.
func (cfg *Config) Position(key string) Position {
	if o, ok := cfg.origins[key]; ok {
		return Position{File: o}
	}
	return cfg.positions.Lookup(key)
}

var stageID = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// check reports what strict decoding cannot see: missing stages, bad ids
// and missing types. The graph builder checks the wiring.
func (cfg *Config) check() []*KeyError {
	var errs []*KeyError
	fail := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Pos: cfg.Position(key), Msg: fmt.Sprintf(format, args...)})
	}
	if len(cfg.Stages) == 0 {
		fail("stages", "no stages: a config needs at least a source and a sink (see examples/)")
	}
	for _, id := range cfg.StageIDs() {
		if !stageID.MatchString(id) {
			fail("stages."+id, "stage id %q: use lowercase letters, digits, - and _, starting with a letter", id)
		}
		if cfg.Stages[id].Type == "" {
			fail("stages."+id+".type", "missing: every stage needs a type (list them with `dlflow stages`)")
		}
	}
	return errs
}

// StageIDs lists the stage ids in sorted order.
func (cfg *Config) StageIDs() []string {
	ids := make([]string, 0, len(cfg.Stages))
	for id := range cfg.Stages {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Unused lists the stages a file that extends auto set keys of which the
// topology picked does not have ("stages.split"): they were meant for
// another one, and were left out.
func (cfg *Config) Unused() []string { return cfg.unused }

// File is the path of the YAML file the config came from, or "".
func (cfg *Config) File() string { return cfg.file }
