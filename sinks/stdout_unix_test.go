//go:build unix

package sinks_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// A reader that went away (`dlflow URL -o - | head -c 1000`) ends the run
// at the first write after it, with an error that says EPIPE, and every
// buffer comes back. The source would send forever otherwise.
func TestStdoutSinkBrokenPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	buf := make([]byte, 1000)
	sent := 0
	endless := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(chunk)
		for off := int64(0); ; off += chunk {
			if err := edges.Send(ctx, pool.Get(off)); err != nil {
				return err
			}
			if sent++; sent == 1 {
				// Read a little, then go away, as head -c does.
				if _, err := r.Read(buf); err != nil {
					return err
				}
				r.Close()
			}
		}
	}
	g := newRig(t).buildChunked(t, endless, chunk, "stdout.sink", stdoutCfg(w), 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = run(t, ctx, g, -1)
	if !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Run: %v, want an error wrapping EPIPE", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the run ended by the test's timeout, not by the broken pipe: %v", err)
	}
	if !strings.Contains(err.Error(), "out: write at byte ") {
		t.Errorf("error %q does not name the sink and the byte", err)
	}
}
