package dlflow_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/stages"
)

// gunzipDef is a transform that changes the bytes: it decompresses the
// ordered stream it receives, so its output has offsets and a length of
// its own (Reshapes).
var gunzipDef = pipeline.Def[struct{}]{
	Type: "test.gunzip", Summary: "decompresses gzip", Consumes: pipeline.OrderedBytes, Produces: pipeline.OrderedBytes,
	Reshapes:   true,
	MaxWorkers: func(struct{}) (int, string) { return 1, "one stream" },
	Memory:     func(struct{}) pipeline.Memory { return pipeline.Memory{ChunkSize: 64 << 10, PerReplica: 64 << 10} },
	New: func(struct{}) (pipeline.Stage, error) {
		return pipeline.StageFunc(gunzip), nil
	},
}

func gunzip(ctx context.Context, env *pipeline.Env, io_ pipeline.IO) error {
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() {
		var err error
		for {
			c, ok, rerr := io_.Recv(ctx)
			if !ok {
				err = rerr
				break
			}
			_, err = pw.Write(c.Data)
			c.Release()
			if err != nil {
				break
			}
		}
		pw.CloseWithError(err) // nil: EOF
		fed <- err
	}()
	defer func() {
		pr.CloseWithError(errors.New("gunzip stopped"))
		<-fed
	}()
	zr, err := gzip.NewReader(pr)
	if err != nil {
		return err
	}
	pool := env.Buffers.Pool(64 << 10)
	var off int64
	for {
		c := pool.Get(off)
		n, err := io.ReadFull(zr, c.Data)
		c.Data = c.Data[:n]
		if n > 0 {
			off += int64(n)
			if serr := io_.Send(ctx, c); serr != nil {
				return serr
			}
		} else {
			c.Release()
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case err != nil:
			return err
		}
	}
}

const gunzipTopology = `stages:
  fetch: {type: http.source}
  gunzip: {type: test.gunzip, inputs: [fetch]}
  write: {type: file.sink, inputs: [gunzip]}
`

// gzServer serves the gzip of content as a plain file with its
// Content-Length (no Content-Encoding), ranges and an ETag. cutAt, when
// positive, ends the first answer's body after that many bytes.
func gzServer(t *testing.T, content []byte, cutAt int64) (url string, gz []byte) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(content)
	zw.Close()
	gz = buf.Bytes()
	var answers atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"gz-1"`)
		if r.Method == http.MethodGet && answers.Add(1) == 1 && cutAt > 0 {
			// The first answer (a 206 to the probe's Range, or a 200) is
			// cut short by a server that then hangs up.
			w = &cutWriter{ResponseWriter: w, left: cutAt}
		}
		http.ServeContent(w, r, "f.gz", time.Time{}, bytes.NewReader(gz))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/f.gz", gz
}

func gunzipClient(t *testing.T) *dlflow.Client {
	reg := pipeline.NewRegistry()
	for _, register := range []func(*pipeline.Registry) error{stages.Register, sinks.Register} {
		if err := register(reg); err != nil {
			t.Fatal(err)
		}
	}
	pipeline.MustRegister(reg, gunzipDef)
	return newClient(t, dlflow.WithRegistry(reg))
}

// A transform that changes the length: the sink takes the decompressed
// bytes past the resource's (compressed) Content-Length, and the output is
// the content.
func TestTransformReshapes(t *testing.T) {
	noLeaks(t)
	content := randomBytes(1<<20+11, 1)
	content = append(content, bytes.Repeat([]byte("compressible "), 50_000)...)
	url, gz := gzServer(t, content, 0)
	out := filepath.Join(t.TempDir(), "f")
	res, err := gunzipClient(t).Do(t.Context(), &dlflow.Request{URL: url, Path: out, Topology: dlflow.Topology{Data: []byte(gunzipTopology), File: "gunzip.yaml"}})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	if got := fileSHA256(t, out); got != hex.EncodeToString(sum[:]) || res.Bytes != int64(len(content)) {
		t.Fatalf("output sha256 %s, %d bytes; want the %d bytes of content (from %d compressed)", got, res.Bytes, len(content), len(gz))
	}
}

// After a stage that reshapes the bytes, an interrupted download keeps a
// resume state of no ranges (its offsets are not the server's), and the
// rerun starts over and gets the content right.
func TestTransformDoesNotResume(t *testing.T) {
	noLeaks(t)
	content := randomBytes(1<<20, 3) // incompressible: the cut falls mid-content
	url, gz := gzServer(t, content, 600<<10)
	out := filepath.Join(t.TempDir(), "f")
	c := gunzipClient(t)
	req := &dlflow.Request{URL: url, Path: out, Topology: dlflow.Topology{Data: []byte(gunzipTopology), File: "gunzip.yaml"},
		Sets: []string{"stages.fetch.config.attempts=1"}}
	if _, err := c.Do(t.Context(), req); err == nil {
		t.Fatal("a body cut short with no retry left succeeded")
	}
	assertMissing(t, out)
	// A state that claims no byte: it marks the partial file as dlflow's.
	if n := readResumeState(t, out).claimed(); n != 0 {
		t.Fatalf("the resume state kept after a reshaping stage claims %d bytes", n)
	}
	if _, err := c.Do(t.Context(), req); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	sum := sha256.Sum256(content)
	if got := fileSHA256(t, out); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("rerun output sha256 %s; want the content's (%d compressed bytes)", got, len(gz))
	}
}

// randomBytes returns n bytes of a ChaCha8 stream of seed.
func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// cutWriter aborts the answer after left body bytes.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) >= w.left {
		_, _ = w.ResponseWriter.Write(p[:w.left])
		_ = http.NewResponseController(w.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	}
	w.left -= int64(len(p))
	return w.ResponseWriter.Write(p)
}
