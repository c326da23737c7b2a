package pipeline_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// hookConfig configures test.hooks, a pass-through that records the hooks
// the runner calls, in order, into a log shared by the test.
type hookConfig struct {
	Log       *[]string
	Present   []pipeline.Range // what Resume reports
	FailStart bool
	FailRes   bool
}

type hookStage struct {
	id  string
	cfg hookConfig
}

func (s *hookStage) Resume(_ context.Context, env *pipeline.Env) ([]pipeline.Range, io.ReaderAt, error) {
	*s.cfg.Log = append(*s.cfg.Log, env.Stage+".Resume")
	if s.cfg.FailRes {
		return nil, nil, errors.New("no resume")
	}
	return s.cfg.Present, nil, nil
}

func (s *hookStage) Start(_ context.Context, env *pipeline.Env) error {
	*s.cfg.Log = append(*s.cfg.Log, env.Stage+".Start have="+itoa(env.Have.Len()))
	if s.cfg.FailStart {
		return errors.New("no start")
	}
	return nil
}

func (s *hookStage) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	for ch := range edges.Chunks {
		if err := edges.Send(ctx, ch); err != nil {
			return err
		}
	}
	return nil
}

func (s *hookStage) Finish(_ context.Context, env *pipeline.Env, _ error) error {
	*s.cfg.Log = append(*s.cfg.Log, env.Stage+".Finish")
	return nil
}

func itoa(n int64) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	return string(b)
}

func hookRegistry(t *testing.T) *pipeline.Registry {
	reg, _ := newRegistry(t)
	pipeline.MustRegister(reg, pipeline.Def[hookConfig]{
		Type: "test.hooks", Consumes: pipeline.Bytes, Produces: pipeline.Same,
		New: func(c hookConfig) (pipeline.Stage, error) { return &hookStage{cfg: c}, nil },
	})
	return reg
}

// Every Resume runs before any Start, so a stage declared before the
// resuming one already sees Have in its Start.
func TestResumeBeforeStart(t *testing.T) {
	var log []string
	reg := hookRegistry(t)
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "gen", Type: "test.gen", Config: &genConfig{Size: 0, Chunk: 4096}},
		{ID: "a", Type: "test.hooks", Inputs: []string{"gen"}, Config: &hookConfig{Log: &log}},
		{ID: "b", Type: "test.hooks", Inputs: []string{"a"}, Config: &hookConfig{Log: &log, Present: []pipeline.Range{{Start: 0, End: 100}}}},
		{ID: "out", Type: "test.collect", Inputs: []string{"b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Run(t.Context(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 100}, Log: zerolog.Nop()}); err != nil {
		t.Fatal(err)
	}
	want := []string{"a.Resume", "b.Resume", "a.Start have=100", "b.Start have=100", "a.Finish", "b.Finish"}
	if !slices.Equal(log, want) {
		t.Errorf("hooks ran as %q, want %q", log, want)
	}
}

