package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/daemon"
)

func post(t *testing.T, url string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func numWaiting(t *testing.T, c *rpcClient) string {
	var st map[string]string
	c.must(t, &st, "aria2.getGlobalStat")
	return st["numWaiting"]
}

// TestUnauthorized: without the secret, or with a wrong one, every call
// is refused with aria2's "Unauthorized", also inside system.multicall,
// and nothing is queued.
func TestUnauthorized(t *testing.T) {
	_, c := newInProcess(t, daemon.Options{Jobs: 0})
	for _, tok := range []string{"", "wrong", secret + "x", strings.ToUpper(secret)} {
		bad := &rpcClient{http: c.http, url: c.url, tok: tok}
		for _, m := range []string{"aria2.addUri", "aria2.tellActive", "aria2.getGlobalOption", "aria2.noSuchMethod", "dlflow.subscribe"} {
			params := []any{}
			if m == "aria2.addUri" {
				params = append(params, []string{"http://127.0.0.1:9/x"})
			}
			_, e := bad.call(t, m, params...)
			if e == nil || e.Code != 1 || e.Message != "Unauthorized" {
				t.Errorf("token %q, %s: %+v, want code 1 Unauthorized", tok, m, e)
			}
		}
		var res []json.RawMessage
		bad.tok = ""
		bad.must(t, &res, "system.multicall", []map[string]any{{"methodName": "aria2.addUri", "params": []any{"token:" + tok, []string{"http://127.0.0.1:9/x"}}}})
		if len(res) != 1 || !strings.Contains(string(res[0]), "Unauthorized") {
			t.Errorf("multicall with token %q: %s", tok, res)
		}
	}
	if n := numWaiting(t, c); n != "0" {
		t.Errorf("%s tasks queued by unauthorized calls", n)
	}
	// Without a token list methods still answers, as aria2's does.
	anon := &rpcClient{http: c.http, url: c.url}
	var names []string
	anon.must(t, &names, "system.listMethods")
	if len(names) < 30 {
		t.Errorf("listMethods: %v", names)
	}
}

func TestSecretRequired(t *testing.T) {
	_, err := daemon.New(daemon.Options{Dir: t.TempDir(), Listen: "127.0.0.1:0", Session: filepath.Join(t.TempDir(), "s.db")})
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("a TCP daemon without a secret: %v", err)
	}
	d, err := daemon.New(daemon.Options{Dir: t.TempDir(), Listen: filepath.Join(t.TempDir(), "d.sock"), Session: filepath.Join(t.TempDir(), "s.db")})
	if err != nil {
		t.Fatalf("a unix-socket daemon without a secret: %v", err)
	}
	d.Close()
	_, err = daemon.New(daemon.Options{Dir: t.TempDir(), Secret: "s", AllowOrigins: []string{"*"}, Session: filepath.Join(t.TempDir(), "s.db")})
	if err == nil {
		t.Fatal("--allow-origin '*' was taken")
	}
}

