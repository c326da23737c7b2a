package cmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/cmd/internal/progress"
	"github.com/dlflow/dlflow/httpx"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/config"
)

// batchFlags are the flags of a batch download (-i LIST).
type batchFlags struct {
	input      string
	jobs       int
	maxPerHost int
	dir        string
	shard      string
}

// Defaults of the batch flags.
const (
	defaultJobs       = 4
	defaultMaxPerHost = 8
)

func (b *batchFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&b.input, "input-file", "i", "", "download every URL listed in FILE (- reads stdin): one per line, optionally followed by an output name; blank lines and # comments are skipped")
	fs.IntVarP(&b.jobs, "jobs", "j", defaultJobs, "with -i or several URLs: how many files are downloaded at once (a file whose bytes are in no longer counts while it is made durable)")
	fs.IntVar(&b.maxPerHost, "max-per-host", defaultMaxPerHost, "with -i or several URLs: most connections open to one host at once, over all downloads (a download wanting more gets fewer)")
	fs.StringVarP(&b.dir, "dir", "d", "", "directory of the outputs (created if missing); -o names a file inside it")
	fs.StringVar(&b.shard, "shard", "", "with -i: download only shard K of N of the list (K/N, 0 <= K < N: entries K, K+N, K+2N...), so that N machines share one list; N alone takes K from $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)")
}

// isBatch reports whether the command line asks for a batch: -i LIST or
// several URLs (or gives a flag that only makes sense with one: getBatch
// says so).
func isBatch(fs *pflag.FlagSet) bool {
	if fs.NArg() > 1 {
		return true
	}
	for _, name := range []string{"input-file", "jobs", "max-per-host", "shard"} {
		if fs.Changed(name) {
			return true
		}
	}
	return false
}

// getBatch runs `dlflow -i LIST`: every URL of the list is downloaded with
// the topology flags of the command line, --jobs at a time, with at most
// --max-per-host connections to any one host. A failed file does not stop
// the others; the exit code is 1 if any failed.
func getBatch(ctx context.Context, args []string, fs *pflag.FlagSet, flags *getFlags, stdin io.Reader, stdout, stderr io.Writer) int {
	bf := flags.batch
	fromArgs := !fs.Changed("input-file") // the URLs are the arguments
	if err := batchUsage(fs, bf, fromArgs); err != nil {
		return fail(stderr, err)
	}
	var shard dlflow.Shard
	if fs.Changed("shard") {
		var err error
		if shard, err = dlflow.ParseShard(bf.shard); err != nil {
			return fail(stderr, usagef("--%w", err))
		}
	}
	// On a terminal every running download gets a line of a shared
	// progress display; the lines of the log and of finished downloads
	// print above it.
	showBars := isTerminal(stderr) && !flags.log.quiet && !flags.noProgress
	// Downloads report from several goroutines; an *os.File takes
	// concurrent writes, any other writer (a buffer) gets a lock.
	if _, ok := stderr.(*os.File); !ok {
		stderr = &lockedWriter{w: stderr}
	}
	if _, ok := stdout.(*os.File); !ok {
		stdout = &lockedWriter{w: stdout}
	}
	log, sink, err := flags.log.build(stderr)
	if err != nil {
		return fail(stderr, err)
	}
	defer captureStdLog(log)()
	// The topology is the same for every line: a problem with the flags or
	// the config file is reported once, before any download.
	base, err := newRequest(fs, flags)
	if err == nil {
		err = dlflow.NewClient().Check(base)
	}
	if err = cliError(err, nil); err != nil {
		return fail(stderr, err)
	}
	list, file, err := batchList(fs, bf.input, fromArgs, stdin)
	if err != nil {
		return fail(stderr, err)
	}
	if file != nil {
		defer file.Close()
	}
	if err := makeDir(base.Dir); err != nil {
		return fail(stderr, err)
	}

	lines := stderr
	var display *progress.Display
	if showBars {
		display = progress.NewDisplay(stderr)
		lines = display.Lines()
		defer sink.Redirect(lines, true)()
	}
	client := dlflow.NewClient(dlflow.WithLogger(log), dlflow.WithMaxPerHost(bf.maxPerHost))
	defer client.CloseIdleConnections()
	b := &batch{
		base:    base,
		dir:     base.Dir,
		args:    fromArgs,
		silent:  flags.compat.silent && !flags.compat.showError,
		stdout:  stdout,
		stderr:  lines,
		display: display,
		quiet:   flags.log.quiet,
		json:    flags.json,
		bars:    map[*dlflow.Request]*progress.Bar{},
	}
	readErr := b.run(ctx, client, bf.jobs, list, shard, file)
	if display != nil {
		display.Close() // every download ended: the summary goes below the last line
	}

	if readErr != nil {
		fmt.Fprintf(stderr, "dlflow: read %s: %s\n", listName(bf.input), oneLine(readErr.Error()))
	}
	if !b.silent && (!flags.log.quiet || b.failed > 0 || b.stopped > 0 || readErr != nil) {
		fmt.Fprintln(stderr, b.summary())
	}

	var ie *interrupted
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &ie) {
		return fail(stderr, ie)
	}
	if b.failed > 0 || readErr != nil {
		return exitFailed
	}
	return exitOK
}

