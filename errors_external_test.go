package dlflow_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/testfs"
)

// classifyMain is a program of another module that tells why downloads
// failed with names from package dlflow alone. Its arguments are triples:
// a URL, an output path, and a checksum ("-" for none).
const classifyMain = `package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/dlflow/dlflow"
)

func main() {
	c := dlflow.NewClient()
	defer c.CloseIdleConnections()
	args := os.Args[1:]
	for i := 0; i+2 < len(args); i += 3 {
		req := &dlflow.Request{URL: args[i], Path: args[i+1]}
		if args[i+2] != "-" {
			req.Checksum = args[i+2]
		}
		_, err := c.Do(context.Background(), req)
		var he *dlflow.HTTPError
		var ce *dlflow.ChecksumError
		status, alg := 0, ""
		if errors.As(err, &he) {
			status = he.Status
		}
		if errors.As(err, &ce) {
			alg = ce.Algorithm
		}
		fmt.Printf("status=%d notfound=%v checksum=%q corrupt=%v diskfull=%v\n", status,
			errors.Is(err, dlflow.ErrNotFound), alg, errors.Is(err, dlflow.ErrCorrupt), errors.Is(err, dlflow.ErrDiskFull))
	}
}
`

// A program outside the repository tells a 404, a 410, a 403, a checksum
// mismatch and a full disk apart with errors.As and errors.Is on names
// of package dlflow alone (it imports nothing else of the module). The
// full disk is real: a 2 MiB tmpfs (mounting needs root; without it that
// part is skipped, never faked).
func TestExternalClassifiesErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	prog := buildExternal(t, ctx, classifyMain)
	srv := startOrigin(t, origin.Options{Size: 8 << 20, Seed: 31})
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusGone
		if strings.HasSuffix(r.URL.Path, "/forbidden") {
			code = http.StatusForbidden
		}
		http.Error(w, http.StatusText(code), code)
	}))
	t.Cleanup(status.Close)
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	got := run(
		srv.URL()+"/missing", filepath.Join(dir, "a"), "-",
		status.URL+"/gone", filepath.Join(dir, "b"), "-",
		status.URL+"/forbidden", filepath.Join(dir, "c"), "-",
		srv.URL(), filepath.Join(dir, "d"), "sha256:"+strings.Repeat("0", 64),
	)
	want := `status=404 notfound=true checksum="" corrupt=false diskfull=false
status=410 notfound=true checksum="" corrupt=false diskfull=false
status=403 notfound=false checksum="" corrupt=false diskfull=false
status=0 notfound=false checksum="sha256" corrupt=true diskfull=false
`
	if got != want {
		t.Fatalf("the program printed\n%s\nwant\n%s", got, want)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		assertMissing(t, filepath.Join(dir, name))
	}

	t.Run("disk full", func(t *testing.T) {
		full := testfs.Mount(t, "tmpfs", "size=2m")
		got := run(srv.URL(), filepath.Join(full, "e"), "-")
		if want := "status=0 notfound=false checksum=\"\" corrupt=false diskfull=true\n"; got != want {
			t.Fatalf("the program printed\n%s\nwant\n%s", got, want)
		}
		assertMissing(t, filepath.Join(full, "e"))
	})
}
