package stages

import (
	"context"
	"fmt"
	"math"

	"github.com/dlflow/dlflow/pipeline"
)

// pieceAlign is the granularity of the splitter's pieces: ranges on page
// boundaries keep positional writes aligned for the file system.
const pieceAlign = 4 << 10

// SplitterConfig configures a range.splitter.
type SplitterConfig struct {
	Piece pipeline.ByteSize `koanf:"piece" help:"size of each range handed to the readers, rounded up to a multiple of 4KiB"`
}

// Splitter is the range.splitter stage: the source of the ranged topology.
// It cuts the resource into pieces and hands them out in offset order.
//
// After a resume it cuts only what is missing (env.Have.Missing): pieces
// never cross bytes an earlier run wrote, and keep their boundaries at
// multiples of the piece size, so a rerun with another piece size or number
// of readers fetches nothing twice.
//
// When the graph has a reorder window (env.Window), the splitter acquires
// each piece from it before handing it out, so the bytes a reorderer can hold
// never exceed the window, however slow the reader of the first piece is.
//
// Run it with one worker: every replica would hand out every piece, so
// replicas other than 0 return at once without sending anything.
type Splitter struct {
	piece int64
}

var splitterDef = pipeline.Def[SplitterConfig]{
	Type:     "range.splitter",
	Summary:  "cuts the resource into byte ranges for parallel range readers",
	Consumes: pipeline.None,
	Produces: pipeline.Ranges,
	Defaults: SplitterConfig{Piece: 4 << 20},
	New: func(c SplitterConfig) (pipeline.Stage, error) {
		if c.Piece <= 0 {
			return nil, fmt.Errorf("piece must be more than 0, got %v", c.Piece)
		}
		return &Splitter{piece: alignPiece(c.Piece)}, nil
	},
	Memory: func(c SplitterConfig) pipeline.Memory {
		return pipeline.Memory{MaxRange: alignPiece(c.Piece)}
	},
	MaxWorkers: func(SplitterConfig) (int, string) { return 1, "it hands out each range once" },
}

func init() { builtin(splitterDef) }

// alignPiece rounds a piece size up to a multiple of pieceAlign.
func alignPiece(p pipeline.ByteSize) int64 {
	n := int64(p)
	if n <= 0 {
		return n
	}
	if n > math.MaxInt64-pieceAlign {
		return math.MaxInt64 &^ (pieceAlign - 1)
	}
	return (n + pieceAlign - 1) / pieceAlign * pieceAlign
}

// Piece is the size of the ranges the splitter hands out (the last one may
// be shorter).
func (s *Splitter) Piece() int64 { return s.piece }

// Run hands out [0,piece), [piece,2*piece), ... up to Resource.Size, minus
// the ranges present from an earlier run (env.Have). When the
// size is unknown or the server does not take ranges it hands out the single
// range {0, -1}, which a reader streams as one body. It blocks while the
// window (if any) or the readers have no room, and returns ctx.Err() when
// cancelled.
func (s *Splitter) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	res := env.Resource
	if res != nil && res.Size == 0 {
		return nil
	}
	if !res.SizeKnown() || !res.AcceptRanges {
		ev := env.Log.Info()
		if res != nil {
			ev = ev.Int64("size", res.Size).Bool("accept_ranges", res.AcceptRanges)
		}
		ev.Msg("size unknown or ranges not supported; downloading as a single stream")
		return s.send(ctx, env, edges, pipeline.Range{Start: 0, End: -1})
	}
	missing := []pipeline.Range{{Start: 0, End: res.Size}}
	if env.Have != nil {
		missing = env.Have.Missing(res.Size)
	}
	for _, m := range missing {
		for start := m.Start; start < m.End; {
			end := m.End
			if b := start - start%s.piece; b <= m.End-s.piece {
				end = b + s.piece // the next multiple of the piece size
			}
			if err := s.send(ctx, env, edges, pipeline.Range{Start: start, End: end}); err != nil {
				return err
			}
			start = end
		}
	}
	return nil
}

func (s *Splitter) send(ctx context.Context, env *pipeline.Env, edges pipeline.IO, r pipeline.Range) error {
	if env.Window != nil {
		if err := env.Window.Acquire(ctx, r); err != nil {
			return err
		}
	}
	return edges.SendRange(ctx, r)
}