// batchUsage checks the flags of a batch (fromArgs: the URLs are the
// arguments, not a list) and returns the usage error of the first
// problem.
func batchUsage(fs *pflag.FlagSet, bf batchFlags, fromArgs bool) error {
	many := "-i"
	if fromArgs {
		many = "several URLs"
	}
	out, _ := fs.GetString("output")
	_, outDir := outputDir(out)
	switch {
	case fromArgs && fs.NArg() < 2:
		return usagef("--jobs, --max-per-host and --shard go with -i LIST (a file of URLs, or - for stdin) or several URLs")
	case fs.Changed("output") && fromArgs && !outDir:
		return usagef("-o names one output; with several URLs, give a directory: -d DIR (or -o DIR/)")
	case fs.Changed("output") && !outDir:
		return usagef("-o names one output; with -i, write a name after a URL in the list, or use --dir")
	case fromArgs && fs.Changed("url"):
		return usagef("give the URLs as arguments, or one with --url, not both")
	case !fromArgs && (fs.Changed("url") || fs.NArg() > 0):
		return usagef("with -i the URLs come from the list; give none on the command line")
	case fs.Changed("extract"):
		return usagef("--extract unpacks one archive; it does not go with %s", many)
	case fs.Changed("mirror") || fs.Changed("metalink"):
		return usagef("--mirror and --metalink name the sources of one file; they do not go with %s", many)
	case !fromArgs && bf.input == "":
		return usagef("-i needs a file name, or - for stdin")
	case bf.jobs < 1:
		return usagef("--jobs must be at least 1, got %d", bf.jobs)
	case bf.maxPerHost < 1:
		return usagef("--max-per-host must be at least 1, got %d", bf.maxPerHost)
	}
	return nil
}

// batchList is the list of URLs: the arguments, one per line, or the file
// -i names (also returned, for the caller to close), or stdin for -i -.
func batchList(fs *pflag.FlagSet, input string, fromArgs bool, stdin io.Reader) (list io.Reader, file *os.File, err error) {
	list = stdin
	if fromArgs {
		urls := make([]string, fs.NArg())
		for i, a := range fs.Args() {
			if a == "" || strings.ContainsAny(a, " \t\r\n") {
				return nil, nil, usagef("URL %d %q: a URL has no spaces (write %%20) and is not empty", i+1, a)
			}
			urls[i] = guessURL(a)
		}
		list = strings.NewReader(strings.Join(urls, "\n"))
	} else if input != "-" {
		if file, err = os.Open(input); err != nil {
			return nil, nil, &usageError{fmt.Errorf("-i: %w", err)}
		}
		return file, file, nil
	}
	if list == nil {
		list = strings.NewReader("")
	}
	return list, nil, nil
}

// summary is the batch's last line: how many files were downloaded,
// skipped, up to date, interrupted and failed.
func (b *batch) summary() string {
	summary := fmt.Sprintf("dlflow: %d downloaded, %d failed", b.ok, b.failed)
	if b.skipped > 0 {
		summary = fmt.Sprintf("dlflow: %d downloaded, %d skipped (they exist), %d failed", b.ok, b.skipped, b.failed)
	}
	if b.upToDate > 0 {
		summary += fmt.Sprintf(", %d up to date", b.upToDate)
	}
	if b.stopped > 0 {
		summary += fmt.Sprintf(", %d interrupted", b.stopped)
	}
	return summary
}

func listName(input string) string {
	if input == "-" {
		return "stdin"
	}
	return input
}

// batch is one run of `dlflow -i LIST`.
type batch struct {
	base    *dlflow.Request // what the command line asks of every download
	dir     string
	stdout  io.Writer // --json: one summary object per download
	stderr  io.Writer
	quiet   bool
	silent  bool // -s without -S: no error lines either
	args    bool // the URLs are the command line's, not a list's
	json    bool
	display *progress.Display // the shared progress display on a terminal, or nil
	// metalink: the requests are the files of a Metalink (getMetalink),
	// labelled "file N".
	metalink bool

	mu   sync.Mutex
	bars map[*dlflow.Request]*progress.Bar // of the running downloads

	// Counted by run's goroutine alone.
	ok, failed, stopped int
	skipped             int // --skip-existing found the output there
	upToDate            int // -N found the output as new as the server's copy
}

