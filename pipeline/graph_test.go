package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
)

// Wiring-only stage types: Build never runs them.

type rangesConfig struct {
	MaxRange int64 `koanf:"max_range"`
}

type readerConfig struct {
	Chunk int64 `koanf:"chunk"`
}

type orderConfig struct {
	Window int64 `koanf:"window"`
}

func idleStage() pipeline.Stage {
	return pipeline.StageFunc(func(context.Context, *pipeline.Env, pipeline.IO) error { return nil })
}

// wiringRegistry is newRegistry plus a ranges source (test.ranges), a ranges
// consumer (test.reader) and a reorderer with a window (test.order).
func wiringRegistry(t *testing.T) *pipeline.Registry {
	t.Helper()
	reg, _ := newRegistry(t)
	pipeline.MustRegister(reg, pipeline.Def[rangesConfig]{
		Type: "test.ranges", Consumes: pipeline.None, Produces: pipeline.Ranges,
		Memory: func(c rangesConfig) pipeline.Memory { return pipeline.Memory{MaxRange: c.MaxRange} },
		New:    func(rangesConfig) (pipeline.Stage, error) { return idleStage(), nil },
	})
	pipeline.MustRegister(reg, pipeline.Def[readerConfig]{
		Type: "test.reader", Consumes: pipeline.Ranges, Produces: pipeline.Bytes,
		Defaults: readerConfig{Chunk: 64 << 10},
		Memory:   func(c readerConfig) pipeline.Memory { return pipeline.Memory{ChunkSize: c.Chunk} },
		New: func(c readerConfig) (pipeline.Stage, error) {
			if c.Chunk <= 0 {
				return nil, fmt.Errorf("chunk must be positive, got %d", c.Chunk)
			}
			return idleStage(), nil
		},
	})
	pipeline.MustRegister(reg, pipeline.Def[orderConfig]{
		Type: "test.order", Consumes: pipeline.Bytes, Produces: pipeline.OrderedBytes,
		Defaults: orderConfig{Window: 4 << 20},
		Memory:   func(c orderConfig) pipeline.Memory { return pipeline.Memory{Window: c.Window} },
		New:      func(orderConfig) (pipeline.Stage, error) { return idleStage(), nil },
	})
	return reg
}

type wiringProblem struct{ stage, key, msg string }

// wiringProblems unpacks Build's error into its *WiringErrors, failing the
// test on anything else.
func wiringProblems(t *testing.T, err error) []wiringProblem {
	t.Helper()
	var we *pipeline.WiringError
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T) is not a *pipeline.WiringError", err, err)
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	var got []wiringProblem
	for _, e := range errs {
		if !errors.As(e, &we) {
			t.Fatalf("joined error %v (%T) is not a *pipeline.WiringError", e, e)
		}
		if want := fmt.Sprintf("stage %q: %s", we.Stage, we.Msg); e.Error() != want {
			t.Errorf("Error() = %q, want %q", e.Error(), want)
		}
		got = append(got, wiringProblem{we.Stage, we.Key, we.Msg})
	}
	return got
}

// known ends the error about an unknown type in wiringRegistry.
const known = "(known types: test.collect, test.gen, test.order, test.pass, test.ranges, test.reader)"

// ordered is a config of test.collect that takes ordered bytes.
var ordered = &collectConfig{Ordered: true}

