package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode"

	"github.com/dlflow/dlflow/httpx"

	"github.com/rs/zerolog"
	"github.com/sourcegraph/conc/panics"
	"github.com/sourcegraph/conc/pool"
	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/pipeline"
)

// batchFlags are the flags of a batch download (-i LIST).
type batchFlags struct {
	input      string
	jobs       int
	maxPerHost int
	dir        string
}

// Defaults of the batch flags.
const (
	defaultJobs       = 4
	defaultMaxPerHost = 8
	maxListLine       = 1 << 20 // longest line of a list, URL and name
)

func (b *batchFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&b.input, "input-file", "i", "", "download every URL listed in FILE (- reads stdin): one per line, optionally followed by an output name; blank lines and # comments are skipped")
	fs.IntVar(&b.jobs, "jobs", defaultJobs, "with -i: how many files are downloaded at once")
	fs.IntVar(&b.maxPerHost, "max-per-host", defaultMaxPerHost, "with -i: most connections open to one host at once, over all downloads (a download wanting more gets fewer)")
	fs.StringVarP(&b.dir, "dir", "d", "", "with -i: directory of the outputs (created if missing)")
}

// isBatch reports whether the command line asks for a batch (or gives a
// flag that only makes sense with one: getBatch says so).
func isBatch(fs *pflag.FlagSet) bool {
	for _, name := range []string{"input-file", "jobs", "max-per-host", "dir"} {
		if fs.Changed(name) {
			return true
		}
	}
	return false
}

// downloadHooks hold one download of a batch to limits shared with the
// others. A single download has none.
type downloadHooks struct {
	// probe is called before the probe request to rawURL; the download
	// calls release when the probe is done.
	probe func(ctx context.Context, rawURL string) (release func(), err error)
	// start is called when the topology and the output are known, before
	// the graph is built: it may change cfg (fewer connections, the output
	// directory). The download calls release when it is over.
	start func(ctx context.Context, res *pipeline.Resource, cfg *config.Config) (release func(), err error)
}

func noRelease() {}

// beforeProbe runs the probe hook, if any.
func (d *download) beforeProbe(ctx context.Context, rawURL string) (func(), error) {
	if d.hooks == nil || d.hooks.probe == nil {
		return noRelease, nil
	}
	return d.hooks.probe(ctx, rawURL)
}

// beforeStart runs the start hook, if any.
func (d *download) beforeStart(ctx context.Context, res *pipeline.Resource, cfg *config.Config) (func(), error) {
	if d.hooks == nil || d.hooks.start == nil {
		return noRelease, nil
	}
	return d.hooks.start(ctx, res, cfg)
}

// listEntry is one URL of a list.
type listEntry struct {
	line int    // 1-based line number in the list
	url  string // as written
	name string // output name as written, or "" to derive it
}

// parseListLine reads "URL [NAME]"; ok is false for a blank line or a
// comment. NAME is the rest of the line after the URL and the whitespace
// that follows it, so it may contain spaces.
func parseListLine(n int, line string) (e listEntry, ok bool) {
	line = strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
	if line == "" || strings.HasPrefix(line, "#") {
		return listEntry{}, false
	}
	e = listEntry{line: n, url: line}
	if i := strings.IndexFunc(line, unicode.IsSpace); i >= 0 {
		e.url, e.name = line[:i], strings.TrimSpace(line[i:])
	}
	return e, true
}

// readList streams the list into out, one entry at a time, until the list
// ends or done is closed. It never holds more than a line.
func readList(r io.Reader, out chan<- listEntry, done <-chan struct{}) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxListLine)
	for n := 1; sc.Scan(); n++ {
		e, ok := parseListLine(n, sc.Text())
		if !ok {
			continue
		}
		select {
		case out <- e:
		case <-done:
			return nil
		}
	}
	return sc.Err()
}

