// Package cmd is the dlflow command line as a library: Main parses the
// arguments, calls the dlflow package and prints. cmd/run's main calls it,
// and so does a custom binary that adds stage types of its own with a
// blank import:
//
//	package main
//
//	import (
//		dlcmd "github.com/dlflow/dlflow/cmd"
//		_ "example.com/mystages" // registers its stage types in init
//	)
//
//	func main() { dlcmd.Main() }
//
// Exit codes: 0 the output is complete; 1 the download failed; 2 usage or
// config error; 23 stdout's reader went away (-o -); 130 interrupted by
// SIGINT, 143 by SIGTERM.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// Exit codes, documented in the README.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130 // 128 + SIGINT; SIGTERM gives 143
)

const version = "0.1.0"

// Main runs the command line of the process and exits with its exit code.
func Main() {
	ctx, stop := withSignals(context.Background())
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole CLI minus process concerns, so tests can call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "get"
	if len(args) > 0 {
		switch args[0] {
		case "validate", "bench", "get", "stages", "daemon":
			cmd, args = args[0], args[1:]
		case "help":
			args = []string{"--help"}
		}
	}
	switch cmd {
	case "validate":
		return validate(args, stdout, stderr)
	case "bench":
		return bench(ctx, args, stdout, stderr)
	case "stages":
		return stagesCmd(args, stdout, stderr)
	case "daemon":
		return daemonCmd(ctx, args, stdout, stderr)
	default:
		return get(ctx, args, stdin, stdout, stderr)
	}
}

// interrupted is the cancellation cause when a signal stops a run.
type interrupted struct {
	sig     os.Signal
	partial string // where the partial data is kept, once known
}

func (e *interrupted) Error() string {
	if e.partial != "" {
		return "interrupted by " + signalName(e.sig) + "; partial data kept in " + e.partial
	}
	return "interrupted by " + signalName(e.sig)
}

// Unwrap makes an interruption a cancellation for the library and its
// stages: what they keep for a resume after Download.Cancel (an s3.sink's
// pending upload) they keep after a signal too.
func (e *interrupted) Unwrap() error { return context.Canceled }

func signalName(sig os.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT"
}

func (e *interrupted) exitCode() int {
	if e.sig == syscall.SIGTERM {
		return 128 + int(syscall.SIGTERM)
	}
	return exitInterrupted
}

// withSignals cancels the context with an *interrupted cause on the first
// SIGINT or SIGTERM. A second signal gets the default behaviour (the process
// dies), for a user who really wants out.
func withSignals(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			signal.Stop(sigs)
			cancel(&interrupted{sig: sig})
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		signal.Stop(sigs)
		cancel(nil)
	}
}

// usageError is a problem with the command line or the config: exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// fail prints err and returns the exit code it calls for. Config errors may
// span lines (one per problem); everything else is one line.
func fail(stderr io.Writer, err error) int {
	var ue *usageError
	var ie *interrupted
	var we *writeError
	switch {
	case errors.As(err, &we):
		fmt.Fprintf(stderr, "dlflow: %s\n", oneLine(err.Error()))
		return exitWrite
	case errors.As(err, &ie):
		fmt.Fprintf(stderr, "dlflow: %s\n", oneLine(err.Error()))
		return ie.exitCode()
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "dlflow: %s\n", strings.TrimSpace(err.Error()))
		return exitUsage
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	default:
		fmt.Fprintf(stderr, "dlflow: %s\n", oneLine(err.Error()))
		return exitFailed
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// printUsage prints a command's usage to w: head, the flags, tail. --help
// prints it to stdout; a command prints it to stderr after a mistake.
func printUsage(fs *pflag.FlagSet, w io.Writer, head, tail string) {
	out := fs.Output()
	fs.SetOutput(w)
	defer fs.SetOutput(out)
	fmt.Fprint(w, head)
	fs.PrintDefaults()
	fmt.Fprint(w, tail)
}
