package main

import (
	"fmt"
	"io"
	"os"
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
	fs.StringVar(&l.level, "log-level", "", "debug, info, warn or error (default info on a terminal, warn otherwise)")
	fs.StringVar(&l.format, "log-format", "", "console or json (default console on a terminal, json otherwise)")
	fs.BoolVarP(&l.quiet, "quiet", "q", false, "print errors only")
}

// logger builds the one logger of the process. Libraries get it passed in.
func (l *logFlags) logger(stderr io.Writer) (zerolog.Logger, error) {
	tty := isTerminal(stderr)
	level := l.level
	switch {
	case l.quiet:
		level = "error"
	case level == "" && tty:
		level = "info"
	case level == "":
		level = "warn"
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), usagef("--log-level %q: want debug, info, warn or error", l.level)
	}
	var out io.Writer = stderr
	switch l.format {
	case "json":
	case "console", "":
		if l.format == "console" || tty {
			out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly, NoColor: !tty}
		}
	default:
		return zerolog.Nop(), usagef("--log-format %q: want console or json", l.format)
	}
	// Stages log from many goroutines; the writer run() was given (a
	// buffer, in tests and embedders) need not be safe for that.
	return zerolog.New(zerolog.SyncWriter(out)).Level(lvl).With().Timestamp().Logger(), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// humanRate formats bytes per second.
func humanRate(bytesPerSec float64) string {
	return fmt.Sprintf("%.1f MB/s", bytesPerSec/1e6)
}
