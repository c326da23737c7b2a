package dlflow_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
)

// insertedFlow returns "input->stage->output" of the stage id in the run's
// metrics, with the bytes it sent.
func insertedFlow(t *testing.T, m *pipeline.Metrics, id string) (string, int64) {
	t.Helper()
	for _, s := range m.Snapshot().Stages {
		if s.Stage == id {
			return strings.Join(s.Inputs, ",") + "->" + id + "->" + s.Output, s.BytesSent
		}
	}
	t.Fatalf("no stage %s in the run", id)
	return "", 0
}

// TestExtendsAutoKeepsTheChoice: a file that extends auto and inserts a
// stage runs ranged for a large file and stream for a small one, with the
// stage in the flow between verify and the sink and the file's own keys
// applied; the library's Insert does the same for a stage of its own.
func TestExtendsAutoKeepsTheChoice(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "auto.yaml")
	yaml := "extends: auto\nstages:\n  split:\n    config: {piece: 2MiB}\ninsert:\n  count:\n    type: progress.tap\n    after: verify\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := config.ParseInsert("mid=progress.tap,before=progress")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		size     int64
		topology dlflow.Topology
		id, flow string
		want     string
	}{
		{"file ranged", 20 << 20, dlflow.Topology{File: file}, "count", "verify->count->write", "(built-in) ranged.yaml extended by " + file},
		{"file stream", 1 << 20, dlflow.Topology{File: file}, "count", "verify->count->write", "(built-in) stream.yaml extended by " + file},
		{"insert ranged", 20 << 20, dlflow.Topology{Insert: []config.Insert{in}}, "mid", "fetch->mid->progress", "(built-in) ranged.yaml with mid inserted"},
		{"insert stream", 1 << 20, dlflow.Topology{Insert: []config.Insert{in}}, "mid", "fetch->mid->progress", "(built-in) stream.yaml with mid inserted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const seed = 3
			srv := startOrigin(t, origin.Options{Size: tc.size, Seed: seed})
			out := fltOut(t)
			m := &pipeline.Metrics{}
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: tc.topology, Metrics: m,
				Checksum: "sha256:" + origin.SHA256Hex(tc.size, seed)})
			fltOK(t, res, err, out, tc.size, seed)
			if res.Topology != tc.want || res.Verified&dlflow.VerifiedChecksum == 0 {
				t.Errorf("topology %q, checksum verified %v; want %q, verified", res.Topology, res.Verified&dlflow.VerifiedChecksum != 0, tc.want)
			}
			if flow, sent := insertedFlow(t, m, tc.id); flow != tc.flow || sent != tc.size {
				t.Errorf("inserted stage: %s sent %d bytes; want %s, %d", flow, sent, tc.flow, tc.size)
			}
			if tc.name == "file ranged" {
				for _, s := range m.Snapshot().Stages {
					if s.Stage == "split" && s.RangesSent != 10 {
						t.Errorf("split handed out %d ranges of 20 MiB, want 10: the file's stages.split.config.piece (2MiB) did not apply", s.RangesSent)
					}
				}
			}
		})
	}
}

// TestExtendsAutoMustFitEveryCandidate: an insert that fits ranged but not
// stream fails before any request, naming the topology it does not fit;
// so does an extends of a missing file.
func TestExtendsAutoMustFitEveryCandidate(t *testing.T) {
	dir := t.TempDir()
	srv := startOrigin(t, origin.Options{Size: 20 << 20, Seed: 1})
	for name, tc := range map[string]struct{ yaml, want string }{
		// decompress takes ordered bytes: stream's verify sends them,
		// ranged's does not.
		"fits stream only": {"extends: auto\ninsert:\n  unzip: {type: decompress, after: verify}\n",
			"stages.unzip.inputs: decompress consumes ordered bytes, but verify delivers bytes"},
		"missing base": {"extends: nothere.yaml\n", `extends: no topology "nothere.yaml"`},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			if err := os.WriteFile(file, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			srv.ResetStats()
			out := fltOut(t)
			_, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{File: file}})
			var ce *config.Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
				t.Errorf("got %v (%T), want a *config.Error naming %s with %q", err, err, file, tc.want)
			}
			if st := srv.Stats(); st.Requests != 0 {
				t.Errorf("%d requests: the check must come before any", st.Requests)
			}
			assertMissing(t, out)
		})
	}
	_, err := do(t, &dlflow.Request{URL: srv.URL(), Path: fltOut(t), Topology: dlflow.Topology{Nodes: []pipeline.Node{{ID: "a", Type: "http.source"}}, Insert: []config.Insert{{ID: "b", Type: "progress.tap", After: "a"}}}})
	var re *dlflow.RequestError
	if !errors.As(err, &re) || re.Field != "Topology" {
		t.Errorf("Nodes with Insert: %v, want a RequestError for Topology", err)
	}
}

// TestExtendsRequestUnchanged: the download of a file that extends auto
// works on its own copy of the request; Request returns the caller's.
func TestExtendsRequestUnchanged(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auto.yaml")
	if err := os.WriteFile(file, []byte("extends: auto\ninsert:\n  count: {type: progress.tap, after: verify}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 2})
	req := &dlflow.Request{URL: srv.URL(), Path: fltOut(t), Topology: dlflow.Topology{File: file}}
	before := *req
	d := newClient(t).Start(t.Context(), req)
	res, err := d.Wait()
	fltOK(t, res, err, req.Path, 1<<20, 2)
	if d.Request() != req || !reflect.DeepEqual(*req, before) {
		t.Errorf("Request() %p, want the caller's %p, unchanged", d.Request(), req)
	}
}

// TestExtendsSetsReachInsertedStage: with the automatic choice, the stage
// keys of Sets apply to the topology picked only; an inserted stage is one
// of its stages, so --set stages.ID... reaches it.
func TestExtendsSetsReachInsertedStage(t *testing.T) {
	in, err := config.ParseInsert("mid=progress.tap,after=fetch")
	if err != nil {
		t.Fatal(err)
	}
	srv := startOrigin(t, origin.Options{Size: 20 << 20, Seed: 4})
	m := &pipeline.Metrics{}
	out := fltOut(t)
	res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Metrics: m, Topology: dlflow.Topology{Insert: []config.Insert{in}},
		Sets: []string{"stages.mid.queue=5"}})
	fltOK(t, res, err, out, 20<<20, 4)
	for _, s := range m.Snapshot().Stages {
		if s.Stage == "mid" && s.QueueCap != 5 {
			t.Errorf("the inserted stage had a queue of %d, want 5 (--set stages.mid.queue=5)", s.QueueCap)
		}
	}
}
