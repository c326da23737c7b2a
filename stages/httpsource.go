package stages

import (
	"context"
	"sync/atomic"

	"github.com/dlflow/dlflow/httpx"

	"github.com/dlflow/dlflow/pipeline"
)

// HTTPSourceConfig configures http.source.
type HTTPSourceConfig struct {
	BodyConfig `koanf:",squash"`
}

var httpSourceDef = pipeline.Def[HTTPSourceConfig]{
	Type:     "http.source",
	Summary:  "streams the resource with one GET, in order, resuming a cut body where it stopped",
	Consumes: pipeline.None,
	Produces: pipeline.OrderedBytes,
	Defaults: HTTPSourceConfig{BodyConfig: DefaultBody},
	New: func(cfg HTTPSourceConfig) (pipeline.Stage, error) {
		if err := cfg.validate(); err != nil {
			return nil, err
		}
		return &httpSource{cfg: cfg}, nil
	},
	Memory:   func(cfg HTTPSourceConfig) pipeline.Memory { return cfg.memory() },
	Connects: true,
	// Each replica would download the whole file.
	MaxWorkers: func(HTTPSourceConfig) (int, string) {
		return 1, "it streams one body over one connection; use range.splitter and http.reader for parallel connections"
	},
}

func init() { builtin(httpSourceDef) }

// httpSource is the stream topology's source: one GET of env.Resource whose
// body becomes chunks in file order, each filled as full as the body allows.
//
// It checks the answer (200, no Content-Encoding, the probed length) and
// counts bytes: a body that ends early, breaks or stalls is resumed from the
// first missing byte with Range and If-Range when the server accepts ranges;
// a 200 to that request means the file changed (httpx.ErrResourceChanged). With an
// unknown size it streams to EOF, and a broken body is an error, never a
// short file.
type httpSource struct {
	cfg    HTTPSourceConfig
	budget httpx.RetryBudget
}

var _ pipeline.Starter = (*httpSource)(nil)

// Start resets the retry budget of the run and checks the resource.
func (s *httpSource) Start(ctx context.Context, env *pipeline.Env) error {
	s.budget.Reset(s.cfg.Total)
	return checkResource(env.Resource)
}

// Run sends the resource's bytes in order; see httpSource.
func (s *httpSource) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	if err := checkResource(env.Resource); err != nil {
		return err
	}
	f := newHTTPFetcher(env, edges, s.cfg.BodyConfig, &s.budget, newRangeSupport(), new(atomic.Int64))
	// A resumed sink already has a prefix: ask for the rest only, with
	// Range and If-Range, so a changed file is refused rather than mixed in.
	start := int64(0)
	if env.Have != nil {
		start = env.Have.Skip(0)
	}
	if size := env.Resource.Size; start > 0 && size >= 0 && start >= size {
		return nil
	}
	return f.fetch(ctx, httpPiece{start: start, end: env.Resource.Size, plain: start == 0, openEnded: true}, nil)
}
