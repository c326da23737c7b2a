package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow/daemon"
	"github.com/dlflow/dlflow/daemon/metrics"
	"github.com/dlflow/dlflow/daemon/web"
)

// daemonCmd is `dlflow daemon`: it parses the flags and runs the daemon
// package's service until ctx ends (SIGINT, SIGTERM). Active downloads
// stop and stay active in the session, to resume at the next start.
func daemonCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("dlflow daemon", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts daemon.Options
	var secretFile string
	var lf logFlags
	lf.register(fs)
	fs.StringVar(&opts.Dir, "dir", "", "directory the downloads land in; a client's dir and out stay inside it (required)")
	fs.StringVar(&opts.Listen, "listen", "127.0.0.1:6800", "address to listen on (host:port), or a unix socket's path")
	fs.StringVar(&opts.Secret, "secret", "", "RPC secret: every call carries token:SECRET (required unless --listen is a unix socket); see --secret-file")
	fs.StringVar(&secretFile, "secret-file", "", "read the RPC secret from this file (its first line), which ps does not show")
	fs.IntVarP(&opts.Jobs, "jobs", "j", 5, "tasks downloading at once (aria2's max-concurrent-downloads); 0 queues without downloading")
	fs.IntVar(&opts.MaxPerHost, "max-per-host", defaultMaxPerHost, "most connections open to one host at once, over all tasks")
	fs.StringVar(&opts.Session, "session", "", "the queue's database file (default DIR/.dlflow/session.db)")
	fs.StringArrayVar(&opts.AllowOrigins, "allow-origin", nil, "a browser origin allowed besides the daemon's own, e.g. https://ariang.example.com (repeatable)")
	fs.Usage = func() { printUsage(fs, stdout, daemonUsageHead, daemonUsageTail) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "dlflow: %v (see dlflow daemon --help)\n", err)
		return exitUsage
	}
	if err := checkDaemonFlags(fs, &opts, secretFile); err != nil {
		return fail(stderr, err)
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fail(stderr, err)
	}
	if lf.level == "" && !lf.quiet {
		log = log.Level(zerolog.InfoLevel) // a service says what it does
	}
	opts.Logger = log
	src := &metricsSource{}
	opts.Extra = map[string]http.Handler{"/": web.Handler(), "/metrics": metrics.Handler(src, opts.Secret)}
	d, err := daemon.New(opts)
	if err != nil {
		return fail(stderr, usagef("%v", err))
	}
	src.e.Store(d.Engine())
	if err := d.Serve(ctx); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// metricsSource hands the engine's figures to daemon/metrics, whose types
// mirror daemon.Snapshot's. Its engine is set once the daemon is made; a
// scrape before that sees nothing.
type metricsSource struct{ e atomic.Pointer[daemon.Engine] }

func (m *metricsSource) MetricsSnapshot() metrics.Snapshot {
	e := m.e.Load()
	if e == nil {
		return metrics.Snapshot{}
	}
	s := e.MetricsSnapshot()
	out := metrics.Snapshot{Active: s.Active, Waiting: s.Waiting, Stopped: s.Stopped, DownloadedBytes: s.DownloadedBytes, DownloadSpeed: s.DownloadSpeed}
	for _, t := range s.Tasks {
		mt := metrics.Task{GID: t.GID, Status: t.Status, CompletedBytes: t.CompletedBytes, TotalBytes: t.TotalBytes, Speed: t.Speed,
			Connections: t.Connections, Retries: t.Retries, SourceDrops: t.SourceDrops}
		for _, st := range t.Stages {
			mt.Stages = append(mt.Stages, metrics.Stage{ID: st.ID, Busy: st.Busy, WaitIn: st.WaitIn, WaitOut: st.WaitOut})
		}
		out.Tasks = append(out.Tasks, mt)
	}
	return out
}

func checkDaemonFlags(fs *pflag.FlagSet, opts *daemon.Options, secretFile string) error {
	switch {
	case fs.NArg() > 0:
		return usagef("dlflow daemon takes no arguments, got %q", fs.Args())
	case opts.Dir == "":
		return usagef("--dir DIR is required: the directory the downloads land in")
	case opts.Jobs < 0:
		return usagef("--jobs must be 0 or more, got %d", opts.Jobs)
	case opts.MaxPerHost < 1:
		return usagef("--max-per-host must be at least 1, got %d", opts.MaxPerHost)
	case secretFile != "" && opts.Secret != "":
		return usagef("--secret and --secret-file: give one")
	}
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return usagef("--secret-file: %v", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if opts.Secret = strings.TrimSpace(line); opts.Secret == "" {
			return usagef("--secret-file %s is empty", secretFile)
		}
	}
	return nil
}

const daemonUsageHead = `usage: dlflow daemon --dir DIR [--listen 127.0.0.1:6800] --secret S [--jobs N] [--session FILE]

A download service that aria2's clients (AriaNg, aria2p, the npm package aria2)
use unchanged: aria2's JSON-RPC over HTTP POST and WebSocket at /jsonrpc, with
the secret as "token:S". The queue is kept in --session and survives a crash:
a restart brings every task back, resuming active ones from their .tmp.
`

const daemonUsageTail = `
Progress is pushed: call dlflow.subscribe over the WebSocket, or read
Server-Sent Events at /events (Authorization: Bearer S). Requests from a
browser page of another origin are refused unless --allow-origin names it.
`