// When a hook fails, Finish goes to the stages of which a hook had
// succeeded (b's Resume, though its Start failed), and not to those whose
// only hook failed nor to those no hook reached.
func TestFinishAfterFailedHook(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b, c  hookConfig
		want     []string
		wantErrs string
	}{
		{
			name:     "start fails",
			b:        hookConfig{FailStart: true},
			want:     []string{"a.Resume", "b.Resume", "c.Resume", "a.Start have=0", "b.Start have=0", "a.Finish", "b.Finish", "c.Finish"},
			wantErrs: "b: no start",
		},
		{
			name:     "resume fails",
			b:        hookConfig{FailRes: true},
			want:     []string{"a.Resume", "b.Resume", "a.Finish"},
			wantErrs: "b: no resume",
		},
		{
			name:     "two resume",
			a:        hookConfig{Present: []pipeline.Range{{Start: 0, End: 1}}},
			b:        hookConfig{Present: []pipeline.Range{{Start: 0, End: 1}}},
			want:     []string{"a.Resume", "b.Resume", "a.Finish", "b.Finish"},
			wantErrs: `b: resumes too, after "a"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			tc.a.Log, tc.b.Log, tc.c.Log = &log, &log, &log
			g, err := pipeline.Build(hookRegistry(t), []pipeline.Node{
				{ID: "gen", Type: "test.gen", Config: &genConfig{Size: 0, Chunk: 4096}},
				{ID: "a", Type: "test.hooks", Inputs: []string{"gen"}, Config: &tc.a},
				{ID: "b", Type: "test.hooks", Inputs: []string{"a"}, Config: &tc.b},
				{ID: "c", Type: "test.hooks", Inputs: []string{"b"}, Config: &tc.c},
				{ID: "out", Type: "test.collect", Inputs: []string{"c"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			err = g.Run(t.Context(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 1}, Log: zerolog.Nop()})
			if err == nil || !strings.Contains(err.Error(), tc.wantErrs) {
				t.Errorf("err = %v, want %q", err, tc.wantErrs)
			}
			if !slices.Equal(log, tc.want) {
				t.Errorf("hooks ran as %q, want %q", log, tc.want)
			}
		})
	}
}

// A stage after one that reshapes the bytes sees Env.Reshaped and may not
// resume; the stages before it are not reshaped.
func TestReshaped(t *testing.T) {
	reg := hookRegistry(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	probe := func(id string) pipeline.StageFunc {
		return func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
			mu.Lock()
			seen[id] = env.Reshaped
			mu.Unlock()
			for ch := range edges.Chunks {
				if err := edges.Send(ctx, ch); err != nil {
					return err
				}
			}
			return nil
		}
	}
	type fnConfig struct{ Fn pipeline.StageFunc }
	for _, d := range []pipeline.Def[fnConfig]{
		{Type: "test.fn", Consumes: pipeline.Bytes, Produces: pipeline.Same},
		{Type: "test.reshape", Consumes: pipeline.OrderedBytes, Produces: pipeline.OrderedBytes, Reshapes: true},
	} {
		d.New = func(c fnConfig) (pipeline.Stage, error) { return c.Fn, nil }
		pipeline.MustRegister(reg, d)
	}
	var log []string
	build := func(present []pipeline.Range) *pipeline.Graph {
		g, err := pipeline.Build(reg, []pipeline.Node{
			{ID: "gen", Type: "test.gen", Config: &genConfig{Size: 8192, Chunk: 4096}},
			{ID: "before", Type: "test.fn", Inputs: []string{"gen"}, Config: &fnConfig{Fn: probe("before")}},
			{ID: "gunzip", Type: "test.reshape", Inputs: []string{"before"}, Config: &fnConfig{Fn: probe("gunzip")}},
			{ID: "after", Type: "test.fn", Inputs: []string{"gunzip"}, Config: &fnConfig{Fn: probe("after")}},
			{ID: "sink", Type: "test.hooks", Inputs: []string{"after"}, Config: &hookConfig{Log: &log, Present: present}},
			{ID: "out", Type: "test.collect", Inputs: []string{"sink"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := build([]pipeline.Range{{Start: 0, End: 10}})
	for _, s := range g.Stages() {
		if want := s.ID == "after" || s.ID == "sink" || s.ID == "out"; s.Reshaped != want {
			t.Errorf("%s: Reshaped %v, want %v", s.ID, s.Reshaped, want)
		}
	}
	err := g.Run(t.Context(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 8192}, Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "sink: resumes bytes that a stage before it reshaped") {
		t.Fatalf("err = %v, want a refused resume", err)
	}
	if err := build(nil).Run(t.Context(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 8192}, Log: zerolog.Nop()}); err != nil {
		t.Fatal(err)
	}
	if seen["before"] || seen["gunzip"] || !seen["after"] {
		t.Errorf("Env.Reshaped seen as %v; want only after the reshaping stage", seen)
	}
}

// reportStage reports fixed figures through every capability interface.
type reportStage struct{ pipeline.StageFunc }

func (reportStage) Progress() pipeline.Progress {
	return pipeline.Progress{Done: 5, Total: 10, Resumed: 1}
}
func (reportStage) ConnectionBytes() []int64 { return []int64{2, 3} }
func (reportStage) Retries() int64           { return 7 }

// Reporters finds stages by what they report, whatever their type; the
// connection count is the workers of the stages that declare Connects.
func TestReporters(t *testing.T) {
	reg, _ := newRegistry(t)
	type none struct{}
	pipeline.MustRegister(reg, pipeline.Def[none]{
		Type: "test.reports", Consumes: pipeline.Bytes, Produces: pipeline.Same, Connects: true,
		New: func(none) (pipeline.Stage, error) { return reportStage{}, nil },
	})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "gen", Type: "test.gen"},
		{ID: "r", Type: "test.reports", Inputs: []string{"gen"}, Workers: 3},
		{ID: "out", Type: "test.collect", Inputs: []string{"r"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := pipeline.Reporters[pipeline.ProgressReporter](g); len(p) != 1 || p[0].Progress().Done != 5 {
		t.Errorf("progress reporters %v", p)
	}
	if c := pipeline.Reporters[pipeline.ConnectionReporter](g); len(c) != 1 || !slices.Equal(c[0].ConnectionBytes(), []int64{2, 3}) {
		t.Errorf("connection reporters %v", c)
	}
	if v := pipeline.Reporters[pipeline.Verifier](g); len(v) != 0 {
		t.Errorf("verifiers %v, want none", v)
	}
	if n := g.Connections(); n != 3 {
		t.Errorf("Connections() = %d, want the 3 workers of the stage that connects", n)
	}
}

// MaxWorkers is checked at Build, with the key and the reason.
func TestMaxWorkers(t *testing.T) {
	reg, _ := newRegistry(t)
	type one struct{ Max int }
	pipeline.MustRegister(reg, pipeline.Def[one]{
		Type: "test.one", Consumes: pipeline.Bytes, Produces: pipeline.Same,
		New:        func(one) (pipeline.Stage, error) { return pipeline.StageFunc(nil), nil },
		MaxWorkers: func(c one) (int, string) { return c.Max, "it counts alone" },
	})
	build := func(max, workers int) error {
		_, err := pipeline.Build(reg, []pipeline.Node{
			{ID: "gen", Type: "test.gen"},
			{ID: "x", Type: "test.one", Inputs: []string{"gen"}, Workers: workers, Config: &one{Max: max}},
			{ID: "out", Type: "test.collect", Inputs: []string{"x"}},
		})
		return err
	}
	var we *pipeline.WiringError
	if err := build(1, 2); !errors.As(err, &we) || we.Key != "workers" || err.Error() != `stage "x": test.one runs at most 1 worker (it counts alone); set workers: 1` {
		t.Errorf("err = %v", err)
	}
	if err := build(1, 1); err != nil {
		t.Errorf("one worker refused: %v", err)
	}
	if err := build(0, 9); err != nil {
		t.Errorf("no cap, 9 workers refused: %v", err)
	}
}

// When a stage fails, the stages downstream of it are not cancelled: they
// take what was already sent to them (a sink keeps the bytes that reached
// it) and the run reports the first error. Here the source sends four
// chunks and fails before the sink reads any: the sink still gets all four.
func TestFailureDrainsDownstream(t *testing.T) {
	reg, last := newRegistry(t)
	type failConfig struct{ Failed chan struct{} }
	pipeline.MustRegister(reg, pipeline.Def[failConfig]{
		Type: "test.failsource", Consumes: pipeline.None, Produces: pipeline.OrderedBytes,
		Memory: func(failConfig) pipeline.Memory { return pipeline.Memory{ChunkSize: 4096} },
		New: func(c failConfig) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(4096)
				for i := range 4 {
					ch := pool.Get(int64(i) * 4096)
					for j := range ch.Data {
						ch.Data[j] = pattern(int64(i)*4096 + int64(j))
					}
					if err := edges.Send(ctx, ch); err != nil {
						return err
					}
				}
				defer close(c.Failed)
				return errors.New("the network is gone")
			}), nil
		},
	})
	type waitConfig struct{ Failed chan struct{} }
	pipeline.MustRegister(reg, pipeline.Def[waitConfig]{
		Type: "test.waitfail", Consumes: pipeline.Bytes, Produces: pipeline.Same,
		New: func(c waitConfig) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				<-c.Failed // hold the chunks until the source has failed
				for {
					ch, ok, err := edges.Recv(ctx)
					if !ok {
						return err
					}
					if err := edges.Send(ctx, ch); err != nil {
						return err
					}
				}
			}), nil
		},
	})
	failed := make(chan struct{})
	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "test.failsource", Config: &failConfig{Failed: failed}},
		{ID: "hold", Type: "test.waitfail", Inputs: []string{"src"}, Queue: 8, Config: &waitConfig{Failed: failed}},
		{ID: "out", Type: "test.collect", Inputs: []string{"hold"}, Queue: 8, Config: &collectConfig{Ordered: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Run(t.Context(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 1 << 20}, Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "src: the network is gone") {
		t.Fatalf("err = %v, want the source's", err)
	}
	sink := *last
	if len(sink.got) != 4*4096 || sink.finishErr == nil || sink.committed {
		t.Fatalf("sink got %d bytes (finish error %v, committed %v); want the 16384 sent before the failure, and no commit", len(sink.got), sink.finishErr, sink.committed)
	}
	for i, b := range sink.got {
		if b != pattern(int64(i)) {
			t.Fatalf("byte %d is %d, want %d", i, b, pattern(int64(i)))
		}
	}
}

// A probe's answer that no stage takes is closed by the run: when it ends,
// and at once when a resume already has offset 0.
func TestRunClosesPrefetched(t *testing.T) {
	for _, present := range [][]pipeline.Range{nil, {{Start: 0, End: 10}}} {
		var log []string
		reg := hookRegistry(t)
		g, err := pipeline.Build(reg, []pipeline.Node{
			{ID: "gen", Type: "test.gen", Config: &genConfig{Size: 0, Chunk: 4096}},
			{ID: "have", Type: "test.hooks", Inputs: []string{"gen"}, Config: &hookConfig{Log: &log, Present: present}},
			{ID: "out", Type: "test.collect", Inputs: []string{"have"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		body := &closeCounter{}
		res := &pipeline.Resource{Size: 100, Prefetched: body}
		if err := g.Run(t.Context(), pipeline.RunOptions{Resource: res, Log: zerolog.Nop()}); err != nil {
			t.Fatal(err)
		}
		if body.closed != 1 {
			t.Errorf("present %v: the answer closed %d times, want once", present, body.closed)
		}
	}
}

type closeCounter struct{ closed int }

func (c *closeCounter) Read([]byte) (int, error) { return 0, io.EOF }
func (c *closeCounter) Close() error             { c.closed++; return nil }

// Transferred is called once, after every Run and before any Finish, when
// the runs succeeded; not when a stage failed.
func TestTransferredBeforeFinish(t *testing.T) {
	for _, fail := range []bool{false, true} {
		var log []string
		reg := hookRegistry(t)
		gen := &genConfig{Size: 64 << 10, Chunk: 4096}
		if fail {
			gen.FailAt = 8 << 10
		}
		g, err := pipeline.Build(reg, []pipeline.Node{
			{ID: "gen", Type: "test.gen", Config: gen},
			{ID: "a", Type: "test.hooks", Inputs: []string{"gen"}, Config: &hookConfig{Log: &log}},
			{ID: "out", Type: "test.collect", Inputs: []string{"a"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		err = g.Run(t.Context(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 64 << 10}, Log: zerolog.Nop(),
			Transferred: func() { log = append(log, "transferred") }})
		want := []string{"a.Resume", "a.Start have=0", "transferred", "a.Finish"}
		if fail {
			want = []string{"a.Resume", "a.Start have=0", "a.Finish"}
		}
		if (err != nil) != fail || !slices.Equal(log, want) {
			t.Errorf("fail=%v: err %v, hooks ran as %q, want %q", fail, err, log, want)
		}
	}
}