// buildRejectsCases are the cases of TestBuildRejects.
var buildRejectsCases = []struct {
	name  string
	nodes []pipeline.Node
	want  []wiringProblem
}{
	{
		name: "unknown type",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gem"},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
		},
		// out's input is declared, so only src's own problem is reported.
		want: []wiringProblem{{"src", "type", `unknown stage type "test.gem" (did you mean "test.gen"?) ` + known}},
	},
	{
		name: "unknown type without a close name",
		nodes: []pipeline.Node{
			{ID: "src", Type: "ftp"},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"src", "type", `unknown stage type "ftp" ` + known}},
	},
	{
		name: "missing input",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"scr"}},
		},
		want: []wiringProblem{{"out", "inputs", `input "scr" is not a stage (did you mean "src"?)`}},
	},
	{
		name: "own input",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "mid", Type: "test.pass", Inputs: []string{"mid"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"mid", "inputs", "a stage cannot be its own input"}},
	},
	{
		name: "fan-out",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "a", Type: "test.collect", Inputs: []string{"src"}},
			{ID: "b", Type: "test.collect", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"b", "inputs", `"src" already feeds "a"; a chunk has one owner, so chain stages instead of sharing an input`}},
	},
	{
		name: "cycle",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
			{ID: "p1", Type: "test.pass", Inputs: []string{"p2"}},
			{ID: "p2", Type: "test.pass", Inputs: []string{"p1"}},
		},
		want: []wiringProblem{{"p1", "inputs", "the inputs form a cycle"}},
	},
	{
		name: "source given inputs",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "src2", Type: "test.gen", Inputs: []string{"src"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"src2"}},
		},
		want: []wiringProblem{{"src2", "inputs", "test.gen is a source and takes no inputs"}},
	},
	{
		name: "consumer without inputs",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
			{ID: "lonely", Type: "test.collect"},
		},
		want: []wiringProblem{{"lonely", "inputs", "test.collect consumes bytes; list the stage that produces them in inputs"}},
	},
	{
		name: "transform without inputs reports only itself",
		nodes: []pipeline.Node{
			{ID: "mid", Type: "test.pass"},
			{ID: "out", Type: "test.collect", Inputs: []string{"mid"}},
		},
		want: []wiringProblem{{"mid", "inputs", "test.pass consumes bytes; list the stage that produces them in inputs"}},
	},
	{
		name: "output goes nowhere",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "mid", Type: "test.pass", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"mid", "", "its output (ordered bytes) goes nowhere; add a stage with inputs: [mid], such as a sink"}},
	},
	{
		name: "ordered consumer fed by replicas",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "mid", Type: "test.pass", Inputs: []string{"src"}, Workers: 3},
			{ID: "out", Type: "test.collect", Inputs: []string{"mid"}, Config: ordered},
		},
		want: []wiringProblem{{"out", "inputs", "test.collect in this mode consumes ordered bytes, but mid delivers bytes; " +
			"add a reorder stage (reorder.heap) before it or switch it to a mode that takes bytes in any order (see `dlflow stages test.collect`)"}},
	},
	{
		name: "ordered consumer fed by merged inputs",
		nodes: []pipeline.Node{
			{ID: "g1", Type: "test.gen"},
			{ID: "g2", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"g1", "g2"}, Config: ordered},
		},
		want: []wiringProblem{{"out", "inputs", "test.collect in this mode consumes ordered bytes, but its inputs deliver bytes; " +
			"add a reorder stage (reorder.heap) before it or switch it to a mode that takes bytes in any order (see `dlflow stages test.collect`)"}},
	},
	{
		name: "bytes consumer fed ranges",
		nodes: []pipeline.Node{
			{ID: "split", Type: "test.ranges"},
			{ID: "out", Type: "test.collect", Inputs: []string{"split"}},
		},
		want: []wiringProblem{{"out", "inputs", "test.collect in this mode consumes bytes, but split delivers ranges; ranges must go through a reader (http.reader) first"}},
	},
	{
		name: "pass-through fed ranges reports only itself",
		nodes: []pipeline.Node{
			{ID: "split", Type: "test.ranges"},
			{ID: "mid", Type: "test.pass", Inputs: []string{"split"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"mid"}},
		},
		want: []wiringProblem{{"mid", "inputs", "test.pass consumes bytes, but split delivers ranges; ranges must go through a reader (http.reader) first"}},
	},
	{
		name: "ranges consumer fed bytes",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "fetch", Type: "test.reader", Inputs: []string{"src"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"fetch"}},
		},
		want: []wiringProblem{{"fetch", "inputs", "test.reader consumes ranges, but src delivers ordered bytes; ranges come from a splitter (range.splitter)"}},
	},
	{
		name: "merged ranges and bytes",
		nodes: []pipeline.Node{
			{ID: "split", Type: "test.ranges"},
			{ID: "src", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"split", "src"}},
		},
		want: []wiringProblem{{"out", "inputs", "inputs deliver both ranges and ordered bytes"}},
	},
	{
		name: "two reorder windows",
		nodes: []pipeline.Node{
			{ID: "split", Type: "test.ranges"},
			{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}, Workers: 4},
			{ID: "o1", Type: "test.order", Inputs: []string{"fetch"}},
			{ID: "o2", Type: "test.order", Inputs: []string{"o1"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"o2"}, Config: ordered},
		},
		want: []wiringProblem{{"o2", "type", `only one stage may reorder with a window; "o1" already does`}},
	},
	{
		name: "range larger than the window",
		nodes: []pipeline.Node{
			{ID: "split", Type: "test.ranges", Config: &rangesConfig{MaxRange: 8 << 20}},
			{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}, Workers: 4},
			{ID: "order", Type: "test.order", Inputs: []string{"fetch"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"order"}, Config: ordered},
		},
		want: []wiringProblem{{"split", "config", `hands out ranges of 8MiB, larger than the reorder window of "order" (4MiB); lower the range size or raise the window`}},
	},
	{
		name: "negative workers",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}, Workers: -1},
		},
		want: []wiringProblem{{"out", "workers", "workers must be at least 1, got -1"}},
	},
	{
		name: "negative queue",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}, Queue: -1},
		},
		want: []wiringProblem{{"out", "queue", "queue must be 0 (automatic) or more, got -1"}},
	},
	{
		name: "config of the wrong type",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: &passConfig{}},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"src", "config", "config for test.gen must be a *pipeline_test.genConfig, got *pipeline_test.passConfig"}},
	},
	{
		name: "config a value instead of a pointer",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: genConfig{}},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"src", "config", "config for test.gen must be a *pipeline_test.genConfig, got pipeline_test.genConfig"}},
	},
	{
		name: "constructor refuses the config",
		nodes: []pipeline.Node{
			{ID: "split", Type: "test.ranges"},
			{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}, Config: &readerConfig{}},
			{ID: "out", Type: "test.collect", Inputs: []string{"fetch"}},
		},
		want: []wiringProblem{{"fetch", "config", "chunk must be positive, got 0"}},
	},
	{
		name: "missing id",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{Type: "test.collect", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"", "", "a stage needs an id"}},
	},
	{
		name: "duplicate id",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}},
		},
		want: []wiringProblem{{"out", "", "two stages have this id"}},
	},
	{
		name: "every problem of the declarations",
		nodes: []pipeline.Node{
			{ID: "src", Type: "test.gem"},
			{ID: "mid", Type: "test.pass", Inputs: []string{"src"}, Workers: -1, Queue: -1},
			{ID: "out", Type: "test.collect", Inputs: []string{"nope"}},
		},
		want: []wiringProblem{
			{"src", "type", `unknown stage type "test.gem" (did you mean "test.gen"?) ` + known},
			{"mid", "workers", "workers must be at least 1, got -1"},
			{"mid", "queue", "queue must be 0 (automatic) or more, got -1"},
			{"out", "inputs", `input "nope" is not a stage`},
		},
	},
	{
		name: "every problem of the wiring",
		nodes: []pipeline.Node{
			{ID: "g1", Type: "test.gen"},
			{ID: "g2", Type: "test.gen"},
			{ID: "split", Type: "test.ranges", Config: &rangesConfig{MaxRange: 8 << 20}},
			{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}},
			{ID: "o1", Type: "test.order", Inputs: []string{"fetch"}},
			{ID: "o2", Type: "test.order", Inputs: []string{"o1"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"o2"}},
		},
		want: []wiringProblem{
			{"g1", "", "its output (ordered bytes) goes nowhere; add a stage with inputs: [g1], such as a sink"},
			{"g2", "", "its output (ordered bytes) goes nowhere; add a stage with inputs: [g2], such as a sink"},
			{"o2", "type", `only one stage may reorder with a window; "o1" already does`},
			{"split", "config", `hands out ranges of 8MiB, larger than the reorder window of "o2" (4MiB); lower the range size or raise the window`},
		},
	},
}

