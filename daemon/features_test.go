package daemon_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/daemon"
)

func wsURL(c *rpcClient) string {
	return "ws" + strings.TrimPrefix(c.url, "http")
}

// wsMessage is a message of the daemon over the WebSocket.
type wsMessage struct {
	ID     json.RawMessage   `json:"id"`
	Method string            `json:"method"`
	Params []json.RawMessage `json:"params"`
	Result json.RawMessage   `json:"result"`
}

// TestPauseActiveResumes: pausing an active task stops it with its partial
// file; unpausing resumes it from there (the origin is asked only for the
// rest), and the WebSocket hears the pause, the starts and the completion.
func TestPauseActiveResumes(t *testing.T) {
	const size = 1 << 20
	o := startOrigin(t, origin.Options{Size: size, Seed: 3, Files: 1, RateLimit: 256 << 10})
	d, c := newInProcess(t, daemon.Options{Jobs: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":"v","method":"aria2.getVersion","params":["token:`+secret+`"]}`))

	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)}, map[string]string{"out": "p.bin"})
	waitFor(t, 20*time.Second, "200 KiB in", func() bool {
		n, _ := strconv.Atoi(c.status(t, gid).CompletedLength)
		return n >= 200<<10
	})
	c.must(t, nil, "aria2.pause", gid)
	waitFor(t, 10*time.Second, "the task to be paused", func() bool { return c.status(t, gid).Status == "paused" })
	if s := d.Engine().MetricsSnapshot(); s.Active != 0 || s.Waiting != 1 {
		t.Errorf("snapshot while paused: %+v", s)
	}
	c.must(t, nil, "aria2.unpause", gid)
	waitFor(t, 30*time.Second, "the task to complete", func() bool { return c.status(t, gid).Status == "complete" })
	if got, want := fileSHA256(t, filepath.Join(d.Engine().Root(), "p.bin")), origin.SHA256Hex(size, origin.FileSeed(3, 0)); got != want {
		t.Errorf("sha256 %s, want %s", got, want)
	}
	var gets []origin.Request
	for _, r := range o.Log() {
		if r.Method == "GET" {
			gets = append(gets, r)
		}
	}
	if len(gets) < 2 || !strings.HasPrefix(gets[len(gets)-1].Range, "bytes=") || strings.HasPrefix(gets[len(gets)-1].Range, "bytes=0-") {
		t.Errorf("the resumed run's requests: %+v", gets)
	}
	var seen []string
	for len(seen) < 4 {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("WebSocket: %v after %v", err, seen)
		}
		var m wsMessage
		json.Unmarshal(b, &m)
		if m.Method != "" && strings.Contains(string(b), gid) {
			seen = append(seen, m.Method)
		}
	}
	want := []string{"aria2.onDownloadStart", "aria2.onDownloadPause", "aria2.onDownloadStart", "aria2.onDownloadComplete"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("notifications %v, want %v", seen, want)
	}
}

