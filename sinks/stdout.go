package sinks

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/dlflow/dlflow/pipeline"
)

// StdoutSink is the stdout.sink stage: it writes the bytes, in file order,
// to a writer (standard output unless the run's Settings.Writer names
// another) and releases each chunk once written. It makes no file, so
// there is no resume and nothing to rename: a run either delivers every
// byte to the writer or fails part-way, with the bytes so far already out.
//
// Its input must be ordered bytes starting at offset 0 (put a
// reorder.heap before it in a ranged topology); a chunk that does not
// start where the previous one ended is an error. It runs with one
// worker.
//
// A write error ends the run at once, and the error wraps the writer's
// (a reader that went away gives one that errors.Is syscall.EPIPE). When
// a stage before it fails instead, the sink still writes the chunks
// already queued to it, in order, before it returns (the runner does not
// cancel the stages downstream of a failure): the writer then has every
// byte that passed the stages before it. That is why a hash tap's checksum
// mismatch arrives after all the bytes it hashed are out. A cancelled run
// (the caller's context) stops at once, but a Write in progress is not
// interrupted: a reader that stalls holds the run until it reads or goes
// away.
type StdoutSink struct {
	w       io.Writer
	written atomic.Int64
}

// StdoutConfig configures a stdout.sink. It has no keys: the writer comes
// from the run's settings (pipeline.Settings.Writer), since a config file
// cannot hold one.
type StdoutConfig struct {
	writer io.Writer
}

// TakeSettings takes the run's writer, when it names one.
func (c *StdoutConfig) TakeSettings(s pipeline.Settings) {
	if s.Writer != nil {
		c.writer = s.Writer
	}
}

var stdoutDef = pipeline.Def[StdoutConfig]{
	Type:     "stdout.sink",
	Summary:  "writes the bytes in order to standard output (or the program's writer); no file, no resume",
	Consumes: pipeline.OrderedBytes,
	Produces: pipeline.None,
	New: func(c StdoutConfig) (pipeline.Stage, error) {
		w := c.writer
		if w == nil {
			w = os.Stdout
		}
		return &StdoutSink{w: w}, nil
	},
	// It holds the chunk it writes, which the bound counts with its queue.
	Memory:     func(StdoutConfig) pipeline.Memory { return pipeline.Memory{} },
	MaxWorkers: func(StdoutConfig) (int, string) { return 1, "a stream is written in order by one writer" },
}

func init() { builtin(stdoutDef) }

var (
	_ pipeline.SettingsTaker = (*StdoutConfig)(nil)
	_ pipeline.Starter       = (*StdoutSink)(nil)
	_ pipeline.Finisher      = (*StdoutSink)(nil)
)

// Bytes is the number of bytes written in the current (or last) run.
func (s *StdoutSink) Bytes() int64 { return s.written.Load() }

// Start refuses a run that resumes: the bytes an earlier run wrote went
// to a writer that is gone, so a stream must start at byte 0.
func (s *StdoutSink) Start(ctx context.Context, env *pipeline.Env) error {
	s.written.Store(0)
	if env.Have != nil && env.Have.Len() > 0 {
		return fmt.Errorf("cannot resume: a stream starts at byte 0, but %d bytes are marked present", env.Have.Len())
	}
	return nil
}

// Run writes each chunk in order until its input is closed or ctx is
// done. A stage after which the run failed does not cancel the sink (see
// pipeline's runner): it writes what reached it, then its input closes.
func (s *StdoutSink) Run(ctx context.Context, env *pipeline.Env, in pipeline.IO) error {
	var next int64
	for {
		c, ok, err := in.Recv(ctx)
		if !ok {
			return err
		}
		if c.Offset != next {
			err := fmt.Errorf("input is not in order: chunk at offset %d, expected %d (put a reorder.heap before the sink)", c.Offset, next)
			c.Release()
			return err
		}
		n, err := s.w.Write(c.Data)
		if err == nil && n < len(c.Data) {
			err = io.ErrShortWrite
		}
		c.Release()
		next += int64(n)
		s.written.Add(int64(n))
		if err != nil {
			return fmt.Errorf("write at byte %d: %w", next, err)
		}
	}
}

// Finish checks, after a successful run, that every byte of a resource of
// known size was written.
func (s *StdoutSink) Finish(ctx context.Context, env *pipeline.Env, runErr error) error {
	if runErr != nil || env.Reshaped || !env.Resource.SizeKnown() {
		return nil
	}
	if n := s.written.Load(); n != env.Resource.Size {
		return fmt.Errorf("incomplete: wrote %d of %d bytes", n, env.Resource.Size)
	}
	return nil
}
