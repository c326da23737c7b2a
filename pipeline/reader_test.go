package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
)

// readerRun sends text in chunks at the given offsets (each chunk of size
// bytes) to a sink that reads it with a pipeline.Reader, in reads of
// readSize bytes, stopping after stopAfter bytes when positive. It returns
// what the sink read, the sink's error, and the bytes still borrowed.
func readerRun(t *testing.T, text string, size int, offsets []int, readSize, stopAfter int) (string, error, int64) {
	t.Helper()
	reg := pipeline.NewRegistry()
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "src", Produces: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				pool := env.Buffers.Pool(size)
				for _, off := range offsets {
					c := pool.Get(int64(off))
					c.Data = c.Data[:copy(c.Data, text[off:])]
					if err := edges.Send(ctx, c); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	})
	var got strings.Builder
	pipeline.MustRegister(reg, pipeline.Def[struct{}]{
		Type: "read", Consumes: pipeline.OrderedBytes,
		New: func(struct{}) (pipeline.Stage, error) {
			return pipeline.StageFunc(func(ctx context.Context, env *pipeline.Env, in pipeline.IO) error {
				r := pipeline.NewReader(ctx, in)
				defer r.Close()
				buf := make([]byte, readSize)
				for stopAfter <= 0 || got.Len() < stopAfter {
					n, err := r.Read(buf)
					got.Write(buf[:n])
					if err == io.EOF {
						if r.Offset() != int64(got.Len()) {
							return fmt.Errorf("offset %d after %d bytes", r.Offset(), got.Len())
						}
						return nil
					}
					if err != nil {
						return err
					}
				}
				return nil // stops with a chunk in hand: Close releases it
			}), nil
		},
	})
	g, err := pipeline.Build(reg, []pipeline.Node{{ID: "src", Type: "src"}, {ID: "read", Type: "read", Inputs: []string{"src"}}})
	if err != nil {
		t.Fatal(err)
	}
	bufs := pipeline.NewBuffers()
	err = g.Run(t.Context(), pipeline.RunOptions{Resource: &pipeline.Resource{Size: int64(len(text))}, Log: zerolog.Nop(), Buffers: bufs})
	return got.String(), err, bufs.InUse()
}

func TestReader(t *testing.T) {
	text := strings.Repeat("the reader reads the chunks in order; ", 40)
	var offsets []int
	for off := 0; off < len(text); off += 7 {
		offsets = append(offsets, off)
	}
	for _, readSize := range []int{1, 5, 7, 64} {
		got, err, inUse := readerRun(t, text, 7, offsets, readSize, 0)
		if err != nil || got != text || inUse != 0 {
			t.Fatalf("reads of %d: %d bytes, %v, %d bytes still borrowed; want the text", readSize, len(got), err, inUse)
		}
	}
	// Stopped early with a chunk half read: Close gives it back.
	got, err, inUse := readerRun(t, text, 7, offsets, 3, 10)
	if err != nil || got != text[:10] || inUse != 0 {
		t.Fatalf("stopped early: %q, %v, %d bytes still borrowed", got, err, inUse)
	}
	// A gap is an error, not bytes at the wrong place.
	_, err, inUse = readerRun(t, text, 7, []int{0, 7, 21}, 64, 0)
	if err == nil || !strings.Contains(err.Error(), "input is not in order: chunk at offset 21, expected 14") || inUse != 0 {
		t.Fatalf("gap: %v, %d bytes still borrowed", err, inUse)
	}
}
