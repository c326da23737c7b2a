package cmd

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/testtar"
)

// scriptFileSize is the file every script's origin serves: just over 1 MiB,
// so the body spans several buffers and ends with a short one.
const scriptFileSize, scriptSeed = 1<<20 + 3, 42

// TestScripts runs testdata/script/*.txtar: the CLI as a user drives it from
// a shell, each script in its own work directory against its own origin.
//
// Environment of a script: URL (the origin's file, path /file.bin), SHA (the
// file's sha256), BASEURL (the origin without a path), EXAMPLES (the
// examples directory, absolute), ARCHIVES (a server of archives, see
// archiveServer) and BIGSHA (the sha256 of the tree's big file).
func TestScripts(t *testing.T) {
	examples, err := filepath.Abs(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			srv, err := origin.Start(origin.Options{Size: scriptFileSize, Seed: scriptSeed, Files: 2})
			if err != nil {
				return err
			}
			env.Defer(func() { srv.Close() })
			env.Values[originKey{}] = srv
			env.Setenv("URL", srv.URL())
			env.Setenv("NOSCHEME", strings.TrimPrefix(srv.URL(), "http://"))
			for i := range 2 {
				env.Setenv(fmt.Sprintf("FILE%d", i), srv.FileURL(i))
				env.Setenv(fmt.Sprintf("SHA%d", i), origin.SHA256Hex(scriptFileSize, origin.FileSeed(scriptSeed, i)))
			}
			env.Setenv("BASEURL", srv.BaseURL())
			env.Setenv("SHA", origin.SHA256Hex(scriptFileSize, scriptSeed))
			env.Setenv("EXAMPLES", examples)
			archives := archiveServer(env.T().(testing.TB))
			env.Defer(archives.Close)
			env.Setenv("ARCHIVES", archives.URL)
			env.Setenv("BIGSHA", fmt.Sprintf("%x", sha256Sum(testtar.Tree()[6].Body)))
			// Under -race every successful dlflow process would otherwise
			// sleep a second at exit (the race runtime's default).
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"sha256":   cmdSHA256,
			"exitcode": cmdExitCode,
			"origin":   cmdOrigin,
		},
	})
}

// cmdSHA256 is `sha256 FILE WANT`: FILE's sha256 is the hex WANT.
func cmdSHA256(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sha256 FILE WANT")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	got := fmt.Sprintf("%x", sha256Sum(data))
	switch {
	case neg && got == args[1]:
		ts.Fatalf("%s: sha256 is %s", args[0], got)
	case !neg && got != args[1]:
		ts.Fatalf("%s: sha256 %s, want %s", args[0], got, args[1])
	}
}

// originKey is where a script's origin is kept (testscript.Env.Values).
type originKey struct{}

// cmdOrigin drives and checks the script's origin:
//
//	origin reset           forget the counts so far
//	origin gets N          N GETs (requests for a body) since the reset
//	origin heads N         N HEADs since the reset
//	origin fail STATUS N   the next N GETs answer STATUS
//	origin trickle RATE    every GET from offset 0 sends RATE bytes/s
//	origin clear           no faults
func cmdOrigin(ts *testscript.TestScript, neg bool, args []string) {
	srv := ts.Value(originKey{}).(*origin.Server)
	if neg || len(args) == 0 {
		ts.Fatalf("usage: origin reset|gets N|heads N|fail STATUS N|trickle RATE|clear")
	}
	num := func(i int) int64 {
		if len(args) <= i {
			ts.Fatalf("origin %s: missing a number", args[0])
		}
		n, err := strconv.ParseInt(args[i], 10, 64)
		ts.Check(err)
		return n
	}
	switch args[0] {
	case "reset":
		srv.ResetStats()
	case "gets":
		if got, want := srv.Stats().GETs, num(1); got != want {
			ts.Fatalf("origin: %d GETs, want %d", got, want)
		}
	case "heads":
		if got, want := srv.Stats().HEADs, num(1); got != want {
			ts.Fatalf("origin: %d HEADs, want %d", got, want)
		}
	case "fail":
		srv.SetFaults(origin.Faults{FailStatus: int(num(1)), FailCount: int(num(2))})
	case "trickle":
		srv.SetFaults(origin.Faults{Trickle: num(1)})
	case "clear":
		srv.SetFaults(origin.Faults{})
	default:
		ts.Fatalf("origin: unknown %q", args[0])
	}
}

