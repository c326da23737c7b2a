package dlflow_test

// Fault tests (see faults_range_test.go): bad input, the local disk and
// untrusted names.

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/internal/testfs"
	"github.com/dlflow/dlflow/sinks"
)

// TestFaultBadInput: a malformed URL, header or config value is refused
// with an error naming it, before any request; Client.Check, which does no
// I/O, returns the same error.
func TestFaultBadInput(t *testing.T) {
	cases := []struct {
		name   string
		url    string
		sets   []string
		header http.Header
		field  string // of the *dlflow.RequestError; "" for a *config.Error
		needle string
	}{
		{"scheme", "ftp://127.0.0.1/file.bin", nil, nil, "URL", "the scheme must be http or https"},
		{"no host", "http:///file.bin", nil, nil, "URL", "no host"},
		{"header injection", "", []string{"http.headers.X-Test=a\r\nInjected: 1"}, nil, "Config", "X-Test"},
		{"header injection, Request.Header", "", nil, http.Header{"X-Test": {"a\r\nInjected: 1"}}, "Header", "X-Test"},
		{"header name", "", []string{"http.headers.Bad Name=x"}, nil, "Config", "Bad Name"},
		{"header name, Request.Header", "", nil, http.Header{"Bad Name": {"x"}}, "Header", "Bad Name"},
		{"negative timeout", "", []string{"http.header_timeout=-1s"}, nil, "Config", "timeout"},
		{"attempts", "", []string{"stages.fetch.config.attempts=0"}, nil, "", "attempts"},
		{"buffer", "", []string{"stages.fetch.config.buffer=lots"}, nil, "", "buffer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			url := tc.url
			if url == "" {
				url = srv.URL()
			}
			out := fltOut(t)
			req := fltRequest("ranged", url, out, tc.sets...)
			req.Header = tc.header
			res, err := do(t, req)
			fltFailed(t, res, err, out, tc.needle)
			var re *dlflow.RequestError
			var ce *config.Error
			switch {
			case tc.field != "" && (!errors.As(err, &re) || re.Field != tc.field):
				t.Errorf("err = %#v, want a *dlflow.RequestError of field %s", err, tc.field)
			case tc.field == "" && !errors.As(err, &ce):
				t.Errorf("err = %#v, want a *config.Error", err)
			}
			if n := srv.Stats().Requests; n != 0 {
				t.Fatalf("%d requests despite the bad input", n)
			}
			if tc.field == "URL" {
				return // TestCheckBadURL
			}
			if cerr := newClient(t).Check(req); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Check: %v, want the error of Do: %v", cerr, err)
			}
		})
	}
}

// TestDiskFull: 8 MiB into a 2 MiB file system ends with a clean error
// naming PATH.tmp (ENOSPC), from the preallocation or, without it, from a
// write; the stream keeps what fitted.
func TestDiskFull(t *testing.T) {
	const size = 8 << 20
	for _, topo := range []string{"stream", "ranged", "ranged-ordered"} {
		for _, prealloc := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/preallocate=%v", topo, prealloc), func(t *testing.T) {
				dir := testfs.Mount(t, "tmpfs", "size=2m")
				srv := startOrigin(t, origin.Options{Size: size, Seed: fltSeed})
				out := filepath.Join(dir, "out.bin")
				res, err := do(t, fltRequest(topo, srv.URL(), out, fmt.Sprintf("stages.write.config.preallocate=%v", prealloc)))
				fltFailed(t, res, err, out, "no space left on device", out+".tmp")
				if !errors.Is(err, syscall.ENOSPC) {
					t.Errorf("err = %v, want it to wrap ENOSPC", err)
				}
				if topo == "stream" && !prealloc {
					fltPartialKept(t, res, out, size, fltSeed, 0)
				}
			})
		}
	}
}

// TestFaultExistingOutput: an existing output is never replaced unless the
// request says Overwrite, and nothing is downloaded; SkipExisting leaves it
// and succeeds.
func TestFaultExistingOutput(t *testing.T) {
	t.Parallel()
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
	out := fltOut(t)
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := do(t, fltRequest("ranged", srv.URL(), out))
	var oe *sinks.OutputExistsError
	if !errors.Is(err, dlflow.ErrOutputExists) || !errors.As(err, &oe) || oe.Path != out {
		t.Fatalf("err = %v, want ErrOutputExists naming %s", err, out)
	}
	if data, _ := os.ReadFile(out); string(data) != "precious" {
		t.Fatalf("existing output changed to %d bytes", len(data))
	}
	assertMissing(t, out+".tmp")
	if res.Path != out || res.Partial != "" || res.Skipped {
		t.Errorf("result %+v", res)
	}

	req := fltRequest("ranged", srv.URL(), out)
	req.SkipExisting = true
	res, err = do(t, req)
	if err != nil || !res.Skipped || res.Bytes != int64(len("precious")) || res.Path != out {
		t.Fatalf("SkipExisting: err %v, result %+v", err, res)
	}
	if data, _ := os.ReadFile(out); string(data) != "precious" {
		t.Fatalf("SkipExisting changed the output to %d bytes", len(data))
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Fatalf("%d requests before refusing or skipping", n)
	}

	req = fltRequest("ranged", srv.URL(), out)
	req.Overwrite = true
	res, err = do(t, req)
	fltOK(t, res, err, out, fltSize, fltSeed)
}

// TestOutputExistsErrorWording: library errors carry no CLI wording.
func TestOutputExistsErrorWording(t *testing.T) {
	err := error(&sinks.OutputExistsError{Path: "out.bin"})
	if strings.Contains(err.Error(), "--") {
		t.Fatalf("%q names a command line flag", err)
	}
}