// getBatch runs `dlflow -i LIST`: every URL of the list is downloaded with
// the topology flags of the command line, --jobs at a time, with at most
// --max-per-host connections to any one host. A failed file does not stop
// the others; the exit code is 1 if any failed.
func getBatch(ctx context.Context, args []string, fs *pflag.FlagSet, flags *getFlags, stdin io.Reader, stdout, stderr io.Writer) int {
	bf := flags.batch
	switch {
	case !fs.Changed("input-file"):
		return fail(stderr, usagef("--jobs, --max-per-host and --dir go with -i LIST (a file of URLs, or - for stdin)"))
	case fs.Changed("output"):
		return fail(stderr, usagef("-o names one output; with -i, write a name after a URL in the list, or use --dir"))
	case fs.Changed("url") || fs.NArg() > 0:
		return fail(stderr, usagef("with -i the URLs come from the list; give none on the command line"))
	case bf.input == "":
		return fail(stderr, usagef("-i needs a file name, or - for stdin"))
	case bf.jobs < 1:
		return fail(stderr, usagef("--jobs must be at least 1, got %d", bf.jobs))
	case bf.maxPerHost < 1:
		return fail(stderr, usagef("--max-per-host must be at least 1, got %d", bf.maxPerHost))
	case flags.skipExisting && fs.Changed("overwrite"):
		return fail(stderr, usagef("--overwrite and --skip-existing contradict each other; give one"))
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
	// The topology is the same for every line: a config error is reported
	// once, before any download.
	if err := checkBatchConfig(fs, flags, stderr, log); err != nil {
		return fail(stderr, err)
	}
	list := stdin
	var file *os.File
	if bf.input != "-" {
		if file, err = os.Open(bf.input); err != nil {
			return fail(stderr, &usageError{fmt.Errorf("-i: %w", err)})
		}
		defer file.Close()
		list = file
	}
	if list == nil {
		list = strings.NewReader("")
	}
	if bf.dir != "" {
		if err := os.MkdirAll(bf.dir, 0o777); err != nil {
			return fail(stderr, fmt.Errorf("--dir: %w", err))
		}
	}

	lines := stderr
	var display *batchDisplay
	if showBars {
		display = newBatchDisplay(stderr)
		lines = display.Lines()
		defer sink.redirect(lines, true)()
	}
	b := &batch{
		args:    args,
		flags:   bf,
		log:     log,
		stdout:  stdout,
		stderr:  lines,
		display: display,
		quiet:   flags.log.quiet,
		json:    flags.json,
		hosts:   newHostLimiter(bf.maxPerHost),
		claimed: map[string]int{},
	}
	readErr := b.run(ctx, list, file)
	if display != nil {
		display.Close() // every download ended: the summary goes below the last line
	}

	b.mu.Lock()
	ok, failed, stopped, skipped := b.ok, b.failed, b.stopped, b.skipped
	b.mu.Unlock()
	if readErr != nil {
		fmt.Fprintf(stderr, "dlflow: read %s: %s\n", listName(bf.input), oneLine(readErr.Error()))
	}
	summary := fmt.Sprintf("dlflow: %d downloaded, %d failed", ok, failed)
	if skipped > 0 {
		summary = fmt.Sprintf("dlflow: %d downloaded, %d skipped (they exist), %d failed", ok, skipped, failed)
	}
	if stopped > 0 {
		summary += fmt.Sprintf(", %d interrupted", stopped)
	}
	if !flags.log.quiet || failed > 0 || stopped > 0 || readErr != nil {
		fmt.Fprintln(stderr, summary)
	}

	var ie *interrupted
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &ie) {
		return fail(stderr, ie)
	}
	if failed > 0 || readErr != nil {
		return exitFailed
	}
	return exitOK
}

func listName(input string) string {
	if input == "-" {
		return "stdin"
	}
	return input
}

// checkBatchConfig loads the topology as a download would and builds its
// client, so that what is wrong with the flags or the config file is one
// usage error rather than the same failure on every line.
func checkBatchConfig(fs *pflag.FlagSet, flags *getFlags, stderr io.Writer, log zerolog.Logger) error {
	d := newDownload(fs, flags, stderr)
	d.log = log
	if err := d.checkArgs(); err != nil {
		return err
	}
	cfg, err := d.load("stream.yaml")
	if err != nil {
		return err
	}
	client, _, err := httpx.NewClient(cfg.HTTP)
	if err != nil {
		return &usageError{err}
	}
	client.CloseIdleConnections()
	if flags.configFile != "" {
		// Each line brings its own URL and output; these only let the
		// graph build (Graph does no I/O).
		cfg.URL, cfg.Output = "http://example.com/check", "check"
		if _, err := cfg.Graph(pipeline.DefaultRegistry); err != nil {
			return configError(err)
		}
	}
	return nil
}