// run feeds the list's entries to the client's batch, --jobs at a time,
// and reports each download as it ends. It returns the error reading the
// list, if any. file, when set, is the list, closed to stop the reader
// early.
func (b *batch) run(ctx context.Context, client *dlflow.Client, jobs int, list io.Reader, shard dlflow.Shard, file *os.File) error {
	reqs := make(chan *dlflow.Request)
	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(reqs)
		readErr <- dlflow.ReadList(list, shard, func(e dlflow.ListEntry) bool {
			select {
			case reqs <- b.request(e):
				return true
			case <-done:
				return false
			}
		})
	}()
	for r := range client.Batch(ctx, jobs, reqs) {
		b.report(ctx, r)
	}
	close(done)
	select {
	case err := <-readErr:
		return err
	default:
	}
	// Interrupted while the reader waits for more of the list. A file is
	// closed to wake it; stdin cannot be, so its reader is left to the
	// process's exit.
	if file != nil {
		file.Close()
		<-readErr
	}
	return nil
}

// request is the download of one entry of the list: the command line's
// request with the entry's URL and output.
func (b *batch) request(e dlflow.ListEntry) *dlflow.Request {
	r := *b.base
	r.URL, r.Dir, r.Label = e.URL, b.dir, fmt.Sprintf("line %d", e.Line)
	if b.args {
		r.Label = fmt.Sprintf("URL %d", e.Line)
	}
	// An output: key of the config file names one file, not one per line.
	r.Config = append(slices.Clip(r.Config), config.Override{Key: "output", Value: "", Origin: "the list"})
	r.Path = e.Name
	if e.Name != "" {
		r.Config = r.Config[:len(r.Config)-1]
	}
	if b.display != nil {
		r.Hooks.Started = func(d *dlflow.Download) {
			b.mu.Lock()
			prev := b.bars[d.Request()] // the file changed on the server: a new bar for the new run
			b.mu.Unlock()
			prev.Finish(false)
			bar := b.display.Add(d)
			b.mu.Lock()
			b.bars[d.Request()] = bar
			b.mu.Unlock()
		}
	}
	return &r
}

// report prints how one download of the list ended and counts it.
func (b *batch) report(ctx context.Context, r dlflow.BatchResult) {
	b.mu.Lock()
	bar := b.bars[r.Request]
	delete(b.bars, r.Request)
	b.mu.Unlock()
	bar.Finish(r.Err == nil)

	err := cliError(r.Err, r.Result)
	var claimed *dlflow.OutputClaimedError
	if errors.As(err, &claimed) {
		// By's Label names its line ("line 7", "URL 2"): a map of every
		// request's line would grow with the list.
		err = fmt.Errorf("%s is already the output of %s of the list; write a name after the URL", claimed.Path, claimed.By.Label)
		if b.args {
			err = fmt.Errorf("%s is already the output of %s of the command line; name them in a list (-i) to keep both", claimed.Path, claimed.By.Label)
		}
		if b.metalink {
			err = fmt.Errorf("%s is already the output of %s of the metalink, of the same name", claimed.Path, claimed.By.Label)
		}
	}
	redacted := httpx.RedactURL(r.Request.URL)
	if redacted == "" { // a file of a metalink: the URL it was fetched from, else its label
		redacted = cmp.Or(r.Result.URL, r.Request.Label)
	}
	var ie *interrupted
	code := exitOK
	switch {
	case err == nil && r.Result.Skipped:
		b.skipped++
		if !b.quiet {
			fmt.Fprintln(b.stderr, skipLine(r.Result.Path))
		}
	case err == nil && r.Result.UpToDate:
		b.upToDate++
		if !b.quiet {
			fmt.Fprintln(b.stderr, upToDateLine(r.Result.Path))
		}
	case err == nil:
		b.ok++
		if !b.quiet {
			fmt.Fprintln(b.stderr, summaryOf(redacted, r.Result, nil, code).line())
		}
	case ctx.Err() != nil && errors.As(context.Cause(ctx), &ie):
		b.stopped++
		err, code = cliError(context.Cause(ctx), r.Result), ie.exitCode()
		fmt.Fprintf(b.stderr, "dlflow: %s: %s\n", redacted, err)
	default:
		b.failed++
		code = exitFailed
		if b.silent {
			break
		}
		fmt.Fprintf(b.stderr, "dlflow: %s: %s\n", redacted, oneLine(err.Error()))
	}
	if b.json {
		summaryOf(redacted, r.Result, err, code).writeJSON(b.stdout)
	}
}

// lockedWriter serializes writes to a writer that is not safe for
// concurrent use.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