// TestFaultSymlinkTmp: a symlink planted at PATH.tmp is never followed: the
// file it points to stays as it was, and the result does not offer the
// link as partial data.
func TestFaultSymlinkTmp(t *testing.T) {
	for _, topo := range []string{"stream", "ranged"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
			out := fltOut(t)
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, out+".tmp"); err != nil {
				t.Fatal(err)
			}
			res, err := do(t, fltRequest(topo, srv.URL(), out))
			fltFailed(t, res, err, out, "symlink", out+".tmp")
			if data, _ := os.ReadFile(victim); string(data) != "victim" {
				t.Fatalf("the symlink target was written: %d bytes", len(data))
			}
			if st, err := os.Lstat(out + ".tmp"); err != nil || st.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the symlink was replaced: %v", err)
			}
			if res.Partial != "" {
				t.Errorf("result partial %q: the planted link is not partial data", res.Partial)
			}
		})
	}
}

// TestFaultReadOnlyDir: an output directory that cannot be written fails
// before any network I/O. As root permission bits do not stop writes, so
// the directory is a read-only tmpfs.
func TestFaultReadOnlyDir(t *testing.T) {
	dir := testfs.Mount(t, "tmpfs", "ro,size=1m")
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
	out := filepath.Join(dir, "out.bin")
	res, err := do(t, fltRequest("ranged", srv.URL(), out))
	fltFailed(t, res, err, out, "read-only file system")
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("err = %v, want it to wrap EROFS", err)
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Fatalf("%d requests to the server before failing", n)
	}
}

// contentDispositions are names a server suggests that try to leave the
// directory.
var contentDispositions = map[string]string{
	"filename":  `attachment; filename="../etc/passwd"`,
	"filename*": `attachment; filename="x.bin"; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd`,
	"backslash": `attachment; filename="..\\..\\passwd"`,
}

// dispositionDownload downloads with no Path from a server that suggests
// cd as the name, with dir as Request.Dir, and checks that the file is
// root/a/b/passwd and nothing else is under root. With dir "" it runs in
// the working directory, which must be root/a/b.
func dispositionDownload(t *testing.T, cd, root, dir string) {
	t.Helper()
	srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
	srv.SetFaults(origin.Faults{ContentDisposition: cd})
	want := filepath.Join(dir, "passwd")
	res, err := do(t, &dlflow.Request{URL: srv.URL(), Dir: dir})
	fltOK(t, res, err, want, fltSize, fltSeed)
	if got, want := fileSHA256(t, filepath.Join(root, "a", "b", "passwd")), origin.SHA256Hex(fltSize, fltSeed); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	var files []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Fatalf("files written: %q", files)
	}
}

// TestFaultContentDisposition: without a Path the server's
// Content-Disposition names the file, reduced to a base name in the working
// directory: a path in it never writes outside. (It changes the working
// directory, so it cannot run in parallel.)
func TestFaultContentDisposition(t *testing.T) {
	for name, cd := range contentDispositions {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			work := filepath.Join(root, "a", "b")
			if err := os.MkdirAll(work, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Chdir(work)
			dispositionDownload(t, cd, root, "")
		})
	}
}

// TestFaultContentDispositionDir: the same with Request.Dir: the name
// stays inside Dir.
func TestFaultContentDispositionDir(t *testing.T) {
	for name, cd := range contentDispositions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			work := filepath.Join(root, "a", "b")
			if err := os.MkdirAll(work, 0o755); err != nil {
				t.Fatal(err)
			}
			dispositionDownload(t, cd, root, work)
		})
	}
}

// TestFaultSecretsRedacted: a password in the URL and an Authorization
// header (from the configuration or Request.Header) never appear in a log
// line, in the error or in the result, even at debug level; from the probe
// or from a running stage.
func TestFaultSecretsRedacted(t *testing.T) {
	// "stage": the probe's answer is cut, and the requests for the rest
	// fail, so that a running graph reports the URL.
	faults := map[string]origin.Faults{
		"probe": {Status: 404},
		"stage": {FailStatus: 404, FailCount: 1000, FailAfter: 1, DropAfter: 100 << 10, DropRequests: 1},
	}
	for _, topo := range []string{"stream", "ranged"} {
		for where, f := range faults {
			for _, via := range []string{"config", "header"} {
				t.Run(topo+"/"+where+"/"+via, func(t *testing.T) {
					t.Parallel()
					srv := startOrigin(t, origin.Options{Size: fltSize, Seed: fltSeed})
					srv.SetFaults(f)
					url := strings.Replace(srv.URL(), "http://", "http://user:secret1@", 1)
					out := fltOut(t)
					req := fltRequest(topo, url, out)
					if via == "config" {
						req.Sets = append(req.Sets, "http.headers.Authorization=Bearer secret2")
					} else {
						req.Header = http.Header{"Authorization": {"Bearer secret2"}}
					}
					logOpt, log := withLog(zerolog.DebugLevel)
					res, err := do(t, req, logOpt)
					fltFailed(t, res, err, out, "http 404")
					if where == "stage" && !strings.Contains(log.String(), "127.0.0.1") {
						t.Fatalf("no log line names the URL; the test would not see a leak:\n%s", log)
					}
					for what, s := range map[string]string{"log": log.String(), "error": err.Error(), "result": fmt.Sprintf("%+v", *res)} {
						if strings.Contains(s, "secret") {
							t.Errorf("a secret leaked into the %s:\n%s", what, s)
						}
					}
				})
			}
		}
	}
}
