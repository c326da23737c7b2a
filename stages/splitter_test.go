package stages

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

func splitterNodes(piece pipeline.ByteSize, out *memRangeOutput) []pipeline.Node {
	return []pipeline.Node{
		{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: piece}},
		{ID: "sink", Type: "mem.rangesink", Inputs: []string{"split"}, Config: &memRangeSinkConfig{Out: out}},
	}
}

func TestSplitterPieces(t *testing.T) {
	const MiB = 1 << 20
	rg := func(start, end int64) pipeline.Range { return pipeline.Range{Start: start, End: end} }
	for _, tc := range []struct {
		name  string
		size  int64
		piece pipeline.ByteSize
		want  []pipeline.Range
	}{
		{"exact", 8 * MiB, 4 * MiB, []pipeline.Range{rg(0, 4*MiB), rg(4*MiB, 8*MiB)}},
		{"short tail", 10*MiB + 5, 4 * MiB, []pipeline.Range{rg(0, 4*MiB), rg(4*MiB, 8*MiB), rg(8*MiB, 10*MiB+5)}},
		{"smaller than a piece", 100, 4 * MiB, []pipeline.Range{rg(0, 100)}},
		{"piece rounded up to 4KiB", 20000, 5000, []pipeline.Range{rg(0, 8192), rg(8192, 16384), rg(16384, 20000)}},
		{"empty", 0, 4 * MiB, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memNoLeaks(t)
			out := &memRangeOutput{}
			_, _, err := memRun(t, t.Context(), memRegistry(t), tc.size, splitterNodes(tc.piece, out)...)
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Ranges(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ranges %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSplitterFallsBackToOneStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  pipeline.Resource
	}{
		{"size unknown", pipeline.Resource{Size: -1, AcceptRanges: true}},
		{"no ranges", pipeline.Resource{Size: 10 << 20, AcceptRanges: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memNoLeaks(t)
			out := &memRangeOutput{}
			logs := &memSyncWriter{}
			_, _, err := memRunResource(t, t.Context(), memRegistry(t), &tc.res, zerolog.New(logs), splitterNodes(1<<20, out)...)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := out.Ranges(), []pipeline.Range{{Start: 0, End: -1}}; !reflect.DeepEqual(got, want) {
				t.Errorf("ranges %v, want %v", got, want)
			}
			if n := strings.Count(logs.String(), "single stream"); n != 1 {
				t.Errorf("logged the fallback %d times, want once:\n%s", n, logs)
			}
			if !strings.Contains(logs.String(), `"level":"info"`) {
				t.Errorf("fallback not logged at info:\n%s", logs)
			}
		})
	}
}

func TestSplitterConfig(t *testing.T) {
	for _, piece := range []pipeline.ByteSize{0, -1} {
		_, err := splitterDef.New(SplitterConfig{Piece: piece})
		if err == nil || !strings.Contains(err.Error(), "piece") {
			t.Errorf("piece %d: error %v, want one naming piece", piece, err)
		}
	}
	s, err := splitterDef.New(splitterDef.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.(*Splitter).Piece(); got != 4<<20 {
		t.Errorf("default piece %d, want 4MiB", got)
	}
	if got := splitterDef.Memory(SplitterConfig{Piece: 1}).MaxRange; got != 4096 {
		t.Errorf("MaxRange of a 1-byte piece is %d, want 4096 (rounded)", got)
	}
	if got := alignPiece(pipeline.ByteSize(1<<63 - 1)); got <= 0 || got%pieceAlign != 0 {
		t.Errorf("alignPiece(max) = %d, want a positive multiple of 4KiB", got)
	}
}

// A piece larger than the reorder window could never be let go without
// exceeding the window, so Build refuses it.
func TestSplitterPieceLargerThanWindow(t *testing.T) {
	_, err := pipeline.Build(memRegistry(t), []pipeline.Node{
		{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: 8 << 20}},
		{ID: "read", Type: "mem.reader", Inputs: []string{"split"}},
		{ID: "order", Type: "reorder.heap", Inputs: []string{"read"}, Config: &ReorderConfig{Window: 4 << 20}},
		{ID: "sink", Type: "mem.discard", Inputs: []string{"order"}},
	})
	var we *pipeline.WiringError
	if !errors.As(err, &we) || we.Stage != "split" {
		t.Fatalf("error %v, want a wiring error on split", err)
	}
}

// Replicas would hand out every range more than once: Build refuses them.
func TestSplitterReplicas(t *testing.T) {
	nodes := splitterNodes(4096, &memRangeOutput{})
	nodes[0].Workers = 3
	_, err := pipeline.Build(memRegistry(t), nodes)
	var we *pipeline.WiringError
	if !errors.As(err, &we) || we.Stage != "split" || we.Key != "workers" {
		t.Fatalf("error %v, want a wiring error on split's workers", err)
	}
}

// A splitter blocked on a consumer that does not read returns on
// cancellation.
func TestSplitterCancel(t *testing.T) {
	memNoLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	nodes := []pipeline.Node{
		{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: 4096}},
		{ID: "sink", Type: "mem.rangesink", Inputs: []string{"split"}, Config: &memRangeSinkConfig{Hold: true}},
	}
	start := time.Now()
	_, _, err := memRun(t, ctx, memRegistry(t), 1<<30, nodes...)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to stop", d)
	}
}

func ExampleSplitter() {
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		panic(err)
	}
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "print.ranges",
		Consumes: pipeline.Ranges,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for r := range edges.Ranges {
					fmt.Printf("[%v, %v)\n", pipeline.ByteSize(r.Start), pipeline.ByteSize(r.End))
				}
				return nil
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "split", Type: "range.splitter", Config: &SplitterConfig{Piece: 4 << 20}},
		{ID: "print", Type: "print.ranges", Inputs: []string{"split"}},
	})
	if err != nil {
		panic(err)
	}
	err = g.Run(context.Background(), pipeline.RunOptions{
		Resource: &pipeline.Resource{Size: 10 << 20, AcceptRanges: true},
		Log:      zerolog.Nop(),
	})
	fmt.Println("error:", err)
	// Output:
	// [0B, 4MiB)
	// [4MiB, 8MiB)
	// [8MiB, 10MiB)
	// error: <nil>
}