// TestSubscribeAndEvents: dlflow.subscribe pushes the tasks with their
// sources and lanes at the interval asked; /events sends the same as
// Server-Sent Events, and refuses a request without the secret.
func TestSubscribeAndEvents(t *testing.T) {
	o := startOrigin(t, origin.Options{Size: 4 << 20, Files: 1, RateLimit: 512 << 10})
	_, c := newInProcess(t, daemon.Options{Jobs: 1})
	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)}, map[string]string{"split": "2"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":"s","method":"dlflow.subscribe","params":["token:`+secret+`",{"interval_ms":100}]}`))
	var pushes int
	var first, last time.Time
	for pushes < 5 {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m wsMessage
		json.Unmarshal(b, &m)
		if string(m.ID) == `"s"` && string(m.Result) != `"OK"` {
			t.Fatalf("subscribe: %s", b)
		}
		if m.Method != "dlflow.onProgress" {
			continue
		}
		var p struct {
			Tasks []struct {
				GID     string            `json:"gid"`
				Status  string            `json:"status"`
				Sources []json.RawMessage `json:"sources"`
				Lanes   []json.RawMessage `json:"lanes"`
			} `json:"tasks"`
			Global map[string]string `json:"global"`
		}
		if err := json.Unmarshal(m.Params[0], &p); err != nil || len(p.Tasks) != 1 || p.Tasks[0].GID != gid || p.Global["numActive"] == "" {
			t.Fatalf("push %s: %v", b, err)
		}
		if p.Tasks[0].Status == "active" && (p.Tasks[0].Sources == nil || p.Tasks[0].Lanes == nil) {
			t.Fatalf("push without sources or lanes: %s", b)
		}
		pushes++
		if pushes == 1 {
			first = time.Now()
		}
		last = time.Now()
	}
	if gap := last.Sub(first) / 4; gap < 50*time.Millisecond || gap > 2*time.Second {
		t.Errorf("pushes every %v, asked 100ms", gap)
	}

	events := strings.TrimSuffix(c.url, "/jsonrpc") + "/events?interval_ms=100"
	if resp, err := http.Get(events); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/events without the secret: %v %v", resp, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, events, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("/events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var events2 int
	for sc.Scan() && events2 < 2 {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var p map[string]json.RawMessage
			if err := json.Unmarshal([]byte(data), &p); err != nil || p["tasks"] == nil || p["global"] == nil {
				t.Fatalf("event %s: %v", data, err)
			}
			events2++
		}
	}
	if events2 < 2 {
		t.Errorf("%d events read", events2)
	}
}

// TestAddMetalink: a Metalink's content (base64) queues a task per file,
// each verified against its hash.
func TestAddMetalink(t *testing.T) {
	const size = 64 << 10
	o := startOrigin(t, origin.Options{Size: size, Seed: 5, Files: 2})
	d, c := newInProcess(t, daemon.Options{Jobs: 2})
	var files strings.Builder
	for i := range 2 {
		fmt.Fprintf(&files, `<file name="m%d.bin"><size>%d</size><hash type="sha-256">%s</hash><url>%s</url></file>`, i, size, origin.SHA256Hex(size, origin.FileSeed(5, i)), o.FileURL(i))
	}
	doc := `<?xml version="1.0" encoding="UTF-8"?><metalink xmlns="urn:ietf:params:xml:ns:metalink">` + files.String() + `</metalink>`
	var gids []string
	c.must(t, &gids, "aria2.addMetalink", base64.StdEncoding.EncodeToString([]byte(doc)))
	if len(gids) != 2 {
		t.Fatalf("addMetalink: %v", gids)
	}
	for i, g := range gids {
		waitFor(t, 20*time.Second, "the metalink's files", func() bool {
			s := c.status(t, g)
			if s.Status == "error" {
				t.Fatalf("%s: %s", g, s.ErrorMessage)
			}
			return s.Status == "complete"
		})
		name := fmt.Sprintf("m%d.bin", i)
		if got := fileSHA256(t, filepath.Join(d.Engine().Root(), name)); got != origin.SHA256Hex(size, origin.FileSeed(5, i)) {
			t.Errorf("%s: wrong sha256", name)
		}
	}
}

