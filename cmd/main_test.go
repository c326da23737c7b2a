package cmd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/origin"
)

// TestMain lets the test binary act as the CLI: for testscript's "dlflow"
// command, and as a child process (bench, signal tests) when cliEnv is set.
// After the tests it fails the run if any goroutine leaked.
func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		Main()
		return
	}
	os.Exit(testscript.RunMain(leakCheck{m}, map[string]func() int{
		"dlflow": func() int {
			ctx, stop := withSignals(context.Background())
			defer stop()
			return run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		},
	}))
}

type leakCheck struct{ m *testing.M }

func (l leakCheck) Run() int {
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			return 1
		}
	}
	return code
}

// cliResult is what one in-process run of the CLI printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the CLI in this process, as a user would from a shell, with a
// bound on its duration.
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, bytes.NewReader(nil), &stdout, &stderr)
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// startOrigin starts the test origin on 127.0.0.1 for the test's duration.
func startOrigin(t *testing.T, opts origin.Options) *origin.Server {
	t.Helper()
	srv, err := origin.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// fileSHA256 is the hex sha256 of a file's contents.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256Sum(data))
}
