package cmd

import (
	"errors"
	"io"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow"
)

// exitWrite is the exit code of a download whose output could not be
// written, such as stdout after its reader went away (`dlflow URL -o - |
// head`): 23, curl's "write error", so that scripts that know curl's
// codes read it the same way.
const exitWrite = 23

// toStdout reports whether the command line asks for the bytes on stdout:
// -o - (or --output -).
func toStdout(fs *pflag.FlagSet) bool {
	out, _ := fs.GetString("output")
	return out == "-"
}

// checkStdout refuses what does not go with -o -, before any I/O: the
// flags that concern a file, and --json, whose summary would land in the
// middle of the bytes on stdout.
func checkStdout(fs *pflag.FlagSet, flags *getFlags) error {
	switch {
	case isBatch(fs):
		return usagef("-o - writes one download to stdout; it does not go with -i LIST (nor --jobs, --dir, --max-per-host, --shard)")
	case flags.json:
		return usagef("--json prints on stdout, which -o - fills with the download; leave one out (the summary line is on stderr)")
	case flags.skipExisting:
		return usagef("--skip-existing does not go with -o -: stdout is no file that could exist")
	}
	if overwrite, _ := fs.GetBool("overwrite"); overwrite {
		return usagef("--overwrite does not go with -o -: stdout is no file to replace")
	}
	return nil
}

// writeError is a download stopped because the reader of stdout went
// away: exit 23, one line. (Other write errors, such as a full disk under
// `> FILE`, are failed downloads: exit 1, with the error's own words.)
type writeError struct{ err error }

func (e *writeError) Error() string {
	return "stdout closed by its reader (broken pipe); download stopped"
}

func (e *writeError) Unwrap() error { return e.err }

// isBrokenPipe reports whether err says the reader of a pipe went away.
func isBrokenPipe(err error) bool { return errors.Is(err, syscall.EPIPE) || brokenPipeErrno(err) }

// stdoutRequest makes req write to stdout: the bytes go to w, and the
// output override that -o - made is dropped (it names no file).
func stdoutRequest(req *dlflow.Request, w io.Writer) {
	req.Writer = w
	kept := req.Config[:0]
	for _, o := range req.Config {
		if o.Key != "output" {
			kept = append(kept, o)
		}
	}
	req.Config = kept
}
