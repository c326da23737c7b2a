//go:build unix

package cmd

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// stdoutCLI is the CLI as a real process, in an empty directory of its
// own, with the given stdout.
func stdoutCLI(t *testing.T, stdout *os.File, args ...string) (cmd *exec.Cmd, dir string, stderr *strings.Builder) {
	t.Helper()
	dir = t.TempDir()
	cmd = exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), cliEnv+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.Dir, cmd.Stdout = dir, stdout
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	return cmd, dir, stderr
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d entries left in %s, first %s", len(ents), dir, ents[0].Name())
	}
}

// `dlflow URL -o - > out`: the file's bytes over 8 connections, exit 0,
// the summary on stderr, nothing in the working directory.
func TestStdoutRedirectedToFile(t *testing.T) {
	const size, seed = 64<<20 + 5, 9
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	outPath := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd, dir, stderr := stdoutCLI(t, out, srv.URL(), "-o", "-", "--connections", "8")
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr)
	}
	if got := fileSHA256(t, outPath); got != origin.SHA256Hex(size, seed) {
		t.Fatalf("stdout sha256 %s, want %s", got, origin.SHA256Hex(size, seed))
	}
	if !strings.HasPrefix(stderr.String(), "dlflow: streamed to stdout: 64.0 MiB in ") || strings.Count(stderr.String(), "\n") != 1 ||
		!strings.Contains(stderr.String(), ", 8 connections, 0 retries") {
		t.Errorf("stderr %q", stderr)
	}
	assertEmptyDir(t, dir)
}

// `dlflow URL -o - | head -c 1000` on a 1 GiB file: the reader gets the
// first 1000 bytes and goes away; the CLI exits 23 within seconds, with
// one stderr line and no file, having fetched a bounded part of the file.
func TestStdoutReaderGoesAway(t *testing.T) {
	const size, seed = 1 << 30, 9
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd, dir, stderr := stdoutCLI(t, w, srv.URL(), "-o", "-", "--connections", "8")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // the child has it
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	head := make([]byte, 1000)
	_, rerr := io.ReadFull(r, head)
	r.Close()
	if rerr != nil {
		t.Fatalf("read the first 1000 bytes: %v", rerr)
	}
	want := make([]byte, 1000)
	origin.Fill(want, 0, seed)
	if string(head) != string(want) {
		t.Error("the first 1000 bytes are not the file's")
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the CLI still ran 30s after its reader went away; stderr:\n%s", stderr)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitWrite {
		t.Fatalf("exit: %v, want code %d; stderr:\n%s", err, exitWrite, stderr)
	}
	if got := stderr.String(); got != "dlflow: stdout closed by its reader (broken pipe); download stopped\n" {
		t.Errorf("stderr %q", got)
	}
	if served := srv.Stats().BytesServed; served > 256<<20 {
		t.Errorf("the server sent %d bytes for a reader gone after 1000", served)
	}
	assertEmptyDir(t, dir)
}

// `dlflow URL -o - >&-`: stdout closed at start. The runtime puts
// /dev/null on fd 1, which took every byte with exit 0; the CLI exits 23
// with one line, before any request. `-o - > /dev/null`, asked for
// plainly, still downloads (exit 0).
func TestStdoutClosedAtStart(t *testing.T) {
	const size, seed = 1<<20 + 3, 5
	srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
	for _, tc := range []struct {
		redirect string
		code     int
	}{{">&-", exitWrite}, {">/dev/null", 0}} {
		srv.ResetStats()
		dir := t.TempDir()
		// sh closes or redirects fd 1, then execs the test binary as the CLI.
		cmd := exec.Command("/bin/sh", "-c", `exec "$0" "$@" `+tc.redirect, os.Args[0], srv.URL(), "-o", "-")
		cmd.Env = append(os.Environ(), cliEnv+"=1", "GORACE=atexit_sleep_ms=0")
		cmd.Dir = dir
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Fatalf("%s: exit %d, want %d; stderr:\n%s", tc.redirect, code, tc.code, stderr.String())
		}
		served := srv.Stats().BytesServed
		if tc.code == 0 {
			if served < size {
				t.Errorf("%s: served %d bytes of %d", tc.redirect, served, size)
			}
		} else {
			if got := stderr.String(); got != "dlflow: "+errStdoutClosed.Error()+"\n" {
				t.Errorf("%s: stderr %q", tc.redirect, got)
			}
			if n := srv.Stats().Requests; n != 0 {
				t.Errorf("%s: %d requests, want none", tc.redirect, n)
			}
		}
		assertEmptyDir(t, dir)
	}
}
