package dlflow

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/config"
)

// TestApplyInserts: the hook a load-once plan calls after the pick splices
// a file's inserts (loaded before the pick) and the request's into the
// built-in stages, without changing them; a wrong one is a *config.Error
// at the file's line.
func TestApplyInserts(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auto.yaml")
	if err := os.WriteFile(file, []byte("extends: auto\ninsert:\n  count:\n    type: progress.tap\n    after: verify\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mid, err := config.ParseInsert("mid=progress.tap,before=progress")
	if err != nil {
		t.Fatal(err)
	}
	// As load loads an automatic topology before the pick.
	top := Topology{File: file, Insert: []config.Insert{mid}}
	if top, err = top.resolve(); err != nil || !top.auto() {
		t.Fatalf("resolve: %+v, %v; want an automatic topology", top, err)
	}
	cfg, err := config.Load(config.Options{File: top.File, StagesOptional: true, Inserts: top.inserts(), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	base, err := config.Load(config.Options{File: "(built-in) stream.yaml", Data: mustBuiltin(t, "stream.yaml"), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := applyInserts(cfg, "stream", base.Stages)
	if err != nil {
		t.Fatal(err)
	}
	for id, inputs := range map[string][]string{"mid": {"fetch"}, "progress": {"mid"}, "count": {"verify"}, "write": {"count"}} {
		if !reflect.DeepEqual(got[id].Inputs, inputs) {
			t.Errorf("%s reads %v, want %v", id, got[id].Inputs, inputs)
		}
	}
	if !reflect.DeepEqual(base.Stages["write"].Inputs, []string{"verify"}) {
		t.Errorf("the built-in stages changed: %+v", base.Stages)
	}
	bad, _ := config.ParseInsert("x=progress.tap,after=split")
	cfg, err = config.Load(config.Options{StagesOptional: true, Inserts: []config.Insert{bad}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = applyInserts(cfg, "stream", base.Stages)
	if err == nil || !strings.Contains(err.Error(), `--insert x=progress.tap,after=split: insert.x.after: no stage "split" in (built-in) stream.yaml`) {
		t.Errorf("got %v", err)
	}
}

func mustBuiltin(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