// TestQueueMethods: changePosition, tellWaiting backwards, remove (a
// waiting task leaves no result, as in aria2), the global options (which
// last until a restart, as aria2's), tellStopped, removeDownloadResult and
// purgeDownloadResult.
func TestQueueMethods(t *testing.T) {
	o := startOrigin(t, origin.Options{Size: 1024, Files: 1})
	state := t.TempDir()
	opts := daemon.Options{Dir: t.TempDir(), Secret: secret, Session: filepath.Join(state, "s.db")}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	c := &rpcClient{http: http.DefaultClient, tok: secret, url: serve(t, d) + "/jsonrpc"}
	var g []string
	for i := range 4 {
		var gid string
		c.must(t, &gid, "aria2.addUri", []string{fmt.Sprintf("%s/missing/%d", o.BaseURL(), i)}, nil, i) // each at its index
		g = append(g, gid)
	}
	var pos int
	c.must(t, &pos, "aria2.changePosition", g[3], -10, "POS_CUR")
	c.must(t, &pos, "aria2.changePosition", g[0], 0, "POS_END")
	var w []status
	c.must(t, &w, "aria2.tellWaiting", 0, 10, []string{"gid"})
	if got, want := gids(w), []string{g[3], g[1], g[2], g[0]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("queue %v, want %v", got, want)
	}
	c.must(t, &w, "aria2.tellWaiting", -1, 2, []string{"gid"})
	if got, want := gids(w), []string{g[0], g[2]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tellWaiting(-1, 2) %v, want %v", got, want)
	}
	c.must(t, nil, "aria2.remove", g[1])
	if _, e := c.call(t, "aria2.tellStatus", g[1]); e == nil || !strings.Contains(e.Message, "is not found") {
		t.Errorf("a removed waiting task: %+v, want not found", e)
	}
	c.must(t, nil, "aria2.changeGlobalOption", map[string]string{"max-concurrent-downloads": "0", "max-overall-download-limit": "1M"})
	var gopt map[string]string
	c.must(t, &gopt, "aria2.getGlobalOption")
	if gopt["max-overall-download-limit"] != strconv.Itoa(1<<20) {
		t.Errorf("global options: %v", gopt)
	}
	d.Close()

	opts.Jobs = 1
	if d, err = daemon.New(opts); err != nil {
		t.Fatal(err)
	}
	c.url = serve(t, d) + "/jsonrpc"
	c.must(t, &gopt, "aria2.getGlobalOption")
	if gopt["max-concurrent-downloads"] != "1" || gopt["max-overall-download-limit"] != "0" {
		t.Errorf("global options after a restart: %v, want the flags' (as aria2)", gopt)
	}
	// One at a time, in the queue's order, each a 404.
	var stopped []status
	waitFor(t, 20*time.Second, "three ended tasks", func() bool {
		c.must(t, &stopped, "aria2.tellStopped", 0, 10, []string{"gid", "status", "errorCode"})
		return len(stopped) == 3
	})
	if got, want := gids(stopped), []string{g[3], g[2], g[0]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tellStopped %v, want %v", got, want)
	}
	for _, s := range stopped {
		if s.Status != "error" || s.ErrorCode != "3" {
			t.Errorf("a 404: %+v, want error 3 (aria2's resource not found)", s)
		}
	}
	c.must(t, nil, "aria2.removeDownloadResult", g[2])
	c.must(t, &stopped, "aria2.tellStopped", 0, 10)
	if got, want := gids(stopped), []string{g[3], g[0]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after removeDownloadResult: %v, want %v", got, want)
	}
	c.must(t, nil, "aria2.purgeDownloadResult")
	c.must(t, &stopped, "aria2.tellStopped", 0, 10)
	if len(stopped) != 0 {
		t.Errorf("after purge: %v", gids(stopped))
	}
}

// TestChangeOptionActive: a new max-download-limit on an active task
// restarts it with the limit, resuming from its partial file (the origin
// is asked for the rest only), and getOption shows it.
func TestChangeOptionActive(t *testing.T) {
	const size = 2 << 20
	o := startOrigin(t, origin.Options{Size: size, Seed: 4, Files: 1, RateLimit: 512 << 10})
	d, c := newInProcess(t, daemon.Options{Jobs: 1})
	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)}, map[string]string{"out": "c.bin"})
	waitFor(t, 20*time.Second, "256 KiB in", func() bool {
		n, _ := strconv.Atoi(c.status(t, gid).CompletedLength)
		return n >= 256<<10
	})
	c.must(t, nil, "aria2.changeOption", gid, map[string]string{"max-download-limit": "4M"})
	var opt map[string]string
	c.must(t, &opt, "aria2.getOption", gid)
	if opt["max-download-limit"] != strconv.Itoa(4<<20) || opt["out"] != "c.bin" {
		t.Errorf("getOption after the change: %v", opt)
	}
	if _, e := c.call(t, "aria2.changeOption", gid, map[string]string{"split": "100"}); e == nil {
		t.Error("changeOption took split=100")
	}
	waitFor(t, 30*time.Second, "the task to complete", func() bool { return c.status(t, gid).Status == "complete" })
	if got := fileSHA256(t, filepath.Join(d.Engine().Root(), "c.bin")); got != origin.SHA256Hex(size, origin.FileSeed(4, 0)) {
		t.Errorf("sha256 %s", got)
	}
	var starts []string
	for _, r := range o.Log() {
		if r.Method == "GET" {
			starts = append(starts, r.Range)
		}
	}
	if len(starts) < 2 || starts[len(starts)-1] == "bytes=0-" {
		t.Errorf("the restart did not resume: requests %q", starts)
	}
}