// batch is one run of `dlflow -i LIST`.
type batch struct {
	args    []string // the command line, parsed again for every download
	flags   batchFlags
	log     zerolog.Logger
	stdout  io.Writer // --json: one summary object per download
	stderr  io.Writer
	quiet   bool
	json    bool
	hosts   *hostLimiter
	display *batchDisplay // the shared progress display on a terminal, or nil

	mu                  sync.Mutex
	claimed             map[string]int // absolute output path -> list line
	ok, failed, stopped int
	skipped             int // --skip-existing found the output there
}

// run reads the list and runs its downloads until the list ends or ctx is
// done, and returns the error reading the list, if any. file, when set, is
// the list, closed to stop the reader early.
func (b *batch) run(ctx context.Context, list io.Reader, file *os.File) error {
	entries := make(chan listEntry, b.flags.jobs)
	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(entries)
		readErr <- readList(list, entries, done)
	}()

	p := pool.New().WithMaxGoroutines(b.flags.jobs)
	finished := false
	for !finished {
		select {
		case <-ctx.Done():
			finished = true
		case e, ok := <-entries:
			if !ok {
				finished = true
				break
			}
			// Go blocks while --jobs downloads run, so the list is read
			// only as fast as downloads finish.
			p.Go(func() { b.one(ctx, e) })
		}
	}
	p.Wait()
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

// one downloads one entry of the list and reports how it went.
func (b *batch) one(ctx context.Context, e listEntry) {
	if ctx.Err() != nil {
		return // interrupted before it started: not counted
	}
	var d *download
	var err error
	if r := panics.Try(func() { d, err = b.download(ctx, e) }); r != nil {
		err = r.AsError()
	}
	redacted := httpx.RedactURL(e.url)

	b.mu.Lock()
	defer b.mu.Unlock()
	var ie *interrupted
	code := exitOK
	switch {
	case err == nil:
		b.ok++
		if !b.quiet {
			fmt.Fprintln(b.stderr, d.summary(nil, code).line())
		}
	case d != nil && d.skipped(err):
		b.skipped++
		if !b.quiet {
			fmt.Fprintln(b.stderr, d.skipLine())
		}
		if b.json {
			d.skipSummary().writeJSON(b.stdout)
		}
		return
	case ctx.Err() != nil && errors.As(context.Cause(ctx), &ie):
		b.stopped++
		err, code = ie, ie.exitCode()
		msg := err.Error()
		if d != nil && d.output != "" && d.started {
			if _, serr := os.Lstat(d.output + ".tmp"); serr == nil {
				msg += "; partial data kept in " + d.output + ".tmp"
			}
		}
		fmt.Fprintf(b.stderr, "dlflow: %s: %s\n", redacted, msg)
	default:
		b.failed++
		code = exitFailed
		fmt.Fprintf(b.stderr, "dlflow: %s: %s\n", redacted, oneLine(err.Error()))
	}
	if b.json {
		if d == nil {
			d = newDownload(nil, nil, b.stderr)
		}
		if d.url == "" {
			d.url = redacted
		}
		d.summary(err, code).writeJSON(b.stdout)
	}
}

// download runs one entry with flags of its own: the command line parsed
// again, with the entry's URL and output.
func (b *batch) download(ctx context.Context, e listEntry) (*download, error) {
	fs, flags := newGetFlags(io.Discard)
	if err := fs.Parse(b.args); err != nil {
		return nil, err // parsed once already, so it cannot fail
	}
	if err := fs.Set("url", e.url); err != nil {
		return nil, err
	}
	output := "" // derived from the server's answer, see start
	if e.name != "" {
		output = b.path(e.name)
	}
	// Set even when empty: an output: key of the config file names one
	// file, not one per line.
	if err := fs.Set("output", output); err != nil {
		return nil, err
	}
	d := newDownload(fs, flags, b.stderr)
	if b.display != nil {
		d.bars = b.display.bars
	}
	d.log = b.log.With().Int("line", e.line).Logger()
	d.hooks = &downloadHooks{
		probe: func(ctx context.Context, rawURL string) (func(), error) {
			return b.hosts.acquire(ctx, hostKey(rawURL), 1)
		},
		start: func(ctx context.Context, res *pipeline.Resource, cfg *config.Config) (func(), error) {
			return b.start(ctx, e, res, cfg, d.log)
		},
	}
	return d, d.run(ctx)
}