func TestBuildRejects(t *testing.T) {
	for _, tt := range buildRejectsCases {
		t.Run(tt.name, func(t *testing.T) {
			g, err := pipeline.Build(wiringRegistry(t), tt.nodes)
			if err == nil {
				t.Fatalf("Build succeeded:\n%s", g.Describe())
			}
			if g != nil {
				t.Errorf("Build returned a graph with an error")
			}
			got := wiringProblems(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("problem %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// stageInfo finds a stage by id in g.
func stageInfo(t *testing.T, g *pipeline.Graph, id string) pipeline.StageInfo {
	t.Helper()
	for _, s := range g.Stages() {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no stage %q", id)
	return pipeline.StageInfo{}
}

func mustBuild(t *testing.T, nodes []pipeline.Node) *pipeline.Graph {
	t.Helper()
	g, err := pipeline.Build(wiringRegistry(t), nodes)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return g
}

func TestBuildResolvesFlows(t *testing.T) {
	t.Run("same is the input flow", func(t *testing.T) {
		g := mustBuild(t, []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "mid", Type: "test.pass", Inputs: []string{"src"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"mid"}, Config: &collectConfig{Ordered: true}},
		})
		mid := stageInfo(t, g, "mid")
		if mid.Consumes != pipeline.OrderedBytes || mid.Produces != pipeline.OrderedBytes {
			t.Errorf("mid consumes %v and produces %v, want ordered bytes both", mid.Consumes, mid.Produces)
		}
		if out := stageInfo(t, g, "out"); out.Consumes != pipeline.OrderedBytes || out.Produces != pipeline.None || !out.Sink || out.Source {
			t.Errorf("out = %+v, want a sink consuming ordered bytes", out)
		}
		if src := stageInfo(t, g, "src"); !src.Source || src.Sink || src.Consumes != pipeline.None {
			t.Errorf("src = %+v, want a source", src)
		}
		var order []string
		for _, s := range g.Stages() {
			order = append(order, s.ID)
		}
		if got := strings.Join(order, ","); got != "src,mid,out" {
			t.Errorf("stage order %s, want src,mid,out", got)
		}
	})
	t.Run("replicas lose the order", func(t *testing.T) {
		g := mustBuild(t, []pipeline.Node{
			{ID: "src", Type: "test.gen"},
			{ID: "mid", Type: "test.pass", Inputs: []string{"src"}, Workers: 3},
			{ID: "out", Type: "test.collect", Inputs: []string{"mid"}},
		})
		if mid := stageInfo(t, g, "mid"); mid.Consumes != pipeline.OrderedBytes || mid.Produces != pipeline.Bytes || mid.Workers != 3 {
			t.Errorf("mid consumes %v, produces %v with %d workers; want ordered bytes in, bytes out, 3 workers", mid.Consumes, mid.Produces, mid.Workers)
		}
		if out := stageInfo(t, g, "out"); out.Consumes != pipeline.Bytes || out.Workers != 1 {
			t.Errorf("out consumes %v with %d workers, want bytes with 1", out.Consumes, out.Workers)
		}
	})
	t.Run("a reorderer restores the order", func(t *testing.T) {
		g := mustBuild(t, []pipeline.Node{
			{ID: "split", Type: "test.ranges"},
			{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}, Workers: 8},
			{ID: "order", Type: "test.order", Inputs: []string{"fetch"}},
			{ID: "tap", Type: "test.pass", Inputs: []string{"order"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"tap"}, Config: &collectConfig{Ordered: true}},
		})
		if tap := stageInfo(t, g, "tap"); tap.Produces != pipeline.OrderedBytes {
			t.Errorf("tap produces %v, want ordered bytes", tap.Produces)
		}
		if order := stageInfo(t, g, "order"); order.ReorderWindow != 4<<20 {
			t.Errorf("order's window is %d, want %d", order.ReorderWindow, 4<<20)
		}
	})
}

func TestBuildAutoQueue(t *testing.T) {
	tests := []struct {
		chunk int
		queue int // explicit; 0 is automatic
		want  int
	}{
		{chunk: 64 << 10, want: 32}, // 2 MiB of 64 KiB chunks
		{chunk: 256 << 10, want: 8},
		{chunk: 4 << 10, want: 64}, // at most 64
		{chunk: 4 << 20, want: 2},  // at least 2
		{chunk: 64 << 10, queue: 7, want: 7},
	}
	for _, tt := range tests {
		g := mustBuild(t, []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: &genConfig{Chunk: tt.chunk}},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}, Queue: tt.queue},
		})
		out := stageInfo(t, g, "out")
		if out.Queue != tt.want || out.InChunk != int64(tt.chunk) {
			t.Errorf("chunk %d, queue %d: got queue %d of %d-byte chunks, want %d", tt.chunk, tt.queue, out.Queue, out.InChunk, tt.want)
		}
		if src := stageInfo(t, g, "src"); src.Queue != 0 {
			t.Errorf("a source has queue %d, want 0", src.Queue)
		}
	}

	g := mustBuild(t, []pipeline.Node{
		{ID: "split", Type: "test.ranges"},
		{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}, Workers: 4},
		{ID: "out", Type: "test.collect", Inputs: []string{"fetch"}},
	})
	if fetch := stageInfo(t, g, "fetch"); fetch.Queue != 64 {
		t.Errorf("ranges queue %d, want 64", fetch.Queue)
	}
}

