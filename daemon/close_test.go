package daemon_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/daemon"
)

// TestCloseLeavesNothing: closing a daemon with a download running, a
// subscribed WebSocket and an /events reader ends every goroutine it
// started, and the active task is active again at the next start.
func TestCloseLeavesNothing(t *testing.T) {
	o := startOrigin(t, origin.Options{Size: 1 << 20, Files: 1, RateLimit: 64 << 10})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	opts := daemon.Options{Dir: t.TempDir(), Secret: secret, Jobs: 1, Session: filepath.Join(t.TempDir(), "s.db")}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	c := &rpcClient{http: srv.Client(), url: srv.URL + "/jsonrpc", tok: secret}
	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)})
	waitFor(t, 10*time.Second, "bytes in", func() bool {
		n, _ := strconv.Atoi(c.status(t, gid).CompletedLength)
		return n > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(c), &websocket.DialOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ws.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":1,"method":"dlflow.subscribe","params":["token:`+secret+`",{"interval_ms":100}]}`))
	ws.Read(ctx)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ws.CloseNow()
	srv.CloseClientConnections()
	srv.Close()
	c.http.CloseIdleConnections()

	d, err = daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(d.Handler())
	c.url, c.http = srv.URL+"/jsonrpc", srv.Client()
	if s := c.status(t, gid); s.Status != "active" {
		t.Errorf("after a clean stop the task is %q, want active again", s.Status)
	}
	c.must(t, nil, "aria2.remove", gid)
	waitFor(t, 10*time.Second, "the removal", func() bool { return c.status(t, gid).Status == "removed" })
	d.Close()
	srv.Close()
	c.http.CloseIdleConnections()
}
