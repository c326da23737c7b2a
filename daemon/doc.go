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
// # Concurrency
//
// An Engine is safe for concurrent use: one mutex guards the tasks, the
// queue and the counters; downloads run on their own goroutines and report
// back through it. Handler is an http.Handler safe for concurrent use.
package daemon
