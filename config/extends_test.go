package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
)

// writeIn writes a config file into dir and returns its path.
func writeIn(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// flow returns the stage ids of g, each after its inputs, as "id<-inputs".
func flow(t *testing.T, opts config.Options) string {
	t.Helper()
	opts.Environ = []string{}
	opts.Sets = append(opts.Sets, "output="+filepath.Join(t.TempDir(), "out.bin"))
	cfg, err := config.Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	g, err := cfg.Graph(pipeline.DefaultRegistry)
	if err != nil {
		t.Fatalf("Graph: %v", err)
	}
	var parts []string
	for _, s := range g.Stages() {
		parts = append(parts, s.ID+"<-"+strings.Join(s.Inputs, ","))
	}
	return strings.Join(parts, " ")
}

func TestExtendsInsert(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"after", "extends: ranged\ninsert:\n  count:\n    type: progress.tap\n    after: verify\n",
			"split<- fetch<-split progress<-fetch verify<-progress count<-verify write<-count"},
		{"before", "extends: ranged.yaml\ninsert:\n  count: {type: progress.tap, before: verify}\n",
			"split<- fetch<-split progress<-fetch count<-progress verify<-count write<-verify"},
		{"chained", "extends: stream\ninsert:\n  b: {type: progress.tap, after: a}\n  a: {type: progress.tap, after: fetch}\n",
			"fetch<- a<-fetch b<-a progress<-b verify<-progress write<-verify"},
		{"same place in id order", "extends: stream\ninsert:\n  b: {type: progress.tap, after: verify}\n  a: {type: progress.tap, after: verify}\n  d: {type: progress.tap, before: write}\n  c: {type: progress.tap, before: write}\n",
			"fetch<- progress<-fetch verify<-progress a<-verify b<-a c<-b d<-c write<-d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeIn(t, dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.yaml)
			if got := flow(t, config.Options{File: file}); got != tc.want {
				t.Errorf("flow\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// The file's keys lie over the base's, a base may be a file that extends
// another, and the inserted stage's own config decodes strictly.
func TestExtendsFileOverBase(t *testing.T) {
	dir := t.TempDir()
	writeIn(t, dir, "base.yaml", "extends: ranged\nchecksum: sha256:"+strings.Repeat("ab", 32)+"\nstages:\n  fetch: {workers: 3}\n")
	file := writeIn(t, dir, "top.yaml", "extends: base.yaml\nstages:\n  split:\n    config: {piece: 1MiB}\ninsert:\n  count:\n    type: progress.tap\n    after: fetch\n    config: {interval: 7s}\n")
	cfg, err := config.Load(config.Options{File: file, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Stages["fetch"].Workers != 3 || cfg.Stages["fetch"].Type != "http.reader" || cfg.Stages["split"].Config["piece"] != "1MiB" {
		t.Errorf("stages %+v", cfg.Stages)
	}
	if cfg.Checksum == "" || !reflect.DeepEqual(cfg.Stages["progress"].Inputs, []string{"count"}) || cfg.Stages["count"].Config["interval"] != "7s" {
		t.Errorf("checksum %q, progress %+v, count %+v", cfg.Checksum, cfg.Stages["progress"], cfg.Stages["count"])
	}
	// The base's keys still point at the base's lines.
	if pos := cfg.Position("stages.fetch.workers"); !strings.HasSuffix(pos.File, "base.yaml") || pos.Line != 4 {
		t.Errorf("stages.fetch.workers at %v, want base.yaml:4", pos)
	}
	if pos := cfg.Position("stages.count.config.interval"); !strings.HasSuffix(pos.File, "top.yaml") || pos.Line != 9 {
		t.Errorf("stages.count.config.interval at %v, want top.yaml:9", pos)
	}
}

func TestExtendsAuto(t *testing.T) {
	dir := t.TempDir()
	file := writeIn(t, dir, "auto.yaml", "extends: auto\nurl: http://example.com/f\nstages:\n  split:\n    config: {piece: 8MiB}\ninsert:\n  count:\n    type: progress.tap\n    after: verify\n")
	for auto, want := range map[string]string{
		"ranged": "split<- fetch<-split progress<-fetch verify<-progress count<-verify write<-count",
		"stream": "fetch<- progress<-fetch verify<-progress count<-verify write<-count",
	} {
		if got := flow(t, config.Options{File: file, Auto: auto}); got != want {
			t.Errorf("auto %s:\n got %s\nwant %s", auto, got, want)
		}
	}
	cfg, err := config.Load(config.Options{File: file, Auto: "stream", Environ: []string{}})
	if err != nil || !reflect.DeepEqual(cfg.Unused(), []string{"stages.split"}) {
		t.Errorf("stream: unused %v, %v; want stages.split left out", cfg.Unused(), err)
	}
	cfg, err = config.Load(config.Options{File: file, Auto: "ranged", Environ: []string{}})
	if err != nil || cfg.Unused() != nil || cfg.Stages["split"].Config["piece"] != "8MiB" {
		t.Errorf("ranged: unused %v, split %+v, %v", cfg.Unused(), cfg.Stages["split"], err)
	}
	// Before the pick: the file's own keys, its stages a layer, its
	// inserts left for Splice once the caller picked.
	cfg, err = config.Load(config.Options{File: file, StagesOptional: true, Environ: []string{}})
	if err != nil || cfg.URL != "http://example.com/f" || len(cfg.Stages) != 1 || cfg.Stages["split"].Config["piece"] != "8MiB" ||
		len(cfg.Inserts()) != 1 || cfg.Inserts()[0].ID != "count" {
		t.Fatalf("before the pick: url %q, stages %v, inserts %v, %v", cfg.URL, cfg.Stages, cfg.Inserts(), err)
	}
	ranged, err := config.Load(config.Options{File: "(built-in) ranged.yaml", Data: builtinData(t, "ranged.yaml"), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	spliced, err := cfg.Splice(ranged.Stages, "(built-in) ranged.yaml", cfg.Inserts())
	if err != nil || spliced["count"].Type != "progress.tap" || !reflect.DeepEqual(spliced["count"].Inputs, []string{"verify"}) ||
		!reflect.DeepEqual(spliced["write"].Inputs, []string{"count"}) || !reflect.DeepEqual(ranged.Stages["write"].Inputs, []string{"verify"}) {
		t.Errorf("Splice: %+v, %v; the caller's stages %+v", spliced, err, ranged.Stages)
	}
	bad := cfg.Inserts()[0]
	bad.After = "verifyy"
	_, err = cfg.Splice(ranged.Stages, "(built-in) ranged.yaml", []config.Insert{bad})
	if want := file + `:9:5: insert.count.after: no stage "verifyy" in (built-in) ranged.yaml`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Splice of a wrong insert: %v, want %s...", err, want)
	}
	_, err = config.Load(config.Options{File: file, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "auto.yaml:1:1: extends: auto: the topology is picked once the server answered") {
		t.Errorf("auto without a pick: %v", err)
	}
	ext, err := config.ReadExtension(file, nil)
	if err != nil || ext.Base != config.Auto || !reflect.DeepEqual(ext.Inserts, []string{"count"}) {
		t.Errorf("ReadExtension: %+v, %v", ext, err)
	}
}

// A program's inserts (the command line's --insert) go after the file's,
// and their errors name them.
func TestOptionsInserts(t *testing.T) {
	in, err := config.ParseInsert("count=progress.tap,after=verify")
	if err != nil {
		t.Fatal(err)
	}
	got := flow(t, config.Options{File: "(built-in) stream.yaml", Data: builtinData(t, "stream.yaml"), Inserts: []config.Insert{in},
		Sets: []string{"stages.count.config.interval=3s"}})
	if want := "fetch<- progress<-fetch verify<-progress count<-verify write<-count"; got != want {
		t.Errorf("flow\n got %s\nwant %s", got, want)
	}
	bad, _ := config.ParseInsert("count=progress.tap,after=verifyy")
	_, err = config.Load(config.Options{File: "(built-in) stream.yaml", Data: builtinData(t, "stream.yaml"), Inserts: []config.Insert{bad}, Environ: []string{}})
	want := `--insert count=progress.tap,after=verifyy: insert.count.after: no stage "verifyy" in (built-in) stream.yaml (stages: fetch, progress, verify, write) (did you mean "verify"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// An insert of the command line with the id of one of the file's is an
// error, not a silent replacement.
func TestOptionsInsertTwice(t *testing.T) {
	file := writeIn(t, t.TempDir(), "twice.yaml", "extends: stream\ninsert:\n  count: {type: progress.tap, after: verify}\n")
	in, err := config.ParseInsert("count=progress.tap,after=fetch")
	if err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(config.Options{File: file, Inserts: []config.Insert{in}, Environ: []string{}})
	if want := `--insert count=progress.tap,after=fetch: insert.count: stage "count" is inserted twice`; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func builtinData(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestExtendsHostile: every way an extending file can be wrong fails with
// one error that names the file, the line and the key.
func TestExtendsHostile(t *testing.T) {
	dir := t.TempDir()
	writeIn(t, dir, "loop-a.yaml", "extends: loop-b.yaml\n")
	writeIn(t, dir, "loop-b.yaml", "extends: loop-a.yaml\n")
	for i := range 12 {
		writeIn(t, dir, fmt.Sprintf("deep%d.yaml", i), fmt.Sprintf("extends: deep%d.yaml\n", i+1))
	}
	writeIn(t, dir, "deep12.yaml", "extends: ranged\n")
	for _, tc := range []struct {
		name, yaml string
		want       string // the error, after "FILE:"
		graph      bool   // the error comes from building the graph
	}{
		{"no such stage", "extends: ranged\ninsert:\n  count:\n    type: progress.tap\n    after: verifyy\n",
			`5:5: insert.count.after: no stage "verifyy" in (built-in) ranged.yaml (stages: fetch, progress, split, verify, write) (did you mean "verify"?)`, false},
		{"duplicate id", "extends: ranged\ninsert:\n  verify: {type: progress.tap, after: fetch}\n",
			`3:3: insert.verify: stage "verify" is already in (built-in) ranged.yaml; an insert adds a new stage: pick another id (to change that stage, set stages.verify.KEY)`, false},
		{"cycle", "extends: ranged\ninsert:\n  a: {type: progress.tap, after: b}\n  b: {type: progress.tap, before: a}\n",
			`3:27: insert.a.after: a cycle: a after b, b before a`, false},
		{"itself", "extends: ranged\ninsert:\n  a: {type: progress.tap, after: a}\n",
			`3:27: insert.a.after: a stage cannot go after itself`, false},
		{"both", "extends: ranged\ninsert:\n  a: {type: progress.tap, after: fetch, before: write}\n",
			`3:3: insert.a: give after or before, not both`, false},
		{"neither", "extends: ranged\ninsert:\n  a: {type: progress.tap}\n",
			`3:3: insert.a: say where the stage goes: after=STAGE or before=STAGE`, false},
		{"no type", "extends: ranged\ninsert:\n  a: {after: fetch}\n",
			`3:3: insert.a.type: missing: an inserted stage needs a type (list them with ` + "`dlflow stages`)", false},
		{"unknown key", "extends: ranged\ninsert:\n  a: {type: progress.tap, afterr: fetch}\n",
			`3:27: insert.a.afterr: unknown key "afterr" (did you mean "after"?)`, false},
		{"bad id", "extends: ranged\ninsert:\n  Count: {type: progress.tap, after: fetch}\n",
			`3:3: insert.Count: stage id "Count": use lowercase letters, digits, - and _, starting with a letter`, false},
		{"before a source", "extends: ranged\ninsert:\n  a: {type: progress.tap, before: split}\n",
			`3:27: insert.a.before: stage "split" is a source (it has no inputs): nothing can go before it; insert after it instead`, false},
		{"missing file", "extends: nothere.yaml\n",
			`1:1: extends: no topology "nothere.yaml": not a built-in one`, false},
		{"itself file", "extends: itself_file.yaml\n", `1:1: extends: itself_file.yaml extends itself: `, false},
		{"loop", "extends: loop-a.yaml\n", `loop-b.yaml:1:1: extends: loop-a.yaml extends itself: `, false},
		{"too deep", "extends: deep0.yaml\n", `deep6.yaml:1:1: extends: more than 8 files extend one another: `, false},
		{"not a string", "extends: [ranged]\n", `1:1: extends: want the topology to extend: auto, a built-in name (`, false},
		{"insert not a map", "extends: ranged\ninsert: [a]\n", `2:1: insert: want a map of stage id to its type, after or before, and config`, false},
		{"ports do not fit", "extends: ranged\ninsert:\n  bad:\n    type: http.reader\n    after: verify\n",
			`5:5: stages.bad.inputs: http.reader consumes ranges, but verify delivers bytes`, true},
		{"unknown type", "extends: ranged\ninsert:\n  bad:\n    type: nosuch.tap\n    after: verify\n",
			`4:5: stages.bad.type: unknown stage type "nosuch.tap"`, true},
		{"bad stage config", "extends: ranged\ninsert:\n  bad:\n    type: progress.tap\n    after: verify\n    config: {intervall: 1s}\n",
			`6:14: stages.bad.config.intervall: unknown key "intervall" (did you mean "interval"?)`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeIn(t, dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.yaml)
			cfg, err := config.Load(config.Options{File: file, Environ: []string{}, Sets: []string{"output=" + filepath.Join(t.TempDir(), "o")}})
			if tc.graph && err == nil {
				_, err = cfg.Graph(pipeline.DefaultRegistry)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want a *config.Error", err, err)
			}
			if len(ce.Errs) != 1 {
				t.Errorf("%d errors, want 1:\n%v", len(ce.Errs), err)
			}
			want := file + ":" + tc.want
			if strings.HasPrefix(tc.want, "loop") || strings.HasPrefix(tc.want, "deep") {
				want = filepath.Join(dir, tc.want) // the file whose extends is wrong
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got  %v\nwant %s...", err, want)
			}
		})
	}
}

func TestParseInsert(t *testing.T) {
	for spec, want := range map[string]string{
		"count=linecount.tap,after=verify":                     "count linecount.tap after=verify before= 0 0",
		" count = x.tap , before = write , workers=2,queue=9 ": "count x.tap after= before=write 2 9",
	} {
		in, err := config.ParseInsert(spec)
		if got := fmt.Sprintf("%s %s after=%s before=%s %d %d", in.ID, in.Type, in.After, in.Before, in.Workers, in.Queue); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", spec, got, err, want)
		}
	}
	for spec, want := range map[string]string{
		"count":                          "want ID=TYPE,after=STAGE",
		"=x.tap,after=a":                 "want ID=TYPE,after=STAGE",
		"Count=x.tap,after=a":            `stage id "Count"`,
		"count=x.tap":                    "say where the stage goes",
		"count=x.tap,after=a,before=b":   "not both",
		"count=x.tap,after=a,after=b":    "after given twice",
		"count=x.tap,afer=a":             `unknown key "afer" (did you mean "after"?)`,
		"count=x.tap,after=a,workers=-1": "want a count between 0 and 65536",
		"count=x.tap,after":              `"after": want key=value`,
	} {
		if _, err := config.ParseInsert(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error with %q", spec, err, want)
		}
	}
}

// FuzzParseInsert: the command line's --insert is untrusted input. A spec
// parses to an insert with a valid id, a type and exactly one place, or
// fails; it never panics.
func FuzzParseInsert(f *testing.F) {
	for _, s := range []string{"count=linecount.tap,after=verify", "a=b,before=c,workers=3,queue=4", "a=b,,after=c", "=", ",", "a=b,after=c,after=d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		in, err := config.ParseInsert(spec)
		if err != nil {
			return
		}
		if in.ID == "" || in.Type == "" || (in.After == "") == (in.Before == "") || in.Workers < 0 || in.Queue < 0 {
			t.Fatalf("%q parsed to %+v", spec, in)
		}
		if _, err := config.ParseInsert(fmt.Sprintf("%s=%s,after=%s", in.ID, in.Type, in.After+in.Before)); err != nil {
			t.Fatalf("%q parsed to %+v, which does not parse again: %v", spec, in, err)
		}
	})
}

// FuzzExtendsLoad: an extending file's insert key is untrusted input
// spliced into a built-in topology. Load never panics, and fails only with
// a *config.Error; a config it returns has every inserted stage typed.
func FuzzExtendsLoad(f *testing.F) {
	for _, s := range []string{
		"insert:\n  count: {type: progress.tap, after: verify}\n",
		"insert:\n  a: {type: progress.tap, after: b}\n  b: {type: progress.tap, before: a}\n",
		"insert:\n  a: {type: x, before: split, workers: 3}\n",
		"stages:\n  write: {inputs: [count]}\ninsert:\n  count: {type: t, after: write}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tail string) {
		data := []byte("extends: ranged\n" + tail)
		cfg, err := config.Load(config.Options{File: "fuzz.yaml", Data: data, Environ: []string{}})
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("%q: %v (%T), want a *config.Error", data, err, err)
			}
			return
		}
		for id, sc := range cfg.Stages {
			if sc.Type == "" {
				t.Fatalf("%q: stage %s without a type", data, id)
			}
		}
	})
}
