package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/config"
)

// writeFile writes content to name in a fresh temporary directory and
// returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadErrors runs Load, which must fail with a *config.Error, and returns
// its lines.
func loadErrors(t *testing.T, opts config.Options) []string {
	t.Helper()
	if opts.Environ == nil {
		opts.Environ = []string{}
	}
	cfg, err := config.Load(opts)
	if err == nil {
		t.Fatalf("Load succeeded: %+v", cfg)
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load error %v (%T) is not a *config.Error", err, err)
	}
	lines := make([]string, len(ce.Errs))
	for i, ke := range ce.Errs {
		lines[i] = ke.Error()
	}
	if got := strings.Join(lines, "\n"); got != err.Error() {
		t.Errorf("Error() = %q, want the lines %q", err.Error(), got)
	}
	return lines
}

func checkLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const layeredYAML = `url: https://file.example/a.iso
output: from-file.iso
http:
  user_agent: file-agent
stages:
  fetch:
    type: http.source
    workers: 2
  write:
    type: file.sink
    inputs: [fetch]
`

// flags are overrides as the CLI makes them from its named flags: key,
// value, origin, key, value, origin...
func flags(kvo ...string) []config.Override {
	var out []config.Override
	for i := 0; i+3 <= len(kvo); i += 3 {
		out = append(out, config.Override{Key: kvo[i], Value: kvo[i+1], Origin: kvo[i+2]})
	}
	return out
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, "dl.yaml", layeredYAML)
	env := []string{
		"DLFLOW_URL=https://env.example/a.iso",
		"DLFLOW_OUTPUT=from-env.iso",
		"DLFLOW_STAGES__FETCH__WORKERS=16",
		"DLFLOW_HTTP__USER_AGENT=env-agent",
		"HOME=/root", // no prefix: ignored
	}
	tests := []struct {
		name      string
		opts      config.Options
		url, out  string
		workers   int
		agent     string
		overwrite bool
	}{
		{
			name: "file",
			opts: config.Options{File: file, Environ: []string{}},
			url:  "https://file.example/a.iso", out: "from-file.iso", workers: 2, agent: "file-agent",
		},
		{
			name: "env over file",
			opts: config.Options{File: file, Environ: env},
			url:  "https://env.example/a.iso", out: "from-env.iso", workers: 16, agent: "env-agent",
		},
		{
			name: "flags over env",
			opts: config.Options{File: file, Environ: env, Overrides: flags("url", "https://flag.example/a.iso", "--url")},
			url:  "https://flag.example/a.iso", out: "from-env.iso", workers: 16, agent: "env-agent",
		},
		{
			name: "every flag",
			opts: config.Options{File: file, Environ: env, Overrides: flags("url", "https://flag.example/a.iso", "--url", "output", "from-flag.iso", "-o", "overwrite", "true", "--overwrite")},
			url:  "https://flag.example/a.iso", out: "from-flag.iso", workers: 16, agent: "env-agent", overwrite: true,
		},
		{
			name: "--set over flags",
			opts: config.Options{
				File: file, Environ: env, Overrides: flags("url", "https://flag.example/a.iso", "--url", "output", "from-flag.iso", "-o"),
				Sets: []string{"url=https://set.example/a.iso", " stages.fetch.workers = 4", "http.user_agent=set-agent"},
			},
			url: "https://set.example/a.iso", out: "from-flag.iso", workers: 4, agent: "set-agent",
		},
		{
			name: "no file",
			opts: config.Options{Environ: append(env, "DLFLOW_STAGES__FETCH__TYPE=http.source")},
			url:  "https://env.example/a.iso", out: "from-env.iso", workers: 16, agent: "env-agent",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			fetch := cfg.Stages["fetch"]
			if cfg.URL != tt.url || cfg.Output != tt.out || fetch.Workers != tt.workers || cfg.HTTP.UserAgent != tt.agent || cfg.Overwrite != tt.overwrite {
				t.Errorf("got url %q, output %q, fetch workers %d, user agent %q, overwrite %v\nwant url %q, output %q, fetch workers %d, user agent %q, overwrite %v",
					cfg.URL, cfg.Output, fetch.Workers, cfg.HTTP.UserAgent, cfg.Overwrite, tt.url, tt.out, tt.workers, tt.agent, tt.overwrite)
			}
			if fetch.Type != "http.source" {
				t.Errorf("fetch type %q, want http.source", fetch.Type)
			}
			if cfg.File() != tt.opts.File {
				t.Errorf("File() = %q, want %q", cfg.File(), tt.opts.File)
			}
		})
	}
}

