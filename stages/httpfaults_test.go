package stages

// Fault tests at the stage level: the answers that depend on what the range
// at offset 0 showed (rangeSupport), a resumed stream, and the transport's
// idle timeout.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow/httpx"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// TestHTTPReaderFaultIgnoredRanges: a server that advertises ranges but
// answers 200 with the whole body. With any number of workers the output is
// every byte exactly once: the range at 0 streams the whole body, the other
// ranges are dropped, never written at their offsets.
func TestHTTPReaderFaultIgnoredRanges(t *testing.T) {
	const size = 5<<20 + 3
	for _, workers := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, size, nil)
			res := htProbe(t, srv.URL())
			if !res.AcceptRanges {
				t.Fatal("the origin should advertise ranges")
			}
			srv.SetFaults(origin.Faults{IgnoreRange: true})
			out := newHTOutput()
			err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(htPieces(size, 1<<20), workers, htReaderConfig(nil), out)...)
			if err != nil {
				t.Fatal(err)
			}
			htCheck(t, out, size)
			if !out.ordered {
				t.Fatal("the whole-body stream should arrive in order")
			}
		})
	}
}

// TestHTTPReaderFaultLateWholeBody: the range at 0 is answered 206, a later
// one 200 with the whole body. That 200 is a *httpx.RangeError, and none of its
// bytes reach the output.
func TestHTTPReaderFaultLateWholeBody(t *testing.T) {
	htNoLeaks(t)
	const size = 3 << 20
	data := htContent(size)
	var zeroDone atomic.Bool
	srv := newHTFileServer(t, data, func(n int, w http.ResponseWriter, r *http.Request) bool {
		rng := r.Header.Get("Range")
		if strings.HasPrefix(rng, "bytes=0-") {
			defer zeroDone.Store(true)
			return false
		}
		if rng == "" {
			return false
		}
		// Answer the later ranges only after the range at 0 was
		// (bounded in time, not in sleeps, which a loaded machine
		// stretches).
		for deadline := time.Now().Add(10 * time.Second); !zeroDone.Load() && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
		return true
	})
	res := htProbe(t, srv.URL)
	out := newHTOutput()
	err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(htPieces(size, 1<<20), 3, htReaderConfig(nil), out)...)
	var re *httpx.RangeError
	if !errors.As(err, &re) || re.Status != http.StatusOK || re.Range.Start == 0 {
		t.Fatalf("err = %v, want a *httpx.RangeError for a 200 to a later range", err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	for _, c := range out.chunks {
		if c.Start >= 1<<20 && !bytes.Equal(out.data[c.Start:c.End], data[c.Start:c.End]) {
			t.Fatalf("wrong bytes at %v", c)
		}
		if c.End > 1<<20 && c.Start < 1<<20 {
			t.Fatalf("chunk %v crosses the end of the range at 0", c)
		}
	}
}

// TestHTTPReaderFaultWholeBodyCut: the whole body streamed for a server that
// ignores ranges is cut; it cannot be resumed, so the run fails cleanly
// instead of retrying into a 200 at an offset.
func TestHTTPReaderFaultWholeBodyCut(t *testing.T) {
	htNoLeaks(t)
	const size = 4 << 20
	srv := htOrigin(t, size, nil)
	res := htProbe(t, srv.URL())
	srv.SetFaults(origin.Faults{IgnoreRange: true, DropAfter: 1 << 20})
	err := htRun(t, htCtx(t, 30*time.Second), res, htReaderGraph(htPieces(size, 1<<20), 2, htReaderConfig(nil), newHTOutput())...)
	if err == nil || !strings.Contains(err.Error(), "cannot resume at byte") {
		t.Fatalf("err = %v", err)
	}
}

// htHaveConfig configures ht.havesink.
type htHaveConfig struct {
	Out    *htOutput
	Prefix int64
}

// htHaveSinkDef is ht.sink that, like a resuming file sink, reports in
// Resume that the first Prefix bytes are present.
var htHaveSinkDef = pipeline.Def[htHaveConfig]{
	Type: "ht.havesink", Consumes: pipeline.Bytes, Produces: pipeline.None,
	New: func(cfg htHaveConfig) (pipeline.Stage, error) {
		return &htHaveSink{cfg: cfg}, nil
	},
}

type htHaveSink struct{ cfg htHaveConfig }

func (s *htHaveSink) Resume(context.Context, *pipeline.Env) ([]pipeline.Range, io.ReaderAt, error) {
	return []pipeline.Range{{Start: 0, End: s.cfg.Prefix}}, nil, nil
}

func (s *htHaveSink) Run(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
	for c := range edges.Chunks {
		err := s.cfg.Out.write(c)
		c.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestHTTPSourceFaultResumesAfterHave: a stream whose sink already has a
// prefix asks for the rest only, with If-Range; if the file changed since,
// the answer is httpx.ErrResourceChanged, never bytes of the new version after
// the old prefix.
func TestHTTPSourceFaultResumesAfterHave(t *testing.T) {
	const size, prefix = 2<<20 + 9, 1<<20 + 5
	run := func(t *testing.T, mod func(*pipeline.Resource)) (*htOutput, *origin.Server, error) {
		srv := htOrigin(t, size, nil)
		res := htProbe(t, srv.URL())
		srv.ResetStats()
		if mod != nil {
			mod(res)
		}
		reg := htRegistry(t)
		if err := pipeline.Register(reg, htHaveSinkDef); err != nil {
			t.Fatal(err)
		}
		out := newHTOutput()
		out.next = prefix
		g, err := pipeline.Build(reg, []pipeline.Node{
			{ID: "src", Type: "http.source", Config: ptr(htSourceConfig(nil))},
			{ID: "sink", Type: "ht.havesink", Inputs: []string{"src"}, Config: &htHaveConfig{Out: out, Prefix: prefix}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, srv, g.Run(htCtx(t, 30*time.Second), pipeline.RunOptions{Resource: res, Log: zerolog.Nop()})
	}
	t.Run("same file", func(t *testing.T) {
		htNoLeaks(t)
		out, srv, err := run(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		log := srv.Log()
		if len(log) != 1 || log[0].Range != "bytes=1048581-" || log[0].IfRange == "" {
			t.Fatalf("requests %+v", log)
		}
		want := htContent(size)
		if !out.ordered || out.bytes != size-prefix || !bytes.Equal(out.data[prefix:], want[prefix:]) {
			t.Fatalf("got %d bytes, ordered %v", out.bytes, out.ordered)
		}
	})
	t.Run("changed file", func(t *testing.T) {
		htNoLeaks(t)
		// The earlier run saw another version: its validator no longer
		// matches.
		out, srv, err := run(t, func(res *pipeline.Resource) { res.ETag = `"old"` })
		if !errors.Is(err, httpx.ErrResourceChanged) {
			t.Fatalf("err = %v, want httpx.ErrResourceChanged", err)
		}
		if out.bytes != 0 {
			t.Fatalf("%d bytes of the new version written after the old prefix", out.bytes)
		}
		if log := srv.Log(); len(log) != 1 || log[0].IfRange != `"old"` {
			t.Fatalf("requests %+v", log)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestHTTPClientFaultIdleTimeout: http.idle_timeout cuts a silent
// connection at the transport, with a timeout the retry policy retries.
func TestHTTPClientFaultIdleTimeout(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 1<<20, func(o *origin.Options) { o.RateLimit = 1 })
	c, h := htClient(t, func(cfg *httpx.HTTPConfig) { cfg.IdleTimeout = 200 * time.Millisecond })
	req, err := http.NewRequestWithContext(htCtx(t, 10*time.Second), http.MethodGet, srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	start := time.Now()
	resp, err := c.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil || !httpx.IsTransient(err) {
		t.Fatalf("err = %v, want a transient timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}
