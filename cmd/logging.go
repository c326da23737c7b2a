package cmd

import (
	"io"
	stdlog "log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// logFlags are the logging flags every subcommand takes.
type logFlags struct {
	level  string
	format string
	quiet  bool
}

func (l *logFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "", "debug, info, warn or error (default warn: on a terminal the progress bar and the summary line tell the rest)")
	fs.StringVar(&l.format, "log-format", "", "console or json (default console on a terminal, json otherwise)")
	fs.BoolVarP(&l.quiet, "quiet", "q", false, "print errors only: no progress bar, no summary line, no warnings")
}

// logger builds the one logger of the process. Libraries get it passed in.
func (l *logFlags) logger(stderr io.Writer) (zerolog.Logger, error) {
	log, _, err := l.build(stderr)
	return log, err
}

// build is logger, also returning the writer the logger writes through, so
// that a progress bar can take the log lines while it owns the terminal.
func (l *logFlags) build(stderr io.Writer) (zerolog.Logger, *logSink, error) {
	tty := isTerminal(stderr)
	level := l.level
	switch {
	case l.quiet:
		level = "error"
	case level == "":
		level = "warn"
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), nil, usagef("--log-level %q: want debug, info, warn or error", l.level)
	}
	sink := &logSink{w: stderr}
	var out io.Writer = sink
	switch l.format {
	case "json":
	case "console", "":
		if l.format == "console" || tty {
			out = zerolog.ConsoleWriter{Out: sink, TimeFormat: time.TimeOnly, NoColor: !tty}
		}
	default:
		return zerolog.Nop(), nil, usagef("--log-format %q: want console or json", l.format)
	}
	// Stages log from many goroutines; the writer run() was given (a
	// buffer, in tests and embedders) need not be safe for that. The sink
	// serializes writes.
	log := zerolog.New(out).Level(lvl).Hook(sink).With().Timestamp().Logger()
	return log, sink, nil
}

// logSink is where log lines go: stderr, or the progress bar's container
// while a bar is drawn, which prints them above the bar instead of through
// it. While a bar is drawn it also drops progress.tap's "progress" events,
// which the bar shows better.
type logSink struct {
	mu   sync.Mutex
	w    io.Writer
	prev io.Writer // while redirected: where lines go if w refuses them
	bar  atomic.Bool
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.w.Write(p)
	if err != nil && s.prev != nil {
		// The bar's container is shutting down: a line is never lost.
		return s.prev.Write(p)
	}
	return n, err
}

// Redirect sends the log lines to w until the returned function restores
// the previous writer. bar says w draws a progress bar.
func (s *logSink) Redirect(w io.Writer, bar bool) (restore func()) {
	s.mu.Lock()
	prev := s.w
	s.w, s.prev = w, prev
	s.mu.Unlock()
	s.bar.Store(bar)
	return func() {
		s.bar.Store(false)
		s.mu.Lock()
		s.w, s.prev = prev, nil
		s.mu.Unlock()
	}
}

// Run implements zerolog.Hook.
func (s *logSink) Run(e *zerolog.Event, _ zerolog.Level, msg string) {
	if msg == "progress" && s.bar.Load() {
		e.Discard()
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// captureStdLog sends what Go's standard logger prints into log at debug
// level until the returned function restores it. net/http's transport
// prints through it ("Unsolicited response received on idle HTTP channel"
// when a server sends bytes after a body, or a body to a HEAD): a line on
// stderr that -q and --log-format json must not let through.
func captureStdLog(log zerolog.Logger) (restore func()) {
	prevOut, prevFlags, prevPrefix := stdlog.Writer(), stdlog.Flags(), stdlog.Prefix()
	stdlog.SetFlags(0)
	stdlog.SetPrefix("")
	stdlog.SetOutput(stdLogWriter{log})
	return func() {
		stdlog.SetOutput(prevOut)
		stdlog.SetFlags(prevFlags)
		stdlog.SetPrefix(prevPrefix)
	}
}

// stdLogWriter writes each line of the standard logger as a debug event.
type stdLogWriter struct{ log zerolog.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.log.Debug().Str("from", "go").Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
