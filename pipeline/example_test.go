package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// A graph of two custom stages: a source that emits a text in 4-byte chunks
// and a sink that prints each chunk.
func ExampleBuild() {
	reg := pipeline.NewRegistry()
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "hello.source", Consumes: pipeline.None, Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				const text = "hello, dataflow"
				pool := env.Buffers.Pool(4)
				for off := 0; off < len(text); {
					ch := pool.Get(int64(off))
					ch.Data = ch.Data[:copy(ch.Data, text[off:])]
					off += len(ch.Data)
					if err := edges.Send(ctx, ch); err != nil { // the sink owns ch now
						return err
					}
				}
				return nil
			}), nil
		},
	})
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "print.sink", Consumes: pipeline.OrderedBytes, Produces: pipeline.None,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for ch := range edges.Chunks {
					fmt.Printf("%d %q\n", ch.Offset, ch.Data)
					ch.Release()
				}
				return nil
			}), nil
		},
	})

	g, err := pipeline.Build(reg, []pipeline.Node{
		{ID: "src", Type: "hello.source"},
		{ID: "out", Type: "print.sink", Inputs: []string{"src"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = g.Run(context.Background(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: 15}})
	fmt.Println("run:", err)
	// Output:
	// 0 "hell"
	// 4 "o, d"
	// 8 "ataf"
	// 12 "low"
	// run: <nil>
}

// UpperConfig is the config of the text.upper stage below. Config files set
// it under the stage's `config:` key, by the koanf tag names.
type UpperConfig struct {
	Letters string `koanf:"letters" help:"the letters to capitalize"`
}

// Register declares a stage type with a typed config and its defaults. A
// stage package registers into pipeline.DefaultRegistry from an init
// function, usually with MustRegister.
func ExampleRegister() {
	upper := pipeline.Def[UpperConfig]{
		Type:     "text.upper",
		Summary:  "capitalizes some letters as the bytes pass",
		Consumes: pipeline.Bytes,
		Produces: pipeline.Same, // keeps the order of its input, if any
		Defaults: UpperConfig{Letters: "abcdefghijklmnopqrstuvwxyz"},
		New: func(c UpperConfig) (pipeline.Stage, error) {
			if c.Letters == "" {
				return nil, errors.New("letters must not be empty")
			}
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				for ch := range edges.Chunks {
					for i, b := range ch.Data {
						for _, l := range []byte(c.Letters) {
							if b == l {
								ch.Data[i] = b - 'a' + 'A'
							}
						}
					}
					if err := edges.Send(ctx, ch); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	}
	reg := pipeline.NewRegistry()
	fmt.Println(pipeline.Register(reg, upper))
	fmt.Println(pipeline.Register(reg, upper))

	info, _ := reg.Describe("text.upper", nil)
	defaults, _ := reg.NewConfig("text.upper")
	fmt.Printf("%s: %s (%s -> %s)\n", "text.upper", info.Summary, info.Consumes, info.Produces)
	fmt.Printf("defaults: %+v\n", *defaults.(*UpperConfig))

	// Build checks a node's config with the stage's New before any I/O.
	_, err := pipeline.Build(reg, []pipeline.Node{{ID: "up", Type: "text.upper", Config: &UpperConfig{}}})
	fmt.Println(err)
	// Output:
	// <nil>
	// register stage type "text.upper": already registered
	// text.upper: capitalizes some letters as the bytes pass (bytes -> same as input)
	// defaults: {Letters:abcdefghijklmnopqrstuvwxyz}
	// stage "up": letters must not be empty
}

// A window of 8 bytes between a splitter handing out 4-byte ranges and a
// reorderer that has emitted nothing yet.
func ExampleWindow() {
	ctx := context.Background()
	w := pipeline.NewWindow(8)

	// Both ranges end within 8 bytes of the frontier (0): they go at once.
	fmt.Println(w.Acquire(ctx, pipeline.Range{Start: 0, End: 4}))
	fmt.Println(w.Acquire(ctx, pipeline.Range{Start: 4, End: 8}))

	// [8,12) would let the reorderer hold more than 8 bytes: it waits.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	fmt.Println(w.Acquire(short, pipeline.Range{Start: 8, End: 12}))

	// The reorderer emitted [0,4) in order: the window slides.
	w.Advance(4)
	fmt.Println(w.Acquire(ctx, pipeline.Range{Start: 8, End: 12}), w.Frontier())
	// Output:
	// <nil>
	// <nil>
	// context deadline exceeded
	// <nil> 4
}
