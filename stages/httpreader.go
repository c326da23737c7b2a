package stages

import (
	"context"
	"fmt"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// HTTPReaderConfig configures http.reader.
type HTTPReaderConfig struct {
	Buffer      pipeline.ByteSize `koanf:"buffer" help:"size of each chunk read from the network"`
	IdleTimeout time.Duration     `koanf:"idle_timeout" help:"a body that delivers no bytes for this long is retried; 0 disables"`
	RetryConfig `koanf:",squash"`
}

var httpReaderDef = pipeline.Def[HTTPReaderConfig]{
	Type:     "http.reader",
	Summary:  "fetches byte ranges with HTTP range requests, one connection per worker",
	Consumes: pipeline.Ranges,
	Produces: pipeline.Bytes,
	Defaults: HTTPReaderConfig{
		Buffer:      256 << 10,
		IdleTimeout: 30 * time.Second,
		RetryConfig: DefaultRetry,
	},
	New: func(cfg HTTPReaderConfig) (pipeline.Stage, error) {
		if err := checkReadBuffer(cfg.Buffer); err != nil {
			return nil, err
		}
		if cfg.IdleTimeout < 0 {
			return nil, fmt.Errorf("idle_timeout must not be negative, got %v", cfg.IdleTimeout)
		}
		if err := cfg.RetryConfig.validate(); err != nil {
			return nil, err
		}
		return &httpReader{cfg: cfg}, nil
	},
	Memory: func(cfg HTTPReaderConfig) pipeline.Memory {
		return pipeline.Memory{ChunkSize: int64(cfg.Buffer), PerReplica: int64(cfg.Buffer)}
	},
}

func init() { builtin(httpReaderDef.Spec()) }

// httpReader turns ranges into bytes. Each replica (workers: N, one
// connection each) takes ranges from its input and, for each, sends
// `Range: bytes=start-(end-1)` with If-Range, checks that the answer is a
// 206 whose Content-Range is exactly that range of the probed length with
// no Content-Encoding, and sends the body downstream as chunks at their
// offsets. A body cut short, broken or stalled is retried from its first
// missing byte; bytes already sent are never sent again.
//
// Range{Start: 0, End: -1} (size unknown, or no range support) is a plain
// GET streamed to EOF. A 200 to a ranged request is accepted only when the
// range is the whole resource; otherwise it is a *RangeError, or
// ErrResourceChanged when the 200 answers a failed If-Range. Permanent
// errors fail the stage.
type httpReader struct {
	cfg    HTTPReaderConfig
	budget httpRetryBudget
}

// Start resets the retry budget of the run and checks the resource.
func (s *httpReader) Start(ctx context.Context, env *pipeline.Env) error {
	s.budget.reset(s.cfg.Total)
	return checkResource(env.Resource)
}

// Run fetches ranges until its input is closed; see httpReader.
func (s *httpReader) Run(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
	if err := checkResource(env.Resource); err != nil {
		return err
	}
	f := newHTTPFetcher(env, io, s.cfg.Buffer, s.cfg.IdleTimeout, s.cfg.RetryConfig, &s.budget)
	size := env.Resource.Size
	for {
		var r pipeline.Range
		select {
		case <-ctx.Done():
			return ctx.Err()
		case got, ok := <-io.Ranges:
			if !ok {
				return nil
			}
			r = got
		}
		switch {
		case r.Start < 0 || (r.End >= 0 && r.End < r.Start):
			return fmt.Errorf("invalid range [%d, %d)", r.Start, r.End)
		case size >= 0 && (r.End > size || r.Start > size):
			return fmt.Errorf("range [%d, %d) lies beyond the resource's %d bytes", r.Start, r.End, size)
		}
		p := httpPiece{start: r.Start, end: r.End}
		if r.End < 0 {
			// To the end of the body: plain GET from 0, open-ended Range
			// otherwise.
			p.plain, p.openEnded = r.Start == 0, true
		}
		if err := f.fetch(ctx, p); err != nil {
			return err
		}
	}
}
