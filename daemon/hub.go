package daemon

import (
	"encoding/json"
	"sync"
	"sync/atomic"
)

// note is an aria2 notification of one task.
type note struct {
	method, gid string
}

// hub sends notifications to the WebSocket connections that authenticated
// (a call with the right token): aria2 sends them to every connection,
// which would tell anyone who can connect what is downloaded.
type hub struct {
	mu      sync.Mutex
	conns   map[*wsConn]struct{}
	dropped atomic.Int64 // notifications a full connection did not get
}

func newHub() *hub { return &hub{conns: map[*wsConn]struct{}{}} }

func (h *hub) join(c *wsConn) {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
}

func (h *hub) leave(c *wsConn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

func (h *hub) notify(notes []note) {
	if len(notes) == 0 {
		return
	}
	msgs := make([][]byte, len(notes))
	for i, n := range notes {
		msgs[i], _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "method": n.method, "params": []any{map[string]string{"gid": n.gid}}})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		if !c.authed.Load() {
			continue
		}
		for _, m := range msgs {
			if !c.offer(m) {
				h.dropped.Add(1)
			}
		}
	}
}
