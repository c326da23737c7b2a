package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Push intervals (dlflow.subscribe's interval_ms, /events' ?interval_ms=).
const (
	minInterval     = 100 * time.Millisecond
	maxInterval     = 10 * time.Second
	defaultInterval = time.Second
	// pushListed bounds the waiting and the ended tasks a push lists
	// (the first waiting, the latest ended): a queue of 10,000 does not
	// make every push megabytes long.
	pushListed = 1000
)

func clampInterval(ms int) time.Duration {
	if ms <= 0 {
		return defaultInterval
	}
	return min(max(time.Duration(ms)*time.Millisecond, minInterval), maxInterval)
}

// pushKeys are the tellStatus fields of a pushed task.
var pushKeys = []string{"gid", "status", "totalLength", "completedLength", "downloadSpeed", "connections", "dir", "files", "errorCode", "errorMessage"}

// progress is the payload of dlflow.onProgress and of an /events event:
// the active tasks, the first waiting ones and the latest ended ones,
// each with its sources and lanes, and the global figures.
func (e *Engine) progress() map[string]any {
	now := time.Now()
	e.mu.Lock()
	tasks := make([]any, 0, len(e.active)+min(len(e.waiting), pushListed)+min(len(e.stopped), pushListed))
	for _, t := range e.active {
		tasks = append(tasks, e.pushed(t, now))
	}
	for _, t := range e.waiting[:min(len(e.waiting), pushListed)] {
		tasks = append(tasks, e.pushed(t, now))
	}
	for _, t := range e.stopped[max(len(e.stopped)-pushListed, 0):] {
		tasks = append(tasks, e.pushed(t, now))
	}
	e.mu.Unlock()
	return map[string]any{"tasks": tasks, "global": e.globalStat()}
}

// pushed is one task of a push. Called with e.mu held.
func (e *Engine) pushed(t *task, now time.Time) map[string]any {
	m := fieldsMap(e.status(t, pushKeys))
	sources, lanes := []any{}, []any{}
	if t.dl != nil {
		p := t.dl.Progress()
		for _, s := range p.Sources {
			sources = append(sources, map[string]string{"uri": s.URL, "completedLength": itoa(s.Bytes), "downloadSpeed": itoa(int64(s.Rate())), "connections": strconv.Itoa(s.Connections)})
		}
		if len(p.Sources) == 0 && len(t.URIs) > 0 {
			sources = append(sources, map[string]string{"uri": t.URIs[0], "completedLength": itoa(p.Done - p.Resumed), "downloadSpeed": itoa(int64(p.Rate)), "connections": m["connections"].(string)})
		}
		speeds := t.lanes.sample(now, p.Connections)
		if len(p.Connections) > 1 {
			src := ""
			if len(t.URIs) > 0 {
				src = t.URIs[0]
			}
			for i, b := range p.Connections {
				var sp int64
				if i < len(speeds) {
					sp = speeds[i]
				}
				// The library tells each connection's bytes, not its
				// range: start and end are "-1" (unknown).
				lanes = append(lanes, map[string]string{"index": strconv.Itoa(i), "start": "-1", "end": "-1", "completedLength": itoa(b), "downloadSpeed": itoa(sp), "source": src})
			}
		}
	}
	m["sources"], m["lanes"] = sources, lanes
	return m
}

func mSubscribe(_ context.Context, d *Daemon, c *call) (any, error) {
	if c.conn == nil {
		return nil, rpcErrorf("dlflow.subscribe pushes over a WebSocket: open one at /jsonrpc (or read /events)")
	}
	opts, err := pDict(c.params, 0)
	if err != nil {
		return nil, err
	}
	var ms int
	if raw, ok := opts["interval_ms"]; ok {
		if err := json.Unmarshal(raw, &ms); err != nil {
			return nil, rpcErrorf("interval_ms: want a whole number of milliseconds")
		}
	}
	c.conn.subscribe(d.e, clampInterval(ms))
	return "OK", nil
}

func mUnsubscribe(_ context.Context, _ *Daemon, c *call) (any, error) {
	if c.conn != nil {
		c.conn.unsubscribe()
	}
	return "OK", nil
}

// serveEvents is GET /events: the progress as Server-Sent Events, one
// "progress" event per interval, for clients without a WebSocket.
func (d *Daemon) serveEvents(w http.ResponseWriter, r *http.Request) {
	if ok, allowed := d.originOK(r); !ok {
		http.Error(w, "forbidden: cross-origin request (see --allow-origin)", http.StatusForbidden)
		return
	} else if allowed {
		w.Header().Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		w.Header().Set("Vary", "Origin")
	}
	if r.Method != http.MethodGet {
		http.Error(w, "GET /events", http.StatusMethodNotAllowed)
		return
	}
	if !d.secretOK(bearer(r)) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	ms, _ := strconv.Atoi(r.URL.Query().Get("interval_ms"))
	interval := clampInterval(ms)
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		b, _ := json.Marshal(d.e.progress())
		if _, err := fmt.Fprintf(w, "event: progress\ndata: %s\n\n", b); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		case <-d.e.ctx.Done():
			return
		}
	}
}
