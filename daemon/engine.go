package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/pipeline"
)

// Options configure a daemon.
type Options struct {
	// Dir is the directory every download lands in (--dir): a client's
	// dir and out options stay inside it. Required.
	Dir string
	// Listen is host:port (--listen, default 127.0.0.1:6800), or a unix
	// socket's path (one with a "/", or "unix:PATH").
	Listen string
	// Secret is the RPC secret (aria2's --rpc-secret): every call must
	// carry "token:SECRET". Required unless Listen is a unix socket.
	Secret string
	// Jobs is how many tasks download at once (aria2's
	// max-concurrent-downloads); 0 queues without downloading.
	Jobs int
	// MaxPerHost caps the connections open to one host over all tasks
	// (as the CLI's --max-per-host); 0 sets no cap.
	MaxPerHost int
	// Session is the bbolt file that keeps the queue; "" is
	// Dir/.dlflow/session.db.
	Session string
	// AllowOrigins are browser origins ("https://ariang.example") allowed
	// besides the daemon's own (--allow-origin).
	AllowOrigins []string
	// MaxResults is how many ended tasks are kept (aria2's
	// max-download-result); 0 is 1000.
	MaxResults int
	// Logger gets the daemon's log lines; the zero Logger logs nothing.
	// At info level the downloads' own lines (a progress line a second
	// each) are left out, from warn up: debug lets them in.
	Logger zerolog.Logger
	// Extra are more routes of the HTTP server ("/" for the web page,
	// "/metrics"), mounted as they are.
	Extra map[string]http.Handler
}

// Engine is the daemon's queue and its downloads; see the package doc.
type Engine struct {
	opts      Options
	root      string
	stateDir  string
	log       zerolog.Logger
	client    *dlflow.Client
	store     *store
	ctx       context.Context
	cancel    context.CancelFunc
	sessionID string
	hub       *hub
	wg        sync.WaitGroup // running downloads

	downloaded atomic.Int64 // bytes fetched by ended runs since start

	mu           sync.Mutex
	tasks        map[string]*task
	waiting      []*task // waiting and paused, in queue order
	active       []*task // in the order they started
	stopped      []*task // oldest first
	jobs         int
	overallLimit int64
	startSeq     uint64
	stopSeq      uint64
	stoppedTotal int
	closed       bool
}

// task is a record and, while it downloads, its run.
type task struct {
	record
	dl      *dlflow.Download
	metrics *pipeline.Metrics
	retries int64
	lanes   laneMeter
	// restarted says the next start is a restart with new options (as
	// aria2 changes them on the fly, no onDownloadStart is sent for it).
	restarted bool
	// crashed says the task was active when the daemon died: its output,
	// if there, is its own download that completed before the end was
	// written, so the next start keeps it (SkipExisting) rather than
	// failing on it.
	crashed bool
}

const (
	stopRestart  = "restart"
	stopShutdown = "shutdown"
)

// newEngine opens the session and brings its tasks back: waiting ones in
// order, paused ones paused, ended ones with their results, and active
// ones first in the queue, to be started again at once.
func newEngine(opts Options) (*Engine, error) {
	if opts.Dir == "" {
		return nil, errors.New("daemon: a download directory is required")
	}
	root, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("daemon: download directory: %w", err)
	}
	if opts.Session == "" {
		opts.Session = filepath.Join(root, stateDirName, "session.db")
	}
	if opts.MaxResults <= 0 {
		opts.MaxResults = 1000
	}
	if opts.Jobs < 0 {
		return nil, fmt.Errorf("daemon: jobs must be 0 or more, got %d", opts.Jobs)
	}
	st, err := openStore(opts.Session)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		opts: opts, root: root, stateDir: filepath.Dir(opts.Session), log: opts.Logger, store: st,
		ctx: ctx, cancel: cancel, sessionID: randomHex(20), hub: newHub(), tasks: map[string]*task{}, jobs: opts.Jobs,
		client: dlflow.NewClient(dlflow.WithLogger(downloadLogger(opts.Logger)), dlflow.WithMaxPerHost(opts.MaxPerHost)),
	}
	if err := e.restore(); err != nil {
		st.close()
		cancel()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	return e, nil
}

