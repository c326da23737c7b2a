package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
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
// -o - (or --output -), or -o naming the process's own stdout
// (/dev/stdout, /dev/fd/1, /proc/self/fd/1), which is a link that a file
// download would have to replace.
func toStdout(fs *pflag.FlagSet) bool {
	out, _ := fs.GetString("output")
	switch out {
	case "-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1":
		return true
	}
	return false
}

// openStream opens the output when -o names a device or a named pipe
// (/dev/null, a FIFO, /dev/stderr): such a path gets the bytes as a
// stream, as curl writes them, since a file download renames its
// PATH.tmp onto PATH and that would replace it. It returns nil for any
// other output. Opening a FIFO blocks until it has a reader, as for curl.
func openStream(fs *pflag.FlagSet) (*os.File, error) {
	out, _ := fs.GetString("output")
	if out == "" || out == "-" {
		return nil, nil
	}
	st, err := os.Stat(out)
	if err != nil || st.IsDir() || st.Mode().IsRegular() {
		return nil, nil // the library says what is wrong with it, if anything
	}
	f, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	return f, nil
}

// checkStdout refuses what does not go with -o -, before any I/O: the
// flags that concern a file, --json, whose summary would land in the
// middle of the bytes on stdout, and a stdout that was closed.
func checkStdout(fs *pflag.FlagSet, flags *getFlags, stdout io.Writer) error {
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
	if f, ok := stdout.(*os.File); ok && stdoutClosed(f) {
		return &writeError{errStdoutClosed}
	}
	return nil
}

// writeError is a download stopped because the reader of stdout went
// away: exit 23, one line. (Other write errors, such as a full disk under
// `> FILE`, are failed downloads: exit 1, with the error's own words.)
type writeError struct{ err error }

func (e *writeError) Error() string {
	if errors.Is(e.err, errStdoutClosed) {
		return e.err.Error()
	}
	return "stdout closed by its reader (broken pipe); download stopped"
}

// errStdoutClosed is the error of -o - when the process started with fd 1
// closed (see stdoutClosed): exit 23, before any request, as curl's
// "write error" does, rather than exit 0 with every byte thrown away.
var errStdoutClosed = errors.New("stdout is closed; nothing would receive the download (to throw the bytes away, use -o /dev/null)")

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
