package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/sinks/archive"
	"github.com/dlflow/dlflow/sinks/s3"
	_ "github.com/dlflow/dlflow/stages"            // registers the stages the test configs name
	_ "github.com/dlflow/dlflow/stages/decompress" // decompress, for extract.yaml
)

// graphErrors loads file and builds its graph, which must fail with a
// *config.Error, and returns its lines.
func graphErrors(t *testing.T, file string) []string {
	t.Helper()
	cfg, err := config.Load(config.Options{File: file, Environ: []string{}, Sets: []string{"output=" + filepath.Join(t.TempDir(), "out.bin")}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	g, err := cfg.Graph(pipeline.DefaultRegistry)
	if err == nil {
		t.Fatalf("Graph succeeded:\n%s", g.Describe())
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Graph error %v (%T) is not a *config.Error", err, err)
	}
	lines := make([]string, len(ce.Errs))
	for i, ke := range ce.Errs {
		lines[i] = ke.Error()
	}
	return lines
}

// fileSinks returns the configs of the file sinks of g by stage id.
func fileSinks(t *testing.T, g *pipeline.Graph) map[string]*sinks.FileConfig {
	t.Helper()
	out := map[string]*sinks.FileConfig{}
	for _, s := range g.Stages() {
		if fc, ok := s.Config.(*sinks.FileConfig); ok {
			out[s.ID] = fc
		}
	}
	return out
}

func TestGraphOfEveryExample(t *testing.T) {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(examples) < 4 {
		t.Fatalf("examples: %v %v", examples, err)
	}
	for _, path := range examples {
		t.Run(filepath.Base(path), func(t *testing.T) {
			output := filepath.Join(t.TempDir(), "out.bin")
			cfg, err := config.Load(config.Options{File: path, Environ: []string{}, Overrides: flags("output", output, "-o")})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			g, err := cfg.Graph(pipeline.DefaultRegistry)
			if err != nil {
				t.Fatalf("Graph: %v", err)
			}
			fcs := fileSinks(t, g)
			switch {
			case filepath.Base(path) == "s3.yaml": // uploads: no file sink
				if s3, ok := g.Stages()[len(g.Stages())-1].Config.(*s3.Config); len(fcs) != 0 || !ok || s3.Object != output {
					t.Errorf("s3.yaml: file sinks %v, last stage %+v, want an s3.sink of object %s", fcs, g.Stages()[len(g.Stages())-1], output)
				}
			case strings.HasPrefix(filepath.Base(path), "stdout"):
				// Writes to standard output: no file sink.
				if len(fcs) != 0 {
					t.Errorf("file sinks %v in a topology that writes to stdout", fcs)
				}
			case strings.HasPrefix(filepath.Base(path), "extract"):
				// An archive is unpacked into the output, a directory.
				var dirs []string
				for _, s := range g.Stages() {
					if ec, ok := s.Config.(*archive.TarExtractConfig); ok {
						dirs = append(dirs, ec.Dir)
					}
				}
				if len(fcs) != 0 || len(dirs) != 1 || dirs[0] != output {
					t.Errorf("file sinks %v, extraction dirs %v; want one tar.extract into %s", fcs, dirs, output)
				}
			case len(fcs) != 1 || fcs["write"] == nil || fcs["write"].Path != output || fcs["write"].Overwrite:
				t.Errorf("file sinks %v, want write with path %s and no overwrite", fcs, output)
			}
			if g.MemoryBound() <= 0 {
				t.Errorf("memory bound %v", g.MemoryBound())
			}
			if d := g.Describe(); !strings.Contains(d, "peak buffer memory: at most ") {
				t.Errorf("Describe:\n%s", d)
			}
		})
	}
}

func TestGraphWithoutOutput(t *testing.T) {
	file := writeFile(t, "dl.yaml", "stages:\n  fetch:\n    type: http.source\n  write:\n    type: file.sink\n    inputs: [fetch]\n")
	cfg, err := config.Load(config.Options{File: file, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Graph(pipeline.DefaultRegistry)
	if want := file + ":4:3: stages.write.config: path is required (set the top-level output)"; err == nil || err.Error() != want {
		t.Errorf("Graph error:\n got %v\nwant %s", err, want)
	}
}

func TestGraphStageConfigUnknownKey(t *testing.T) {
	file := writeFile(t, "dl.yaml", `stages:
  split:
    type: range.splitter
    config:
      piec: 4MiB
  fetch:
    type: http.reader
    inputs: [split]
    config:
      buffer: lots
  write:
    type: file.sink
    inputs: [fetch]
    config: {mode: positional}
`)
	checkLines(t, graphErrors(t, file),
		file+`:10:7: stages.fetch.config.buffer: invalid byte size "lots": want a number with an optional unit such as 512KiB, 16MiB or 2GB`,
		file+`:5:7: stages.split.config.piec: unknown key "piec" (did you mean "piece"?)`)
}

func TestGraphUnknownStageType(t *testing.T) {
	file := writeFile(t, "dl.yaml", `stages:
  split:
    type: range.splitter
  x:
    type: http.redaer
    inputs: [split]
  write:
    type: file.sink
    inputs: [x]
`)
	lines := graphErrors(t, file)
	if len(lines) != 1 {
		t.Fatalf("errors:\n%s", strings.Join(lines, "\n"))
	}
	prefix := file + `:5:5: stages.x.type: unknown stage type "http.redaer" (did you mean "http.reader"?); known types: `
	known, ok := strings.CutPrefix(lines[0], prefix)
	if !ok {
		t.Fatalf("error:\n%s\nwant the prefix\n%s", lines[0], prefix)
	}
	if want := strings.Join(pipeline.DefaultRegistry.Types(), ", "); known != want {
		t.Errorf("known types %q, want %q", known, want)
	}
}

func TestGraphMiswired(t *testing.T) {
	file := writeFile(t, "dl.yaml", `stages:
  split:
    type: range.splitter
  fetch:
    type: http.reader
    inputs: [split]
    workers: 4
  write:
    type: file.sink
    inputs: [fetch]
  tap:
    type: progress.tap
    inputs: [split]
`)
	checkLines(t, graphErrors(t, file),
		file+`:13:5: stages.tap.inputs: "split" already feeds "fetch"; a chunk has one owner, so chain stages instead of sharing an input`)

	file = writeFile(t, "dl.yaml", `stages:
  split:
    type: range.splitter
  fetch:
    type: http.reader
    inputs: [split]
    workers: 4
  write:
    type: file.sink
    inputs: [fetch]
  extra:
    type: http.source
`)
	checkLines(t, graphErrors(t, file),
		file+`:11:3: stages.extra: its output (ordered bytes) goes nowhere; add a stage with inputs: [extra], such as a sink`,
		file+`:10:5: stages.write.inputs: file.sink in this mode consumes ordered bytes, but fetch delivers bytes; `+
			`add a reorder stage (reorder.heap) before it or set its config mode: positional to take bytes in any order`)
}

func TestGraphFillsFileSinks(t *testing.T) {
	dir := t.TempDir()
	top, own := filepath.Join(dir, "top.bin"), filepath.Join(dir, "own.bin")
	tests := []struct {
		name          string
		yaml          string
		sets          []string
		path          string
		wantOverwrite bool
	}{
		{name: "top-level output", yaml: "output: " + top + "\n" + sinkOnly, path: top},
		{name: "sink path wins", yaml: "output: " + top + "\n" + sinkOnly + "    config: {path: " + own + "}\n", path: own},
		{name: "--set output", yaml: sinkOnly, sets: []string{"output=" + top}, path: top},
		{name: "overwrite propagates", yaml: "output: " + top + "\noverwrite: true\n" + sinkOnly, path: top, wantOverwrite: true},
		{name: "--set overwrite", yaml: "output: " + top + "\n" + sinkOnly, sets: []string{"overwrite=true"}, path: top, wantOverwrite: true},
		{name: "sink overwrite alone", yaml: "output: " + top + "\n" + sinkOnly + "    config: {overwrite: true}\n", path: top, wantOverwrite: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, "dl.yaml", tt.yaml)
			cfg, err := config.Load(config.Options{File: file, Environ: []string{}, Sets: tt.sets})
			if err != nil {
				t.Fatal(err)
			}
			g, err := cfg.Graph(pipeline.DefaultRegistry)
			if err != nil {
				t.Fatal(err)
			}
			fc := fileSinks(t, g)["write"]
			if fc == nil || fc.Path != tt.path || fc.Overwrite != tt.wantOverwrite || fc.Mode != sinks.ModeSequential || !fc.Fsync {
				t.Errorf("write config %+v, want path %s, overwrite %v, sequential with fsync", fc, tt.path, tt.wantOverwrite)
			}
		})
	}
}

const sinkOnly = `stages:
  fetch:
    type: http.source
  write:
    type: file.sink
    inputs: [fetch]
`
