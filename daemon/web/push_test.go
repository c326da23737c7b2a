package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/dlflow/dlflow/daemon/web"
)

// pushPeer is the far side of the page's push mode as DAEMON-PROTOCOL.md
// writes it (dlflow.subscribe, then dlflow.onProgress with sources and
// lanes), over a real WebSocket. aria2c has no push, and the daemon is not
// in main yet; once it is, TestPageAgainstDaemon should replace this. It
// answers the listing calls with one task, records every call, and sends
// the pushes the test gives it.
type pushPeer struct {
	t      *testing.T
	secret string
	task   map[string]any
	mu     sync.Mutex
	calls  []rpcCall
	pushes chan []any // each: the tasks of one dlflow.onProgress
	subbed chan struct{}
	once   sync.Once
}

type rpcCall struct {
	ID     json.RawMessage   `json:"id"`
	Method string            `json:"method"`
	Params []json.RawMessage `json:"params"`
}

func (p *pushPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil) // same-origin only, by default
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	go p.push(ctx, c)
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		var call rpcCall
		if err := json.Unmarshal(b, &call); err != nil {
			p.t.Errorf("page sent %q: %v", b, err)
			return
		}
		p.mu.Lock()
		p.calls = append(p.calls, call)
		p.mu.Unlock()
		resp := map[string]any{"jsonrpc": "2.0", "id": call.ID}
		if !p.tokenOK(call) {
			resp["error"] = map[string]any{"code": 1, "message": "Unauthorized"}
		} else {
			resp["result"], resp["error"] = p.answer(call.Method)
		}
		if resp["error"] == nil {
			delete(resp, "error")
		}
		if err := writeJSON(ctx, c, resp); err != nil {
			return
		}
	}
}

// tokenOK reports whether the call's first parameter is "token:SECRET".
func (p *pushPeer) tokenOK(c rpcCall) bool {
	var tok string
	return len(c.Params) > 0 && json.Unmarshal(c.Params[0], &tok) == nil && tok == "token:"+p.secret
}

func (p *pushPeer) answer(method string) (any, any) {
	switch method {
	case "aria2.tellActive", "aria2.tellStatus":
		if method == "aria2.tellStatus" {
			return p.task, nil
		}
		return []any{p.task}, nil
	case "aria2.tellWaiting", "aria2.tellStopped":
		return []any{}, nil
	case "dlflow.subscribe":
		p.once.Do(func() { close(p.subbed) })
		return "OK", nil
	}
	return nil, map[string]any{"code": 1, "message": "No such method: " + method}
}

func (p *pushPeer) push(ctx context.Context, c *websocket.Conn) {
	for {
		select {
		case <-ctx.Done():
			return
		case tasks := <-p.pushes:
			global := map[string]string{"downloadSpeed": "3072", "uploadSpeed": "0", "numActive": "1",
				"numWaiting": "0", "numStopped": "0", "numStoppedTotal": "0"}
			if writeJSON(ctx, c, map[string]any{"jsonrpc": "2.0", "method": "dlflow.onProgress",
				"params": []any{map[string]any{"tasks": tasks, "global": global}}}) != nil {
				return
			}
		}
	}
}

func writeJSON(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageText, b)
}

const hostileURI = `http://b.example/<script>window.__xss=2</script>.iso`

// progressed is the task with completed bytes done and three lanes: two of
// known ranges, one whose range the daemon does not know (-1).
func progressed(task map[string]any, done string) map[string]any {
	t := maps(task)
	t["completedLength"] = done
	t["lanes"] = []map[string]string{
		{"index": "0", "start": "0", "end": "2097151", "completedLength": "1048576", "downloadSpeed": "2048", "source": "http://a.example/big.iso"},
		{"index": "1", "start": "2097152", "end": "4194303", "completedLength": "524288", "downloadSpeed": "1024", "source": hostileURI},
		{"index": "2", "start": "-1", "end": "-1", "completedLength": "4096", "downloadSpeed": "0", "source": "http://a.example/big.iso"},
	}
	t["sources"] = []map[string]string{
		{"uri": "http://a.example/big.iso", "completedLength": "1052672", "downloadSpeed": "2048", "connections": "2"},
		{"uri": hostileURI, "completedLength": "524288", "downloadSpeed": "1024", "connections": "1"},
	}
	return t
}

