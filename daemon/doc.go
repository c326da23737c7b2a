// Package daemon is dlflow as a download service: a queue of tasks that
// survives a crash, run through the library (dlflow.Client) several at a
// time, behind aria2's JSON-RPC (HTTP POST and WebSocket at /jsonrpc) so
// that aria2's clients (AriaNg, aria2p, the npm package aria2) work
// unchanged, with progress pushed over the WebSocket (dlflow.subscribe)
// and as Server-Sent Events (/events).
//
// # The queue
//
// Every task is kept in one bbolt file (go.etcd.io/bbolt), the session. It
// was picked over SQLite without cgo (modernc.org/sqlite) because it is
// pure Go with no C translated to Go underneath, one file, ACID with an
// fsync at each commit, small (a few thousand lines against a
// million), and its keys are kept in byte order: the queue is a bucket
// whose keys are positions (big-endian uint64), so the waiting order is a
// cursor walk, and moving a task is one delete and one put. The daemon
// needs no query language: tasks are read whole at start and written by
// key.
//
// Every change of a task (added, started, paused, moved, ended) is
// committed before the RPC that caused it answers, so a kill -9 loses
// nothing a client was told. Commits of concurrent callers are grouped
// into one transaction (one fsync), in the order the engine made them.
// Progress is not written: a task that was active when the daemon died is
// active again after a restart, and the library resumes it from its
// OUTPUT.tmp, fetching only what is missing.
//
// # aria2's RPC
//
// Methods, field names, types (numbers as strings), gids (16 lowercase
// hex digits), statuses, error codes and notifications follow aria2 1.37
// (src/RpcMethodImpl.cc), checked against aria2c by daemon/conformance.
// Where dlflow differs, it says so: addTorrent is an error; a change of
// options on an active task restarts it (resuming from its partial file)
// where aria2 applies some on the fly; bitfield counts whole pieces from
// the start, as the library tells how many bytes are in, not which; the
// global options last until a restart, as aria2's. Notifications and the
// progress push go only to WebSockets that sent the secret. A pushed
// task's lanes have start and end "-1": the library reports each
// connection's bytes, not its range.
//
// # Safety
//
// Every call needs the secret (constant-time compare) but
// system.listMethods and system.listNotifications; a browser request from
// another origin is refused (Options.AllowOrigins adds exact origins, no
// wildcard); dir and out stay inside Options.Dir (no absolute path, no
// "..", no symlink on the way, not the state directory); URIs are http or
// https and a Metalink comes as content, so a client cannot make the
// daemon read a local file; bodies, batches and multicalls are bounded.
//
// # Concurrency
//
// An Engine is safe for concurrent use: one mutex guards the tasks, the
// queue and the counters; downloads run on their own goroutines and report
// back through it. Handler is an http.Handler safe for concurrent use.
package daemon