func TestLoadKeepsDefaultsAndFileValues(t *testing.T) {
	file := writeFile(t, "dl.yaml", layeredYAML)
	cfg, err := config.Load(config.Options{File: file, Environ: []string{"DLFLOW_HTTP__MAX_REDIRECTS=3"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.MaxRedirects != 3 || cfg.HTTP.UserAgent != "file-agent" || cfg.HTTP.ConnectTimeout.String() != "10s" {
		t.Errorf("http = %+v: want max_redirects 3 from env, the file's user agent and the default 10s connect timeout", cfg.HTTP)
	}
	if w := cfg.Stages["write"]; w.Type != "file.sink" || len(w.Inputs) != 1 || w.Inputs[0] != "fetch" || w.Workers != 0 {
		t.Errorf("write = %+v", w)
	}
	if ids := strings.Join(cfg.StageIDs(), ","); ids != "fetch,write" {
		t.Errorf("StageIDs = %s", ids)
	}
}

func TestLoadErrorPositions(t *testing.T) {
	t.Run("unknown top-level key", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", "url: https://example.com/a\nurll: https://example.com/b\n"+layeredYAML[strings.Index(layeredYAML, "stages:"):])
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+`:2:1: urll: unknown key "urll" (did you mean "url"?)`)
	})
	t.Run("mistyped workers", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", strings.Replace(layeredYAML, "workers: 2", "workers: eight", 1))
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+`:8:5: stages.fetch.workers: want an integer, got "eight"`)
	})
	t.Run("from env", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", layeredYAML)
		checkLines(t, loadErrors(t, config.Options{File: file, Environ: []string{"DLFLOW_STAGES__FETCH__WORKERS=many", "DLFLOW_HTTP__USER_AGNT=x"}}),
			`$DLFLOW_HTTP__USER_AGNT: http.user_agnt: unknown key "user_agnt" (did you mean "user_agent"?)`,
			`$DLFLOW_STAGES__FETCH__WORKERS: stages.fetch.workers: want an integer, got "many"`)
	})
	t.Run("from --set", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", layeredYAML)
		checkLines(t, loadErrors(t, config.Options{File: file, Sets: []string{"stages.fetch.workers=lots", "overwrite", "=x"}}),
			`--set: "overwrite": want key=value, such as stages.fetch.workers=16`,
			`--set: "=x": want key=value, such as stages.fetch.workers=16`,
			`--set stages.fetch.workers: want an integer, got "lots"`)
	})
	t.Run("from a flag", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", layeredYAML)
		checkLines(t, loadErrors(t, config.Options{File: file, Overrides: flags("overwrite", "maybe", "--overwrite")}),
			`--overwrite: want a boolean, got "maybe"`)
	})
	t.Run("every problem at once", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", `url: 42
overwrite: sure
http:
  max_redirects: [1, 2]
stages:
  Fetch:
    type: http.source
    workers: 1.5
    extra: 1
  write:
    inputs: [Fetch]
`)
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+`:4:3: http.max_redirects: want an integer, got a list`,
			file+`:2:1: overwrite: want a boolean, got "sure"`,
			file+`:9:5: stages.Fetch.extra: unknown key "extra"`,
			file+`:8:5: stages.Fetch.workers: want an integer, got 1.5`,
			file+`:6:3: stages.Fetch: stage id "Fetch": use lowercase letters, digits, - and _, starting with a letter`,
			file+`:10:3: stages.write.type: missing: every stage needs a type (list them with `+"`dlflow stages`"+`)`)
	})
	t.Run("yaml syntax", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", "url: a\nstages:\n  fetch:\n    type: http.source\n    inputs: a: b\n")
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+`:5: mapping values are not allowed in this context`)
	})
	t.Run("yaml syntax in embedded data", func(t *testing.T) {
		checkLines(t, loadErrors(t, config.Options{File: "embedded.yaml", Data: []byte("stages:\n\tfetch: x\n")}),
			`embedded.yaml:2: found character that cannot start any token`)
	})
	t.Run("not a mapping", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", "- fetch\n- write\n")
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+`:1: cannot unmarshal !!seq into map[string]interface {}`)
	})
	t.Run("missing type", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", "stages:\n  fetch:\n    workers: 2\n")
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+":2:3: stages.fetch.type: missing: every stage needs a type (list them with `dlflow stages`)")
	})
	t.Run("bad stage id", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", "stages:\n  fetch:\n    type: http.source\n  2nd:\n    type: file.sink\n    inputs: [fetch]\n")
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+`:4:3: stages.2nd: stage id "2nd": use lowercase letters, digits, - and _, starting with a letter`)
	})
	t.Run("empty stages", func(t *testing.T) {
		file := writeFile(t, "dl.yaml", "url: https://example.com/a\nstages: {}\n")
		checkLines(t, loadErrors(t, config.Options{File: file}),
			file+`:2:1: stages: no stages: a config needs at least a source and a sink (see examples/)`)
	})
	t.Run("no stages at all", func(t *testing.T) {
		checkLines(t, loadErrors(t, config.Options{}),
			`stages: no stages: a config needs at least a source and a sink (see examples/)`)
	})
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := config.Load(config.Options{File: path, Environ: []string{}})
	var ce *config.Error
	if err == nil || errors.As(err, &ce) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing file) = %v; want a read error wrapping os.ErrNotExist", err)
	}
	if want := "read config: open " + path + ": no such file or directory"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func FuzzLoad(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(examples) == 0 {
		f.Fatalf("no examples: %v", err)
	}
	for _, path := range examples {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"{}",
		"~",
		"[]",
		"- a\n- b\n",
		"stages:\n  fetch: {type: http.source\n",
		"stages:\n\tfetch: x\n",
		"stages: 3\n",
		"stages:\n  fetch: [1, 2]\n",
		"stages:\n  fetch:\n    type: [x]\n    inputs: fetch\n    workers: -1\n    config: 7\n",
		"url: &a x\noutput: *a\nhttp: {<<: {user_agent: y}}\n",
		"1: 2\ntrue: false\n",
		"stages.fetch.type: http.source\n",
		"http:\n  headers: {a: [1]}\n  connect_timeout: forever\n",
		"a: !!binary aGVsbG8=\n",
		"x: 99999999999999999999999\nstages:\n  f:\n    workers: 99999999999999999999999\n",
		"%YAML 1.2\n---\nurl: x\n---\nurl: y\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Load(config.Options{File: "fuzz.yaml", Data: data, Environ: []string{}})
		if err == nil {
			if cfg == nil || len(cfg.Stages) == 0 {
				t.Fatalf("Load succeeded with %+v", cfg)
			}
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) || len(ce.Errs) == 0 {
			t.Fatalf("Load error %v (%T) is not a *config.Error with entries", err, err)
		}
	})
}