// TestCrossOrigin: a page of another origin can neither POST nor open the
// WebSocket; the daemon's own origin and an allowed one can, and no
// response carries a CORS wildcard.
func TestCrossOrigin(t *testing.T) {
	d, err := daemon.New(daemon.Options{Dir: t.TempDir(), Secret: secret, Session: filepath.Join(t.TempDir(), "s.db"), AllowOrigins: []string{"https://ariang.example"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	defer d.Close()
	defer srv.Close()
	body := `{"jsonrpc":"2.0","id":1,"method":"aria2.getVersion","params":["token:` + secret + `"]}`
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		origin string
		status int
		acao   string
	}{
		{"", 200, ""},
		{"http://" + host, 200, ""},
		{"https://ariang.example", 200, "https://ariang.example"},
		{"http://evil.example", 403, ""},
		{"http://" + host + ".evil.example", 403, ""},
		{"null", 403, ""},
		{"https://ariang.example.evil", 403, ""},
	} {
		hdr := map[string]string{}
		if tc.origin != "" {
			hdr["Origin"] = tc.origin
		}
		resp, b := post(t, srv.URL+"/jsonrpc", hdr, body)
		if resp.StatusCode != tc.status || resp.Header.Get("Access-Control-Allow-Origin") != tc.acao {
			t.Errorf("POST from %q: %d, ACAO %q (%s); want %d, %q", tc.origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), b, tc.status, tc.acao)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
		if tc.origin != "" {
			opts.HTTPHeader.Set("Origin", tc.origin)
		}
		ws, wresp, err := websocket.Dial(ctx, "ws://"+host+"/jsonrpc", opts)
		switch {
		case tc.status == 403 && (err == nil || wresp == nil || wresp.StatusCode != 403):
			t.Errorf("WebSocket from %q was not refused with 403: %v", tc.origin, err)
		case tc.status == 200 && err != nil:
			t.Errorf("WebSocket from %q: %v", tc.origin, err)
		}
		if ws != nil {
			ws.Close(websocket.StatusNormalClosure, "")
		}
		cancel()
	}
}

// TestPathsStayInside: dir and out from a client cannot leave --dir.
func TestPathsStayInside(t *testing.T) {
	d, c := newInProcess(t, daemon.Options{Jobs: 0})
	_ = d
	var root string
	var g map[string]string
	c.must(t, &g, "aria2.getGlobalOption")
	root = g["dir"]
	for _, opts := range []map[string]string{
		{"out": "../x"}, {"out": "/etc/passwd"}, {"out": "a/../../x"}, {"out": ".dlflow/session.db"},
		{"dir": "/etc"}, {"dir": "../.."}, {"dir": root + "/../x"}, {"dir": ".dlflow"}, {"dir": "a\x00b"},
		{"split": "0"}, {"split": "65"}, {"split": "many"}, {"max-connection-per-server": "-1"},
		{"checksum": "sha-256=zz"}, {"max-download-limit": "-5"}, {"header": "Range: bytes=0-"}, {"header": "X: a\r\nInjected: b"},
		{"pause": "maybe"},
	} {
		_, e := c.call(t, "aria2.addUri", []string{"http://127.0.0.1:9/x"}, opts)
		if e == nil || e.Code != 1 {
			t.Errorf("addUri with %q was taken", opts)
		}
	}
	for _, uri := range []string{"file:///etc/passwd", "ftp://127.0.0.1/x", "/etc/passwd", "http://"} {
		if _, e := c.call(t, "aria2.addUri", []string{uri}); e == nil {
			t.Errorf("addUri %q was taken", uri)
		}
	}
	if _, e := c.call(t, "aria2.addMetalink", "/etc/passwd"); e == nil {
		t.Error("addMetalink took a path")
	}
	if n := numWaiting(t, c); n != "0" {
		t.Errorf("%s tasks queued by refused calls", n)
	}
	// Inside: a relative dir, and the root's own path, absolute.
	c.must(t, nil, "aria2.addUri", []string{"http://127.0.0.1:9/x"}, map[string]string{"dir": "sub/dir", "out": "a/b.bin"})
	c.must(t, nil, "aria2.addUri", []string{"http://127.0.0.1:9/x"}, map[string]string{"dir": root + "/sub"})
	if n := numWaiting(t, c); n != "2" {
		t.Errorf("%s tasks queued, want 2", n)
	}
}

// TestSymlinkDirRefused: a directory of the tree that is a symlink (to
// outside --dir) fails the task before any byte is fetched or written.
func TestSymlinkDirRefused(t *testing.T) {
	o := startOrigin(t, origin.Options{Size: 4096, Files: 1})
	d, c := newInProcess(t, daemon.Options{Jobs: 1})
	var g map[string]string
	c.must(t, &g, "aria2.getGlobalOption")
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(g["dir"], "link")); err != nil {
		t.Fatal(err)
	}
	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)}, map[string]string{"dir": "link/deeper", "out": "x.bin"})
	waitFor(t, 10*time.Second, "the task to end", func() bool { return c.status(t, gid).Status == "error" })
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 || o.Stats().GETs != 0 {
		t.Errorf("through the symlink: %d entries written outside, %d GETs", len(entries), o.Stats().GETs)
	}
	_ = d
}

