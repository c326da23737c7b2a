package dlflow_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/sinks/archive"
	"github.com/dlflow/dlflow/sinks/s3"
	"github.com/dlflow/dlflow/stages"
	"github.com/dlflow/dlflow/stages/decompress"
)

// registryWithout is a registry of the stages and sinks packages and of
// the backends in with: what pipeline.DefaultRegistry holds in a program
// that imports only those.
func registryWithout(t *testing.T, with ...func(*pipeline.Registry) error) *pipeline.Registry {
	t.Helper()
	reg := pipeline.NewRegistry()
	for _, register := range append([]func(*pipeline.Registry) error{stages.Register, sinks.Register}, with...) {
		if err := register(reg); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// A request that needs a backend the program did not import fails before
// any request with a *MissingBackendError that names the import to add;
// Check says the same. With the backend registered, the same request gets
// past the check.
func TestMissingBackend(t *testing.T) {
	noLeaks(t)
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, "gone", http.StatusGone)
	}))
	defer srv.Close()
	dir := t.TempDir()
	custom := dlflow.Topology{File: "gunzip.yaml", Data: []byte(`stages:
  fetch: {type: http.source}
  decode: {type: decompress, inputs: [fetch]}
  write: {type: file.sink, inputs: [decode]}
`)}
	cases := []struct {
		name     string
		req      dlflow.Request
		with     func(*pipeline.Registry) error // the backend that makes it pass
		want     string
		stage    string
		imported string
		base     []func(*pipeline.Registry) error // backends registered from the start
	}{
		{"s3", dlflow.Request{Path: "s3://bucket/key"}, s3.Register,
			`s3:// output needs the S3 backend: import _ "github.com/dlflow/dlflow/sinks/s3"`, "s3.sink", "github.com/dlflow/dlflow/sinks/s3", nil},
		{"s3 topology", dlflow.Request{Path: "s3://bucket/key", Topology: dlflow.Topology{Name: "s3"}}, s3.Register,
			`stage type "s3.sink" needs the S3 backend: import _ "github.com/dlflow/dlflow/sinks/s3"`, "s3.sink", "github.com/dlflow/dlflow/sinks/s3", nil},
		{"extract", dlflow.Request{Extract: filepath.Join(dir, "x")}, decompress.Register,
			`extraction needs the decompress backend: import _ "github.com/dlflow/dlflow/stages/decompress"`, "decompress", "github.com/dlflow/dlflow/stages/decompress",
			[]func(*pipeline.Registry) error{archive.Register}},
		{"extract with decompress", dlflow.Request{Extract: filepath.Join(dir, "x")}, archive.Register,
			`extraction needs the archive backend: import _ "github.com/dlflow/dlflow/sinks/archive"`, "tar.extract", "github.com/dlflow/dlflow/sinks/archive",
			[]func(*pipeline.Registry) error{decompress.Register}},
		{"tar topology", dlflow.Request{Path: filepath.Join(dir, "x"), Topology: dlflow.Topology{File: "untar.yaml", Data: []byte(`stages:
  fetch: {type: http.source}
  unpack: {type: tar.extract, inputs: [fetch]}
`)}}, archive.Register,
			`stage type "tar.extract" needs the archive backend: import _ "github.com/dlflow/dlflow/sinks/archive"`, "tar.extract", "github.com/dlflow/dlflow/sinks/archive", nil},
		{"custom topology", dlflow.Request{Path: filepath.Join(dir, "f"), Topology: custom}, decompress.Register,
			`stage type "decompress" needs the decompress backend: import _ "github.com/dlflow/dlflow/stages/decompress"`, "decompress", "github.com/dlflow/dlflow/stages/decompress", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			req.URL = srv.URL + "/f.tar.gz"
			c := newClient(t, dlflow.WithRegistry(registryWithout(t, tc.base...)))
			for _, err := range []error{c.Check(&req), func() error { _, err := c.Do(t.Context(), &req); return err }()} {
				var mb *dlflow.MissingBackendError
				if !errors.As(err, &mb) || !errors.Is(err, dlflow.ErrMissingBackend) {
					t.Fatalf("err = %v, want a *MissingBackendError", err)
				}
				if err.Error() != tc.want || mb.Stage != tc.stage || mb.Import != tc.imported {
					t.Errorf("err = %q (stage %q, import %q), want %q", err, mb.Stage, mb.Import, tc.want)
				}
			}
			if n := asked.Swap(0); n != 0 {
				t.Errorf("%d requests reached the server", n)
			}
			// The backend registered: the request passes the check (it
			// then fails on the server's 410 with the s3 cases, or
			// before, on credentials; never on the backend).
			c = newClient(t, dlflow.WithRegistry(registryWithout(t, append(tc.base, tc.with)...)))
			if err := c.Check(&req); errors.Is(err, dlflow.ErrMissingBackend) {
				t.Errorf("with the backend: Check: %v", err)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the refused requests left %d entries in %s", len(entries), dir)
	}
}

// Importing a backend registers its stage types in
// pipeline.DefaultRegistry, which a Client uses unless told otherwise;
// registering a name twice fails, as init's MustRegister would panic.
func TestBackendsRegisterWhenImported(t *testing.T) {
	for _, b := range []struct {
		stage    string
		register func(*pipeline.Registry) error
	}{{"s3.sink", s3.Register}, {"decompress", decompress.Register}, {"tar.extract", archive.Register}} {
		if _, ok := pipeline.DefaultRegistry.NewConfig(b.stage); !ok {
			t.Errorf("%s is not in the default registry of a program that imports its backend", b.stage)
		}
		if err := b.register(pipeline.DefaultRegistry); err == nil {
			t.Errorf("%s registered twice", b.stage)
		}
	}
}