// restore loads the session into the engine and starts what may start.
func (e *Engine) restore() error {
	l, err := e.store.load()
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var ops []op
	var wasActive []*task
	inQueue := map[string]bool{}
	for _, gid := range l.queue {
		r := l.tasks[gid]
		if r == nil || inQueue[gid] || (r.Status != statusWaiting && r.Status != statusPaused) {
			continue // a stale key: the record's status says where it is
		}
		inQueue[gid] = true
		t := &task{record: *r}
		e.tasks[gid], e.waiting = t, append(e.waiting, t)
	}
	for _, gid := range l.stopped {
		if r := l.tasks[gid]; r != nil && isStopped(r.Status) && e.tasks[gid] == nil {
			t := &task{record: *r}
			e.tasks[gid], e.stopped = t, append(e.stopped, t)
			e.stopSeq = max(e.stopSeq, r.Stop)
		}
	}
	for gid, r := range l.tasks {
		if e.tasks[gid] != nil {
			continue
		}
		t := &task{record: *r}
		e.tasks[gid] = t
		switch r.Status {
		case statusActive:
			wasActive = append(wasActive, t)
		case statusWaiting, statusPaused: // lost its queue key: last
			ops = append(ops, e.insertWaiting(t, len(e.waiting))...)
			ops = append(ops, e.taskPut(t))
		default:
			t.Stop = e.nextStop()
			e.stopped = append(e.stopped, t)
			ops = append(ops, e.taskPut(t), stoppedPut(t))
		}
	}
	slices.SortFunc(wasActive, func(a, b *task) int { return cmpU64(a.Started, b.Started) })
	front := 0
	for _, t := range wasActive {
		e.startSeq = max(e.startSeq, t.Started)
		stopAs := t.StopAs
		t.StopAs = ""
		switch stopAs {
		case statusRemoved: // asked before the crash
			o, _ := e.toStopped(t, statusRemoved, codeRemoved, "")
			ops = append(ops, o...)
			continue
		case statusPaused:
			t.Status = statusPaused
		default:
			t.Status = statusWaiting
		}
		t.crashed = true
		ops = append(ops, e.insertWaiting(t, front)...)
		ops = append(ops, e.taskPut(t))
		front++
	}
	for _, t := range e.tasks {
		e.startSeq = max(e.startSeq, t.Started)
	}
	e.stoppedTotal = len(e.stopped)
	sched, notes := e.schedule()
	ops = append(ops, sched...)
	if len(ops) > 0 {
		e.store.commit(ops...)
	}
	go e.hub.notify(notes)
	return nil
}

// downloadLogger is the logger of the downloads: log's, raised to warn
// when log is at info (a service's info log says what it does, not each
// download's progress).
func downloadLogger(log zerolog.Logger) zerolog.Logger {
	if log.GetLevel() == zerolog.InfoLevel {
		return log.Level(zerolog.WarnLevel)
	}
	return log
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func isStopped(status string) bool {
	return status == statusComplete || status == statusError || status == statusRemoved
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newGID returns a gid no task has: 16 lowercase hex digits, as aria2's.
func (e *Engine) newGID() string {
	for {
		g := randomHex(8)
		if _, taken := e.tasks[g]; !taken && g != "0000000000000000" {
			return g
		}
	}
}

func (e *Engine) nextStop() uint64 { e.stopSeq++; return e.stopSeq }

// taskPut is the session change that writes t's record as it is now.
func (e *Engine) taskPut(t *task) op {
	b, err := json.Marshal(&t.record)
	if err != nil {
		panic(err) // a record always encodes
	}
	return op{bucket: bucketTasks, key: []byte(t.GID), val: b}
}

func stoppedPut(t *task) op {
	return op{bucket: bucketStopped, key: u64key(t.Stop), val: []byte(t.GID)}
}

// apply runs f under the engine's lock, commits the changes it returns
// in order, sends its notifications, and waits until the changes are
// durable: a caller is answered only once a crash can no longer undo
// what it was told.
func (e *Engine) apply(f func() ([]op, []note, error)) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errClosed
	}
	ops, notes, err := f()
	var done <-chan error
	if len(ops) > 0 {
		done = e.store.commit(ops...)
	}
	e.mu.Unlock()
	e.hub.notify(notes)
	if done != nil {
		if werr := <-done; werr != nil {
			e.log.Error().Err(werr).Msg("session not written")
			return errors.Join(err, werr)
		}
	}
	return err
}

// close stops the downloads without changing their status in the session
// (a restart resumes them), and closes the session.
func (e *Engine) close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	for _, t := range e.active {
		t.StopAs = stopShutdown
	}
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	e.client.CloseIdleConnections()
	return e.store.close()
}