func TestMemoryBound(t *testing.T) {
	const k = 1 << 10
	t.Run("chain", func(t *testing.T) {
		g := mustBuild(t, []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: &genConfig{Chunk: 64 * k}},
			{ID: "mid", Type: "test.pass", Inputs: []string{"src"}, Workers: 3},
			{ID: "out", Type: "test.collect", Inputs: []string{"mid"}, Queue: 4},
		})
		want := 64*k + // src: its own 64 KiB buffer (PerReplica)
			3*64*k + // mid, a tap: no auto queue, and a chunk in each replica's hands
			4*64*k + 64*k // out: its queue of 4, and a chunk in hand
		if got := g.MemoryBound(); got != pipeline.ByteSize(want) {
			t.Errorf("MemoryBound = %d (%v), want %d", got, got, want)
		}
	})
	t.Run("gather", func(t *testing.T) {
		for _, tc := range []struct{ gather, held int64 }{
			{0, 64 * k},            // one chunk in hand
			{64 * k, 64 * k},       // no more than one fits
			{100 * k, 64 * k},      // whole chunks only
			{1 << 20, 16 * 64 * k}, // 16 chunks of 64 KiB
		} {
			g := mustBuild(t, []pipeline.Node{
				{ID: "src", Type: "test.gen", Config: &genConfig{Chunk: 64 * k}},
				{ID: "out", Type: "test.collect", Inputs: []string{"src"}, Workers: 2, Queue: 4, Config: &collectConfig{Gather: tc.gather}},
			})
			want := 64*k + 4*64*k + 2*tc.held // src's buffer, the queue, each replica's held chunks
			if got := g.MemoryBound(); got != pipeline.ByteSize(want) {
				t.Errorf("gather %d: MemoryBound = %d, want %d", tc.gather, got, want)
			}
		}
	})
	t.Run("window", func(t *testing.T) {
		g := mustBuild(t, []pipeline.Node{
			{ID: "split", Type: "test.ranges", Config: &rangesConfig{MaxRange: 1 << 20}},
			{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}, Workers: 4},
			{ID: "order", Type: "test.order", Inputs: []string{"fetch"}},
			{ID: "out", Type: "test.collect", Inputs: []string{"order"}, Config: &collectConfig{Ordered: true}, Queue: 2},
		})
		want := 0 + // split and the readers' ranges hold no buffers
			32*64*k + 64*k + // order: its queue, a chunk in hand
			2*64*k + 64*k + // out: its queue of 2, a chunk in hand
			4<<20 // the window
		if got := g.MemoryBound(); got != pipeline.ByteSize(want) {
			t.Errorf("MemoryBound = %d (%v), want %d", got, got, want)
		}
	})
}