// TestHugeRequests: a multicall or a batch of more than 1,000 calls, and a
// body over 16 MiB, are refused whole.
func TestHugeRequests(t *testing.T) {
	_, c := newInProcess(t, daemon.Options{Jobs: 0})
	calls := make([]map[string]any, 1001)
	for i := range calls {
		calls[i] = map[string]any{"methodName": "aria2.addUri", "params": []any{"token:" + secret, []string{fmt.Sprintf("http://127.0.0.1:9/%d", i)}}}
	}
	anon := &rpcClient{http: c.http, url: c.url}
	if _, e := anon.call(t, "system.multicall", calls); e == nil {
		t.Error("a multicall of 1,001 calls was taken")
	}
	batch := make([]map[string]any, 1001)
	for i := range batch {
		batch[i] = map[string]any{"jsonrpc": "2.0", "id": i, "method": "aria2.getVersion", "params": []any{"token:" + secret}}
	}
	b, _ := json.Marshal(batch)
	if resp, body := post(t, c.url, nil, string(b)); resp.StatusCode != 400 || !strings.Contains(body, "-32600") {
		t.Errorf("a batch of 1,001: %d %.200s", resp.StatusCode, body)
	}
	big := `{"jsonrpc":"2.0","id":1,"method":"aria2.addMetalink","params":["token:` + secret + `","` + strings.Repeat("A", 17<<20) + `"]}`
	if resp, _ := post(t, c.url, nil, big); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 17 MiB body: %d", resp.StatusCode)
	}
	if n := numWaiting(t, c); n != "0" {
		t.Errorf("%s tasks queued", n)
	}
}

// TestMalformed: what is not JSON-RPC gets aria2's errors.
func TestMalformed(t *testing.T) {
	_, c := newInProcess(t, daemon.Options{Jobs: 0})
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{`, -32700},
		{`not json`, -32700},
		{`123`, -32600},
		{`{"jsonrpc":"2.0","method":"aria2.getVersion"}`, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":7}`, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"aria2.getVersion","params":{"a":1}}`, -32602},
		{`{"jsonrpc":"2.0","id":1,"method":"aria2.tellStatus","params":["token:` + secret + `",5]}`, 1},
		{`{"jsonrpc":"2.0","id":1,"method":"aria2.tellStatus","params":["token:` + secret + `","zz"]}`, 1},
		{`{"jsonrpc":"2.0","id":1,"method":"aria2.tellWaiting","params":["token:` + secret + `","0",1]}`, 1},
	} {
		_, body := post(t, c.url, nil, tc.body)
		var r struct {
			Error *rpcErr `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil || r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("%.60s: %s, want code %d", tc.body, body, tc.code)
		}
	}
}

// TestNotificationsNeedToken: a WebSocket that never sent the secret gets
// no notification; one that did gets them.
func TestNotificationsNeedToken(t *testing.T) {
	o := startOrigin(t, origin.Options{Size: 4096, Files: 1})
	d, c := newInProcess(t, daemon.Options{Jobs: 1})
	_ = d
	wsURL := "ws" + strings.TrimPrefix(strings.TrimSuffix(c.url, "/jsonrpc"), "http") + "/jsonrpc"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	authed, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer authed.CloseNow()
	anon, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.CloseNow()
	wsCall := func(ws *websocket.Conn, msg string) string {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if r := wsCall(authed, `{"jsonrpc":"2.0","id":1,"method":"aria2.getVersion","params":["token:`+secret+`"]}`); !strings.Contains(r, "1.37.0") {
		t.Fatalf("getVersion over the WebSocket: %s", r)
	}
	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)})
	_, b, err := authed.Read(ctx)
	if err != nil || !strings.Contains(string(b), `"aria2.onDownloadStart"`) || !strings.Contains(string(b), gid) {
		t.Fatalf("the authenticated WebSocket got %s, %v; want onDownloadStart of %s", b, err, gid)
	}
	waitFor(t, 10*time.Second, "the download", func() bool { return c.status(t, gid).Status == "complete" })
	// Anything queued for anon would come before this answer.
	if r := wsCall(anon, `{"jsonrpc":"2.0","id":"x","method":"system.listNotifications"}`); !strings.Contains(r, `"id":"x"`) {
		t.Errorf("the WebSocket without the secret got %s first", r)
	}
}
