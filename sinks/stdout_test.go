package sinks_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// stdoutCfg is a stdout.sink config that writes to w, as a run whose
// settings name w configures it.
func stdoutCfg(w interface{ Write([]byte) (int, error) }) *sinks.StdoutConfig {
	c := &sinks.StdoutConfig{}
	c.TakeSettings(pipeline.Settings{Writer: w})
	return c
}

func TestStdoutSinkWritesInOrder(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("known=%v", known), func(t *testing.T) {
			data := payload(3<<20 + 17)
			var out bytes.Buffer
			g := newRig(t).buildChunked(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), chunk, "stdout.sink", stdoutCfg(&out), 1)
			size := int64(len(data))
			if !known {
				size = -1
			}
			if err := run(t, t.Context(), g, size); err != nil {
				t.Fatal(err)
			}
			if out.Len() != len(data) || sum(out.Bytes()) != sum(data) {
				t.Fatalf("wrote %d bytes, sha256 %s; want %d bytes, %s", out.Len(), sum(out.Bytes()), len(data), sum(data))
			}
		})
	}
}

func TestStdoutSinkRefusesUnorderedInput(t *testing.T) {
	data := payload(4*chunk + 1)
	var out bytes.Buffer
	order := []int{0, 2, 1, 3, 4}
	g := newRig(t).build(t, sendPieces(data, chunk, order), "stdout.sink", stdoutCfg(&out), 1)
	err := run(t, t.Context(), g, int64(len(data)))
	want := fmt.Sprintf("input is not in order: chunk at offset %d, expected %d (put a reorder.heap before the sink)", 2*chunk, chunk)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run: %v, want %q", err, want)
	}
	// What came before the gap is out, nothing after it.
	if !bytes.Equal(out.Bytes(), data[:chunk]) {
		t.Fatalf("wrote %d bytes, want the first %d", out.Len(), chunk)
	}
}

func TestStdoutSinkIncomplete(t *testing.T) {
	data := payload(chunk + 1)
	var out bytes.Buffer
	g := newRig(t).build(t, sendPieces(data, chunk, pieces(len(data), chunk, 0)), "stdout.sink", stdoutCfg(&out), 1)
	err := run(t, t.Context(), g, int64(len(data))+1)
	want := fmt.Sprintf("incomplete: wrote %d of %d bytes", len(data), len(data)+1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run: %v, want %q", err, want)
	}
}

func TestStdoutSinkOneWorker(t *testing.T) {
	_, err := pipeline.Build(newRig(t).reg, []pipeline.Node{
		{ID: "src", Type: "test.source", Config: &srcConfig{Run: sendPieces(nil, chunk, nil)}},
		{ID: "out", Type: "stdout.sink", Inputs: []string{"src"}, Workers: 2},
	})
	if err == nil || !strings.Contains(err.Error(), "a stream is written in order by one writer") {
		t.Fatalf("Build with 2 workers: %v", err)
	}
}

// ExampleStdoutSink streams what a source delivers to standard output,
// which is where the sink writes unless the run's settings name a writer.
func ExampleStdoutSink() {
	reg := pipeline.NewRegistry()
	_ = sinks.Register(reg)
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type:     "hello.source",
		Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				off := int64(0)
				for _, s := range []string{"hello, ", "world\n"} {
					c := env.Buffers.Pool(16).Get(off)
					c.Data = c.Data[:copy(c.Data, s)]
					off += int64(len(c.Data))
					if err := edges.Send(ctx, c); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	g, _ := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "hello.source"},
		{ID: "out", Type: "stdout.sink", Inputs: []string{"src"}},
	})
	err := g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 13}, Log: zerolog.Nop()})
	fmt.Println("run:", err)
	// Output:
	// hello, world
	// run: <nil>
}