func TestDescribe(t *testing.T) {
	g := mustBuild(t, []pipeline.Node{
		{ID: "split", Type: "test.ranges"},
		{ID: "fetch", Type: "test.reader", Inputs: []string{"split"}, Workers: 4},
		{ID: "order", Type: "test.order", Inputs: []string{"fetch"}},
		{ID: "out", Type: "test.collect", Inputs: []string{"order"}, Config: &collectConfig{Ordered: true}, Queue: 2},
	})
	got := g.Describe()
	for _, line := range []string{
		"split  test.ranges     1 worker    -> ranges\n",
		"fetch  test.reader     4 workers   <- split via queue 64 (ranges)  -> bytes in chunks up to 64KiB\n",
		"order  test.order      1 worker    <- fetch via queue 32 x 64KiB (bytes)  -> ordered bytes in chunks up to 64KiB, window 4MiB\n",
		"out    test.collect    1 worker    <- order via queue 2 x 64KiB (ordered bytes)\n",
		"peak buffer memory: at most 6.3MiB (6553600 bytes)\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("Describe lacks the line %q; got:\n%s", line, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 5 {
		t.Errorf("Describe has %d lines, want 5:\n%s", n, got)
	}
}

// TestBuildTapQueue: a stage that passes its input's chunks on (a tap) gets
// no automatic queue; the sink after it keeps the full one, and an
// explicit queue is kept.
func TestBuildTapQueue(t *testing.T) {
	for _, tt := range []struct{ tapQueue, wantTap int }{{0, 0}, {6, 6}} {
		g := mustBuild(t, []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: &genConfig{Chunk: 256 << 10}},
			{ID: "tap", Type: "test.pass", Inputs: []string{"src"}, Queue: tt.tapQueue},
			{ID: "out", Type: "test.collect", Inputs: []string{"tap"}},
		})
		if tap := stageInfo(t, g, "tap"); tap.Queue != tt.wantTap {
			t.Errorf("tap queue %d (configured %d), want %d", tap.Queue, tt.tapQueue, tt.wantTap)
		}
		if out := stageInfo(t, g, "out"); out.Queue != 8 {
			t.Errorf("sink queue %d, want 8 (2 MiB of 256 KiB chunks)", out.Queue)
		}
		// 256 KiB held by src, its queue and one in hand by the tap, 8+1 by out.
		if got, want := int64(g.MemoryBound()), int64((1+tt.wantTap+1+9)*(256<<10)); got != want {
			t.Errorf("memory bound %d, want %d", got, want)
		}
	}
}