// path puts a name from the list in --dir; an absolute name stays as is.
func (b *batch) path(name string) string {
	if b.flags.dir == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(b.flags.dir, name)
}

// start is the hook run once a download's output and topology are known:
// it puts a derived name in --dir, makes sure no other line of the batch
// writes the same file, caps the connections at --max-per-host and waits
// until the host has that many free.
func (b *batch) start(ctx context.Context, e listEntry, res *pipeline.Resource, cfg *config.Config, log zerolog.Logger) (func(), error) {
	if e.name == "" {
		cfg.Output = b.path(cfg.Output)
	}
	if err := b.claim(cfg.Output, e.line); err != nil {
		return nil, err
	}
	need := readerConnections(cfg)
	if limit := b.flags.maxPerHost; need > limit {
		capConnections(cfg, limit)
		log.Info().Int("connections", need).Int("max_per_host", limit).Int("now", readerConnections(cfg)).
			Msg("fewer connections for this download: --max-per-host caps the connections to one host")
		need = readerConnections(cfg)
	}
	return b.hosts.acquire(ctx, hostKey(res.URL), need)
}

// claim reserves output for one line of the list: two downloads writing one
// file would corrupt it.
func (b *batch) claim(output string, line int) error {
	key, err := filepath.Abs(output)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, ok := b.claimed[key]; ok {
		return fmt.Errorf("%s is already the output of line %d of the list; write a name after the URL", output, prev)
	}
	b.claimed[key] = line
	return nil
}

// readerConnections is how many connections a download of cfg opens at
// once: the workers of its http.reader stages, or 1 for a topology without
// one (a single stream).
func readerConnections(cfg *config.Config) int {
	n := 0
	for _, sc := range cfg.Stages {
		if sc.Type == "http.reader" {
			n += max(sc.Workers, 1)
		}
	}
	return max(n, 1)
}

// capConnections shares limit connections among the http.reader stages of
// cfg, at least one each.
func capConnections(cfg *config.Config, limit int) {
	readers := 0
	for _, sc := range cfg.Stages {
		if sc.Type == "http.reader" {
			readers++
		}
	}
	if readers == 0 {
		return
	}
	for id, sc := range cfg.Stages {
		if sc.Type == "http.reader" {
			sc.Workers = min(max(sc.Workers, 1), max(limit/readers, 1))
			cfg.Stages[id] = sc
		}
	}
}

// hostKey names the host a URL connects to: lowercase host and port, the
// port filled in from the scheme. "" for a URL without a host (the probe
// then refuses it).
func hostKey(rawURL string) string {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// hostLimiter is a weighted semaphore per host: at most max connections to
// one host, over all the downloads of a batch.
type hostLimiter struct {
	max   int
	mu    sync.Mutex
	hosts map[string]*hostSlots
}

// hostSlots are one host's connections: a token in slots per connection in
// use. turn lets one acquirer at a time collect its tokens, so two
// downloads each holding part of what they need can never wait for each
// other.
type hostSlots struct {
	turn  chan struct{}
	slots chan struct{}
}

func newHostLimiter(max int) *hostLimiter {
	return &hostLimiter{max: max, hosts: map[string]*hostSlots{}}
}

func (l *hostLimiter) slotsOf(host string) *hostSlots {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.hosts[host]
	if !ok {
		s = &hostSlots{turn: make(chan struct{}, 1), slots: make(chan struct{}, l.max)}
		l.hosts[host] = s
	}
	return s
}

// acquire waits until n connections to host are free (n is capped at the
// limit, so it cannot wait forever) and takes them; release gives them
// back. An unknown host ("") is not limited.
func (l *hostLimiter) acquire(ctx context.Context, host string, n int) (release func(), err error) {
	if host == "" {
		return noRelease, nil
	}
	n = min(max(n, 1), l.max)
	s := l.slotsOf(host)
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-s.turn }()
	for got := 0; got < n; got++ {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			s.give(got)
			return nil, context.Cause(ctx)
		}
	}
	var once sync.Once
	return func() { once.Do(func() { s.give(n) }) }, nil
}

func (s *hostSlots) give(n int) {
	for range n {
		<-s.slots
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