// TestAllowedOriginPreflight: an allowed origin's preflight is answered
// with its own origin (never a wildcard); another origin's is refused.
func TestAllowedOriginPreflight(t *testing.T) {
	d, err := daemon.New(daemon.Options{Dir: t.TempDir(), Secret: secret, Session: filepath.Join(t.TempDir(), "s.db"), AllowOrigins: []string{"https://AriaNG.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, d) + "/jsonrpc"
	for origin, want := range map[string]int{"https://ariang.example": http.StatusNoContent, "https://other.example": http.StatusForbidden} {
		req, _ := http.NewRequest(http.MethodOptions, url, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		acao := resp.Header.Get("Access-Control-Allow-Origin")
		if resp.StatusCode != want || (want == http.StatusNoContent) != (acao == origin) {
			t.Errorf("preflight from %s: %d, ACAO %q", origin, resp.StatusCode, acao)
		}
	}
}

// TestShutdown: aria2.shutdown answers OK, then Serve returns; the queue
// is there at the next start.
func TestShutdown(t *testing.T) {
	opts := daemon.Options{Dir: t.TempDir(), Secret: secret, Session: filepath.Join(t.TempDir(), "s.db")}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.ServeListener(context.Background(), ln) }()
	c := &rpcClient{http: &http.Client{Timeout: 10 * time.Second}, url: "http://" + ln.Addr().String() + "/jsonrpc", tok: secret}
	var gid, ok string
	c.must(t, &gid, "aria2.addUri", []string{"http://127.0.0.1:9/x"})
	c.must(t, &ok, "aria2.shutdown")
	if ok != "OK" {
		t.Errorf("shutdown answered %q", ok)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	d, err = daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	c.url, c.http = serve(t, d)+"/jsonrpc", http.DefaultClient
	if s := c.status(t, gid); s.Status != "waiting" {
		t.Errorf("after the shutdown the task is %q", s.Status)
	}
	if _, e := c.call(t, "aria2.shutdown"); e == nil {
		t.Error("shutdown of a daemon not serving was taken")
	}
}

// TestPauseDuringRestart: a pause that comes while a change of options
// restarts the task pauses it (aria2 takes it; it once answered "cannot
// be paused now").
func TestPauseDuringRestart(t *testing.T) {
	o := startOrigin(t, origin.Options{Size: 4 << 20, Files: 1, RateLimit: 256 << 10})
	_, c := newInProcess(t, daemon.Options{Jobs: 1})
	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)})
	waitFor(t, 20*time.Second, "bytes in", func() bool {
		n, _ := strconv.Atoi(c.status(t, gid).CompletedLength)
		return n > 64<<10
	})
	var res []json.RawMessage
	anon := &rpcClient{http: c.http, url: c.url}
	anon.must(t, &res, "system.multicall", []map[string]any{
		{"methodName": "aria2.changeOption", "params": []any{"token:" + secret, gid, map[string]string{"max-download-limit": "1M"}}},
		{"methodName": "aria2.pause", "params": []any{"token:" + secret, gid}},
	})
	if len(res) != 2 || string(res[1]) != `["`+gid+`"]` {
		t.Fatalf("changeOption then pause: %s", res)
	}
	waitFor(t, 20*time.Second, "the task to be paused", func() bool { return c.status(t, gid).Status == "paused" })
	c.must(t, nil, "aria2.unpause", gid)
	waitFor(t, 20*time.Second, "the task to run again", func() bool { return c.status(t, gid).Status == "active" })
}
