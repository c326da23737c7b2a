package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/cmd/internal/progress"
)

// registerMetalinkFlags adds the flags of a Metalink of several files.
func registerMetalinkFlags(fs *pflag.FlagSet) {
	fs.String("select-file", "", "with --metalink: download only these files of it, 1-based, as aria2c: 1,3-4 (default: all of them, into --dir)")
}

// isMetalinkBatch reports whether the command line asks for the files of
// a Metalink as a batch: --metalink with --dir or --select-file (and no
// -i, whose lines are single URLs).
func isMetalinkBatch(fs *pflag.FlagSet) bool {
	return fs.Changed("metalink") && !fs.Changed("input-file") && (fs.Changed("dir") || fs.Changed("select-file"))
}

// getMetalink runs `dlflow --metalink FILE --dir DIR [--select-file 1,3-4]`:
// the files of the Metalink (or those selected) are downloaded into DIR
// (created if missing; default the working directory), each under its
// name in the Metalink, --jobs at a time, as a batch. A failed file does
// not stop the others; the exit code is 1 if any failed.
func getMetalink(ctx context.Context, fs *pflag.FlagSet, flags *getFlags, stdout, stderr io.Writer) int {
	bf := flags.batch
	switch {
	case fs.Changed("output"):
		return fail(stderr, usagef("-o names one output; the files of a metalink take their names from it: use --dir"))
	case fs.Changed("url") || fs.NArg() > 0:
		return fail(stderr, usagef("the URLs of the files come from the metalink; give none on the command line"))
	case fs.Changed("extract") || fs.Changed("mirror") || fs.Changed("checksum"):
		return fail(stderr, usagef("--extract, --mirror and --checksum apply to one file; each file of a metalink has its own URLs and hash"))
	case bf.jobs < 1:
		return fail(stderr, usagef("--jobs must be at least 1, got %d", bf.jobs))
	case bf.maxPerHost < 1:
		return fail(stderr, usagef("--max-per-host must be at least 1, got %d", bf.maxPerHost))
	}
	var selected []int
	if spec, _ := fs.GetString("select-file"); fs.Changed("select-file") {
		var err error
		if selected, err = dlflow.ParseFileSelection(spec); err != nil {
			return fail(stderr, usagef("--%w", err))
		}
	}
	if _, ok := stderr.(*os.File); !ok {
		stderr = &lockedWriter{w: stderr}
	}
	if _, ok := stdout.(*os.File); !ok {
		stdout = &lockedWriter{w: stdout}
	}
	log, _, err := flags.log.build(stderr)
	if err != nil {
		return fail(stderr, err)
	}
	defer captureStdLog(log)()
	base, err := newRequest(fs, flags)
	if err != nil {
		return fail(stderr, cliError(err, nil))
	}
	base.Metalink, base.Dir = "", bf.dir
	client := dlflow.NewClient(dlflow.WithLogger(log), dlflow.WithMaxPerHost(bf.maxPerHost))
	defer client.CloseIdleConnections()
	reqs, err := client.MetalinkRequests(ctx, flags.metalink, base, selected)
	if err != nil {
		return fail(stderr, cliError(err, nil))
	}
	ch := make(chan *dlflow.Request, len(reqs))
	b := &batch{base: base, dir: bf.dir, stdout: stdout, stderr: stderr, quiet: flags.log.quiet, json: flags.json, metalink: true,
		bars: map[*dlflow.Request]*progress.Bar{}}
	for _, r := range reqs {
		ch <- r
	}
	close(ch)
	for r := range client.Batch(ctx, bf.jobs, ch) {
		b.report(ctx, r)
	}
	summary := fmt.Sprintf("dlflow: %d downloaded, %d failed", b.ok, b.failed)
	if b.skipped > 0 {
		summary = fmt.Sprintf("dlflow: %d downloaded, %d skipped (they exist), %d failed", b.ok, b.skipped, b.failed)
	}
	if b.stopped > 0 {
		summary += fmt.Sprintf(", %d interrupted", b.stopped)
	}
	if !flags.log.quiet || b.failed > 0 || b.stopped > 0 {
		fmt.Fprintln(stderr, summary)
	}
	var ie *interrupted
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &ie) {
		return fail(stderr, ie)
	}
	if b.failed > 0 {
		return exitFailed
	}
	return exitOK
}

// metalinkFilesError words a Metalink of several files given for one
// download.
func metalinkFilesError(fe *dlflow.MetalinkFilesError) error {
	return usagef("--metalink %s lists %d files: give --dir DIR to download them all, or --select-file to pick some (1,3-4)", fe.Metalink, fe.Files)
}
