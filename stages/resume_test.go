package stages

import (
	"reflect"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
)

// Tests of how the stages treat bytes present from an earlier run
// (env.Have), set here by the mem.have stage of hash_test.go as a resuming
// file sink would.

func TestSplitterHandsOutOnlyMissing(t *testing.T) {
	const MiB = 1 << 20
	rg := func(start, end int64) pipeline.Range { return pipeline.Range{Start: start, End: end} }
	for _, tc := range []struct {
		name    string
		present []pipeline.Range
		want    []pipeline.Range
	}{
		{"prefix", memSpans(0, 5000), []pipeline.Range{rg(5000, 4*MiB), rg(4*MiB, 8*MiB), rg(8*MiB, 10*MiB)}},
		{"holes", memSpans(0, 5000, 4*MiB+100, 6*MiB),
			[]pipeline.Range{rg(5000, 4*MiB), rg(4*MiB, 4*MiB+100), rg(6*MiB, 8*MiB), rg(8*MiB, 10*MiB)}},
		{"middle of a piece", memSpans(MiB, 2*MiB), []pipeline.Range{rg(0, MiB), rg(2*MiB, 4*MiB), rg(4*MiB, 8*MiB), rg(8*MiB, 10*MiB)}},
		{"tail", memSpans(9*MiB, 10*MiB), []pipeline.Range{rg(0, 4*MiB), rg(4*MiB, 8*MiB), rg(8*MiB, 9*MiB)}},
		{"everything", memSpans(0, 10*MiB), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memNoLeaks(t)
			out := &memRangeOutput{}
			nodes := append(splitterNodes(4*MiB, out), pipeline.Node{ID: "have", Type: "mem.have", Config: &hashHaveConfig{Ranges: tc.present}})
			if _, _, err := memRun(t, t.Context(), hashRegistry(t, new(*HashTap)), 10*MiB, nodes...); err != nil {
				t.Fatal(err)
			}
			if got := out.Ranges(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ranges %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReorderJumpsOverPresent: the heap's frontier starts at the first
// missing byte and jumps over present ranges, so it emits the missing
// bytes in order and holds nothing at the end.
func TestReorderJumpsOverPresent(t *testing.T) {
	memNoLeaks(t)
	const size = 1_000_000
	present := memSpans(0, 100_000, 300_000, 400_000, 900_000, size)
	var spans []pipeline.Range
	for _, m := range memSpans(100_000, 300_000, 400_000, 900_000) {
		for _, s := range hashShuffled(m.End-m.Start, 30_000, 4) {
			spans = append(spans, pipeline.Range{Start: m.Start + s.Start, End: m.Start + s.End})
		}
	}
	out := &memOutput{}
	_, _, err := memRun(t, t.Context(), hashRegistry(t, new(*HashTap)), size,
		pipeline.Node{ID: "have", Type: "mem.have", Config: &hashHaveConfig{Ranges: present}},
		pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Spans: spans, Chunk: 8 << 10}},
		pipeline.Node{ID: "order", Type: "reorder.heap", Inputs: []string{"src"}, Config: &ReorderConfig{Window: 1 << 20}},
		pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"order"}, Config: &memSinkConfig{Out: out}},
	)
	if err != nil {
		t.Fatal(err)
	}
	var covered pipeline.RangeSet
	prev := int64(-1)
	for _, c := range out.Chunks() {
		if c.Start < prev {
			t.Fatalf("chunk %v emitted after offset %d", c, prev)
		}
		prev = c.End
		covered.Add(c)
	}
	if got, want := covered.Ranges(), memSpans(100_000, 300_000, 400_000, 900_000); !reflect.DeepEqual(got, want) {
		t.Errorf("emitted %v, want the missing %v", got, want)
	}
}

func TestProgressCountsPresentBytes(t *testing.T) {
	memNoLeaks(t)
	var tap *ProgressTap
	reg := memRegistry(t, memCapture(progressDef, &tap))
	if err := pipeline.Register(reg, hashHaveDef); err != nil {
		t.Fatal(err)
	}
	const size = 100_000
	_, _, err := memRun(t, t.Context(), reg, size,
		pipeline.Node{ID: "have", Type: "mem.have", Config: &hashHaveConfig{Ranges: memSpans(0, 60_000)}},
		pipeline.Node{ID: "src", Type: "mem.source", Config: &memSourceConfig{Spans: memSpans(60_000, size), Chunk: 4096}},
		pipeline.Node{ID: "progress", Type: "progress.tap", Inputs: []string{"src"}},
		pipeline.Node{ID: "sink", Type: "mem.sink", Inputs: []string{"progress"}, Config: &memSinkConfig{Out: &memOutput{}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if p := tap.Progress(); p.Done != size || p.Total != size {
		t.Errorf("progress %+v, want all %d done (60000 of them resumed)", p, size)
	}
}