// TestBuildGatherQueue: a stage whose Memory.Gather holds 2 MiB or more
// gets the least automatic queue, and one that gathers less the rest of
// 2 MiB: the chunks it holds are its cushion too.
func TestBuildGatherQueue(t *testing.T) {
	const c = 256 << 10
	for _, tc := range []struct {
		gather     int64
		queue      int
		wantQueue  int
		wantHolder int64
	}{
		{gather: 4 << 20, wantQueue: 2, wantHolder: 16 * c},
		{gather: 1 << 20, wantQueue: 4, wantHolder: 4 * c},
		{gather: 4 << 20, queue: 8, wantQueue: 8, wantHolder: 16 * c},
	} {
		g := mustBuild(t, []pipeline.Node{
			{ID: "src", Type: "test.gen", Config: &genConfig{Chunk: c}},
			{ID: "out", Type: "test.collect", Inputs: []string{"src"}, Queue: tc.queue, Config: &collectConfig{Gather: tc.gather}},
		})
		out := stageInfo(t, g, "out")
		if out.Queue != tc.wantQueue || out.HoldsPerReplica != tc.wantHolder {
			t.Errorf("gather %d, queue %d: got queue %d, holds %d; want %d, %d", tc.gather, tc.queue, out.Queue, out.HoldsPerReplica, tc.wantQueue, tc.wantHolder)
		}
		if got, want := int64(g.MemoryBound()), int64(c)+int64(out.Queue)*c+out.HoldsPerReplica; got != want {
			t.Errorf("gather %d: memory bound %d, want %d", tc.gather, got, want)
		}
	}
}