// cmdExitCode is `exitcode N PROG ARGS...`: like exec, but asserts the exact
// exit status (`! exec` only tells zero from non-zero). stdout and stderr
// are kept for the stdout and stderr commands that follow.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exitcode")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// TestExitCodes pins the documented exit codes, which scripts and callers
// branch on: 0 complete, 1 download failed, 2 usage or config error.
func TestExitCodes(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 64<<10 + 1, Seed: 8})
	dir := t.TempDir()
	badConfig := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badConfig, []byte("stages:\n  fetch:\n    type: http.source\n    config:\n      bufer: 1MiB\n  write:\n    type: file.sink\n    inputs: [fetch]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		// stderr must contain this; "" means stderr must be empty.
		stderr string
	}{
		{"success", []string{srv.URL(), "-o", filepath.Join(dir, "ok.bin")}, exitOK, "dlflow: saved "},
		{"success quiet", []string{srv.URL(), "-o", filepath.Join(dir, "quiet.bin"), "-q"}, exitOK, ""},
		{"no URL", []string{"-o", filepath.Join(dir, "x")}, exitUsage, "no URL"},
		{"unknown flag", []string{"--conections", "3", srv.URL()}, exitUsage, "conections"},
		{"config error", []string{"-c", badConfig, "--url", srv.URL(), "-o", filepath.Join(dir, "y")}, exitUsage, `unknown key "bufer"`},
		{"validate config error", []string{"validate", "-c", badConfig}, exitUsage, `unknown key "bufer"`},
		{"missing config file", []string{"-c", filepath.Join(dir, "nope.yaml"), "--url", srv.URL()}, exitUsage, "nope.yaml"},
		{"download failed", []string{srv.BaseURL() + "/nope", "-o", filepath.Join(dir, "z")}, exitFailed, "404"},
		{"connection refused", []string{"http://127.0.0.1:1/f", "-o", filepath.Join(dir, "w")}, exitFailed, "127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runCLI(t, c.args...)
			if res.code != c.code {
				t.Fatalf("exit %d, want %d; stderr: %s", res.code, c.code, res.stderr)
			}
			if c.stderr == "" && res.stderr != "" {
				t.Errorf("stderr not empty: %s", res.stderr)
			}
			if !strings.Contains(res.stderr, c.stderr) {
				t.Errorf("stderr %q does not contain %q", res.stderr, c.stderr)
			}
		})
	}
	if got, want := fileSHA256(t, filepath.Join(dir, "ok.bin")), origin.SHA256Hex(64<<10+1, 8); got != want {
		t.Errorf("sha256 %s, want %s", got, want)
	}
	for _, name := range []string{"x", "y", "z", "w"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed run", name)
		}
	}
}

// TestVersion: --version prints the version on stdout and nothing else.
func TestVersion(t *testing.T) {
	res := runCLI(t, "--version")
	if res.code != 0 || res.stderr != "" || !bytes.Equal([]byte(res.stdout), []byte("dlflow "+version+"\n")) {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

// archiveServer serves, on 127.0.0.1, the test tree (testtar.Tree) as
// /tree.tar.zst and, under a name that says nothing of its format,
// /tree.bin (gzip); and /evil.tar.gz, whose second member is
// ../../pwned.txt.
func archiveServer(tb testing.TB) *httptest.Server {
	tree := testtar.Tar(tb, testtar.Tree())
	evil := testtar.Hostiles()[0]
	files := map[string][]byte{
		"/tree.tar.zst": testtar.Zstd(tb, tree),
		"/tree.bin":     testtar.Gzip(tb, tree),
		"/evil.tar.gz":  testtar.Gzip(tb, testtar.Tar(tb, evil.Entries)),
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(data))
	}))
}
