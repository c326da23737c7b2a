package dlflow_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// externalMain is a program of another module, as a user writes it: it
// downloads with dlflow.Get and checks what it got. Its arguments are two
// URLs and a directory.
const externalMain = `package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dlflow/dlflow"
)

func main() {
	ctx := context.Background()
	dir := os.Args[3]
	for i, url := range os.Args[1:3] {
		path := filepath.Join(dir, fmt.Sprintf("file%d", i))
		res, err := dlflow.Get(ctx, url, path)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("saved", filepath.Base(res.Path), res.Bytes)
	}
	_, err := dlflow.Get(ctx, os.Args[1], filepath.Join(dir, "file1"))
	fmt.Println("again:", errors.Is(err, dlflow.ErrOutputExists))
}
`

// A program outside the repository that requires the module (with a
// replace directive) downloads a 64 MiB file and a 10,000,019-byte file
// with dlflow.Get; the same call fails on an existing path and leaves it
// untouched. It builds with the module cache only (GOPROXY=off), and
// needs no import but dlflow.
func TestExternalModule(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	prog := buildExternal(t, ctx, externalMain)

	big := startOrigin(t, origin.Options{Size: 64 << 20, Seed: 11})
	odd := startOrigin(t, origin.Options{Size: 10_000_019, Seed: 12})
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, prog, big.URL(), odd.URL(), dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := "saved file0 67108864\nsaved file1 10000019\nagain: true\n"; string(out) != want {
		t.Fatalf("the program printed\n%s\nwant\n%s", out, want)
	}
	if got := fileSHA256(t, filepath.Join(dir, "file0")); got != origin.SHA256Hex(64<<20, 11) {
		t.Errorf("file0: sha256 %s", got)
	}
	// file1 was not replaced by the 64 MiB file of the third call.
	if got := fileSHA256(t, filepath.Join(dir, "file1")); got != origin.SHA256Hex(10_000_019, 12) {
		t.Errorf("file1: sha256 %s", got)
	}
}

// buildExternal builds main, the source of a program of another module
// that requires this one with a replace directive, and returns the
// program's path. It builds with the module cache only (GOPROXY=off):
// the module's go.sum vouches for the dependencies. The test is skipped
// in -short mode or without a go command.
func buildExternal(t *testing.T, ctx context.Context, main string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	prog := t.TempDir()
	goMod := "module example.com/user\n\ngo 1.26\n\nrequire github.com/dlflow/dlflow v0.0.0\n\nreplace github.com/dlflow/dlflow => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"go.mod": goMod, "go.sum": string(sum), "main.go": main} {
		if err := os.WriteFile(filepath.Join(prog, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd := func(args ...string) {
		cmd := exec.CommandContext(ctx, goTool, args...)
		cmd.Dir = prog
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// -e: tidy also resolves the imports of the dependencies' tests
	// (conc's import testify). The program imports no backend, so its
	// pruned module graph selects a testify older than the one this
	// module's graph (minio-go's requirements) put in the module cache,
	// and GOPROXY=off cannot fetch it. The build needs none of it.
	goCmd("mod", "tidy", "-e")
	goCmd("build", "-o", "prog", ".")
	return filepath.Join(prog, "prog")
}
