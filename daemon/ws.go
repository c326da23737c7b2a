package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsConn is one WebSocket client: responses, notifications and progress
// pushes go out through out, written by one goroutine.
type wsConn struct {
	out    chan []byte
	done   chan struct{}
	authed atomic.Bool // a call had the right token: notifications go to it

	mu      sync.Mutex
	stopSub chan struct{} // ends the running subscription; nil without one
}

// offer queues a message that may be dropped when the client does not
// keep up (a notification, a progress push).
func (c *wsConn) offer(m []byte) bool {
	select {
	case c.out <- m:
		return true
	default:
		return false
	}
}

// send queues a response, waiting for room.
func (c *wsConn) send(ctx context.Context, m []byte) {
	select {
	case c.out <- m:
	case <-ctx.Done():
	}
}

func (d *Daemon) serveWS(w http.ResponseWriter, r *http.Request) {
	// The origin was checked by serveRPC, with --allow-origin.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ws.SetReadLimit(maxBody)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	conn := &wsConn{out: make(chan []byte, 256), done: make(chan struct{})}
	if tok := bearer(r); tok != "" && d.secretOK(tok) {
		conn.authed.Store(true)
	}
	d.e.hub.join(conn)
	defer d.e.hub.leave(conn)
	defer conn.unsubscribe()
	defer close(conn.done)
	go func() {
		defer cancel()
		for {
			select {
			case m := <-conn.out:
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				err := ws.Write(wctx, websocket.MessageText, m)
				wcancel()
				if err != nil {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			break
		}
		resp, _ := d.handleBody(ctx, data, conn)
		conn.send(ctx, resp)
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

// bearer is the secret a request carries outside JSON-RPC: an
// Authorization: Bearer header, or ?token=.
func bearer(r *http.Request) string {
	if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(h)
	}
	return r.URL.Query().Get("token")
}

// subscribe pushes progress every interval until unsubscribe or the end
// of the connection; a second subscribe replaces the first.
func (c *wsConn) subscribe(e *Engine, interval time.Duration) {
	c.unsubscribe()
	stop := make(chan struct{})
	c.mu.Lock()
	c.stopSub = stop
	c.mu.Unlock()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "dlflow.onProgress", "params": []any{e.progress()}})
				c.offer(msg)
			case <-stop:
				return
			case <-c.done:
				return
			case <-e.ctx.Done():
				return
			}
		}
	}()
}

func (c *wsConn) unsubscribe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopSub != nil {
		close(c.stopSub)
		c.stopSub = nil
	}
}