func maps(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestPagePushLanes: against a peer that has dlflow.subscribe, the page
// subscribes (every call with the token), stops polling, and draws each
// push: the task's bar and figures, and its lanes (range, bar, source) and
// sources, hostile URIs as text.
func TestPagePushLanes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	task := map[string]any{"gid": "2089b05ecca3d829", "status": "active", "totalLength": "4194304",
		"completedLength": "1048576", "downloadSpeed": "3072", "connections": "3", "dir": "/d",
		"files": []any{map[string]any{"index": "1", "path": "/d/big.iso", "length": "4194304", "completedLength": "1048576",
			"selected": "true", "uris": []any{map[string]string{"uri": "http://a.example/big.iso", "status": "used"}}}}}
	peer := &pushPeer{t: t, secret: pageSecret, task: task, pushes: make(chan []any, 4), subbed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.Handle("/jsonrpc", peer)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := newBrowser(t, ctx)
	b.open(srv.URL + "/#secret=" + encodeFragment(pageSecret))
	select {
	case <-peer.subbed:
	case <-ctx.Done():
		t.Fatal("the page never subscribed")
	}
	b.waitFor("push mode", `document.getElementById('conn').textContent === 'connected (push)'`, 30*time.Second)
	peer.pushes <- []any{progressed(task, "1048576")}
	b.waitFor("the lanes", `document.querySelectorAll('#tasks tr.lane').length === 3`, 30*time.Second)
	peer.pushes <- []any{progressed(task, "3145728")}
	b.waitFor("the second push", row("big.iso")+`.querySelector('.size').textContent === '3.0 MiB / 4.0 MiB (75%)'`, 30*time.Second)

	var got struct {
		Summary, Global string
		Bar             [2]float64
		Ranges, Sources []string
		LaneBars        [][3]any // value, max, hidden
		Scripts         int
		XSS             bool
	}
	b.eval(`(() => { const r = `+row("big.iso")+`; const lanes = [...r.querySelectorAll('tr.lane')];
		return {Summary: r.querySelector('summary').textContent, Global: document.getElementById('global').textContent,
		Bar: [r.querySelector('.head progress').value, r.querySelector('.head progress').max],
		Ranges: lanes.map(l => l.children[1].textContent),
		Sources: lanes.map(l => l.querySelector('.source').textContent).concat([...r.querySelectorAll('li.source')].map(s => s.textContent)),
		LaneBars: lanes.map(l => { const p = l.querySelector('progress'); return [p.value, p.max, p.hidden]; }),
		Scripts: document.querySelectorAll('#tasks script').length, XSS: window.__xss === 2}; })()`, &got)
	if got.Summary != "3 connections, 2 sources" || got.Global != "3.0 KiB/s · active 1 · waiting 0 · stopped 0" {
		t.Errorf("summary %q, global %q", got.Summary, got.Global)
	}
	if got.Bar != [2]float64{3145728, 4194304} {
		t.Errorf("task bar %v", got.Bar)
	}
	if want := []string{"0–2097151", "2097152–4194303", "?"}; !slices.Equal(got.Ranges, want) {
		t.Errorf("lane ranges %q, want %q", got.Ranges, want)
	}
	wantSources := []string{"http://a.example/big.iso", hostileURI, "http://a.example/big.iso",
		"http://a.example/big.iso — 1.0 MiB, 2.0 KiB/s, 2 conn.", hostileURI + " — 512.0 KiB, 1.0 KiB/s, 1 conn."}
	if !slices.Equal(got.Sources, wantSources) {
		t.Errorf("sources %q\nwant %q", got.Sources, wantSources)
	}
	lb, _ := json.Marshal(got.LaneBars)
	if string(lb) != `[[1048576,2097152,false],[524288,2097152,false],[0,1,true]]` {
		t.Errorf("lane bars %s", lb)
	}
	if got.Scripts != 0 || got.XSS {
		t.Errorf("a source URI ran as HTML: %d <script>, __xss %v", got.Scripts, got.XSS)
	}
	peer.checkCalls(t)
	if errs := b.errs(); len(errs) > 0 {
		t.Errorf("page errors: %q", errs)
	}
}

// checkCalls: every call carried the token; subscribe asked 500 ms; the
// page did not poll once subscribed.
func (p *pushPeer) checkCalls(t *testing.T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	subscribed := false
	for _, c := range p.calls {
		if !p.tokenOK(c) {
			t.Errorf("%s without the token: %s", c.Method, c.Params)
		}
		switch {
		case c.Method == "dlflow.subscribe":
			subscribed = true
			if len(c.Params) != 2 || string(c.Params[1]) != `{"interval_ms":500}` {
				t.Errorf("subscribe params %s", c.Params)
			}
		case subscribed && c.Method != "aria2.tellStatus":
			t.Errorf("%s after subscribing (polling?)", c.Method)
		}
	}
	if !subscribed {
		t.Error("no dlflow.subscribe")
	}
}
