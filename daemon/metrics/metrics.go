// Package metrics serves the daemon's figures at /metrics in Prometheus'
// text format (issue #21, DAEMON-PROTOCOL.md).
//
// It writes the text format itself, with the standard library only: the
// daemon lives in the same binary as every plain download, and a metrics
// library's package inits (client_golang's pull in protobuf's descriptor
// registry) run in every invocation of that binary: they cost each
// download about 2 MiB of peak RSS (issue #20: 15.5 -> 13.6 MiB for a
// tiny download, 21.3 -> 19.3 MiB for 1 GiB streamed, medians of 5).
// The lighter github.com/VictoriaMetrics/metrics was no better fit: its
// inits read /proc/self/cgroup, the cgroup's PSI and cpu.stat files and
// compile a regexp at every start, it writes no HELP text, and it leaves
// label values to the caller to escape, which is most of what is here.
//
// # Contract
//
// The daemon's engine implements [Source]; the daemon mounts
// [Handler](engine, secret) at /metrics. Each scrape calls
// Source.MetricsSnapshot exactly once and builds every series from that one
// [Snapshot], so the figures of one scrape agree with each other (the
// per-status counts, the global rate and the per-task rows come from the
// same moment). Nothing is cached between scrapes and nothing is kept of a
// task once it leaves the snapshot: the engine decides which tasks are
// exposed (the stopped tasks it still lists, until purged, are exposed too).
//
// Concurrency: scrapes may run concurrently (two Prometheus servers, a human
// with curl), so MetricsSnapshot is called from several goroutines at once
// and must be safe for concurrent use. It runs on the scrape's goroutine and
// should return quickly: it is expected to copy figures under the engine's
// lock, not to do I/O. The returned Snapshot is owned by the caller of
// MetricsSnapshot (this package) and only read.
//
// # Series
//
// Global:
//
//	dlflow_tasks{status="active"|"waiting"|"stopped"}    gauge
//	dlflow_downloaded_bytes_total                          counter
//	dlflow_download_rate_bytes_per_second                  gauge
//
// Per task, labelled by gid alone (never by URL or file name: those are
// unbounded, may carry credentials, and are the client's data):
//
//	dlflow_task_completed_bytes{gid}                       gauge (a resumed task starts above 0)
//	dlflow_task_size_bytes{gid}                            gauge (absent while the size is unknown)
//	dlflow_task_download_rate_bytes_per_second{gid}        gauge
//	dlflow_task_connections{gid}                           gauge
//	dlflow_task_retries_total{gid}                         counter
//	dlflow_task_source_drops_total{gid}                    counter
//	dlflow_stage_busy_seconds_total{gid,stage}             counter
//	dlflow_stage_wait_input_seconds_total{gid,stage}       counter
//	dlflow_stage_wait_output_seconds_total{gid,stage}      counter
//
// A GID that appears twice in one snapshot, or a stage ID twice in one task,
// is exposed once (the first wins): Prometheus refuses a scrape with
// duplicate series, and one bad row must not hide all the others.
//
// # Authentication
//
// Every request must carry `Authorization: Bearer SECRET`; anything else
// gets 401 and no figures. The comparison is constant-time over SHA-256
// digests, so neither the secret's bytes nor its length leak through
// timing. An empty secret turns the check off: the daemon allows that only
// where it allows no secret at all (a unix socket).
package metrics

import (
	"compress/gzip"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// contentType is the Prometheus text format, version 0.0.4: the one every
// Prometheus version reads, and the only one this package writes.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// Source gives the figures of one scrape. It is implemented by the daemon's
// engine; see the package documentation for when it is called and the
// concurrency it must bear.
type Source interface {
	MetricsSnapshot() Snapshot
}

// Snapshot is the state of the daemon at one moment.
type Snapshot struct {
	Active, Waiting, Stopped int
	DownloadedBytes          int64   // total since start, all tasks
	DownloadSpeed            float64 // bytes/s, all tasks
	Tasks                    []Task
}

// Task is one download's figures. GID is aria2's 16 lowercase hex digits.
// TotalBytes is 0 while the size is unknown.
type Task struct {
	GID, Status                string
	CompletedBytes, TotalBytes int64
	Speed                      float64 // bytes/s
	Connections                int
	Retries, SourceDrops       int64
	Stages                     []Stage
}

// Stage is one pipeline stage's cumulative times in a task: busy working,
// waiting for input, waiting for its output to be taken.
type Stage struct {
	ID                    string
	Busy, WaitIn, WaitOut time.Duration
}

// Handler serves the Prometheus text of src, one Snapshot per request,
// to requests that carry `Authorization: Bearer secret` (all requests when
// secret is empty). It is safe for concurrent use; mount it at /metrics.
func Handler(src Source, secret string) http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, src) })
	if secret == "" {
		return h
	}
	want := sha256.Sum256([]byte(secret))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r.Header.Get("Authorization"), want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dlflow"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serve writes one scrape: one Snapshot, gzipped when the client accepts
// it (Prometheus does; a thousand tasks of three stages are about a MiB of text).
// Write errors mean the client went away: there is no one to tell.
func serve(w http.ResponseWriter, r *http.Request, src Source) {
	body := appendText(nil, samples(src.MetricsSnapshot()))
	w.Header().Set("Content-Type", contentType)
	w.Header().Add("Vary", "Accept-Encoding")
	if !acceptsGzip(r.Header.Values("Accept-Encoding")) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	gz := gzip.NewWriter(w)
	_, _ = gz.Write(body)
	_ = gz.Close()
}

// acceptsGzip reports whether an Accept-Encoding header lists gzip with a
// weight other than 0 (RFC 9110 12.5.3).
func acceptsGzip(headers []string) bool {
	for _, h := range headers {
		for _, e := range strings.Split(h, ",") {
			name, params, _ := strings.Cut(e, ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
			if !ok {
				return true
			}
			w, err := strconv.ParseFloat(q, 64)
			return err == nil && w > 0
		}
	}
	return false
}

// authorized reports whether header is "Bearer " followed by the secret
// whose digest is want. The scheme is case-insensitive (RFC 9110 11.1).
func authorized(header string, want [sha256.Size]byte) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
