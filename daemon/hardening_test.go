package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	bolt "go.etcd.io/bbolt"

	"github.com/dlflow/dlflow/daemon"
)

func newGuarded(t *testing.T, opts daemon.Options) (*daemon.Daemon, *httptest.Server) {
	t.Helper()
	opts.Dir, opts.Secret = t.TempDir(), secret
	opts.Session = filepath.Join(t.TempDir(), "s.db")
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	opts.Extra = map[string]http.Handler{"/": page, "/metrics": page}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	return d, srv
}

// TestDNSRebinding: a page of evil.example whose name resolves to the
// loopback sends Origin and Host both evil.example:PORT. The origin rule
// alone lets it in; the Host check refuses it on every route (the RPC,
// the WebSocket, /events, the page, /metrics), while IP addresses,
// localhost and --allow-host names pass.
func TestDNSRebinding(t *testing.T) {
	_, srv := newGuarded(t, daemon.Options{AllowHosts: []string{"dl.example.com"}, AllowOrigins: []string{"https://ariang.example"}})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	body := `{"jsonrpc":"2.0","id":1,"method":"system.listMethods","params":[]}`
	for _, tc := range []struct {
		host string
		want int
	}{
		{"evil.example:" + port, 403},
		{"EVIL.example.:" + port, 403},
		{"127.0.0.1.evil.example:" + port, 403},
		{"localhost.evil.example:" + port, 403},
		{"127.0.0.1:" + port, 200},
		{"[::1]:" + port, 200},
		{"localhost:" + port, 200},
		{"LOCALHOST", 200},
		{"dl.example.com", 200},
		{"ariang.example", 200},
	} {
		scheme := "http://" + tc.host
		for _, path := range []string{"/jsonrpc", "/", "/metrics", "/events?token=" + secret} {
			method, rb := http.MethodGet, ""
			if path == "/jsonrpc" {
				method, rb = http.MethodPost, body
			}
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(rb))
			req.Host = tc.host
			req.Header.Set("Origin", scheme)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			got := resp.StatusCode
			resp.Body.Close()
			cancel()
			if got != tc.want {
				t.Errorf("%s %s with Host %q: %d, want %d", method, path, tc.host, got, tc.want)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, resp, err := websocket.Dial(ctx, srv.URL+"/jsonrpc", &websocket.DialOptions{Host: tc.host, HTTPHeader: http.Header{"Origin": {scheme}}})
		if tc.want == 403 && (err == nil || resp == nil || resp.StatusCode != 403) {
			t.Errorf("WebSocket with Host %q was not refused with 403: %v", tc.host, err)
		}
		if tc.want == 200 && err != nil {
			t.Errorf("WebSocket with Host %q: %v", tc.host, err)
		}
		if ws != nil {
			ws.Close(websocket.StatusNormalClosure, "")
		}
		cancel()
	}
	if _, err := daemon.New(daemon.Options{Dir: t.TempDir(), Secret: secret, Session: filepath.Join(t.TempDir(), "s.db"), AllowHosts: []string{"*"}}); err == nil {
		t.Error("--allow-host '*' was taken")
	}
}

// TestUnauthedStreamsBounded: WebSockets that never show the secret are
// capped, so strangers cannot hold unbounded connections (and goroutines)
// open; one with the secret still gets in, and a refused one's slot comes
// back when another closes.
func TestUnauthedStreamsBounded(t *testing.T) {
	_, srv := newGuarded(t, daemon.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/jsonrpc"
	var open []*websocket.Conn
	defer func() {
		for _, ws := range open {
			ws.CloseNow()
		}
	}()
	for i := range daemon.MaxUnauthedStreams {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, ws)
	}
	ws, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		if ws != nil {
			ws.CloseNow()
		}
		t.Fatalf("connection %d without the secret: %v, want 503", daemon.MaxUnauthedStreams+1, err)
	}
	authed, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + secret}}})
	if err != nil {
		t.Fatalf("a WebSocket with the secret, while strangers hold their limit: %v", err)
	}
	open = append(open, authed)
	// One of them shows the secret in a call: its slot is freed.
	call := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"aria2.getVersion","params":["token:%s"]}`, secret)
	if err := open[0].Write(ctx, websocket.MessageText, []byte(call)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := open[0].Read(ctx); err != nil || !strings.Contains(string(b), `"version"`) {
		t.Fatalf("getVersion: %s, %v", b, err)
	}
	ws, _, err = websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("after one authenticated: %v", err)
	}
	open = append(open, ws)
}

// TestSlowBody: a POST whose body comes byte by byte (slowloris) is cut
// after the body timeout instead of holding its connection forever.
func TestSlowBody(t *testing.T) {
	// Put back after the server's Cleanup (cleanups run last first).
	old := daemon.SetBodyTimeout(300 * time.Millisecond)
	t.Cleanup(func() { daemon.SetBodyTimeout(old) })
	_, srv := newGuarded(t, daemon.Options{})
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the daemon still waits for the body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413 (unreadable body)", resp.StatusCode)
	}
}

// TestSessionNewerVersion: a session stamped by a later dlflow is refused
// with ErrSessionVersion, and left as it was; a new one is stamped and
// opens again.
func TestSessionNewerVersion(t *testing.T) {
	session := filepath.Join(t.TempDir(), "s.db")
	db, err := bolt.Open(session, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("version"), binary.BigEndian.AppendUint64(nil, 2))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	before := fileSHA256(t, session)
	_, err = daemon.New(daemon.Options{Dir: t.TempDir(), Secret: secret, Session: session})
	if !errors.Is(err, daemon.ErrSessionVersion) {
		t.Fatalf("a session of version 2: %v, want ErrSessionVersion", err)
	}
	if after := fileSHA256(t, session); after != before {
		t.Error("the refused session was changed")
	}
	fresh := filepath.Join(t.TempDir(), "s.db")
	for range 2 {
		d, err := daemon.New(daemon.Options{Dir: t.TempDir(), Secret: secret, Session: fresh})
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
}

// TestSessionCorrupt: a session that is not a bbolt file fails New with
// an error naming it; neither it nor the downloads in --dir are touched.
func TestSessionCorrupt(t *testing.T) {
	dir, session := t.TempDir(), filepath.Join(t.TempDir(), "s.db")
	junk := bytes.Repeat([]byte("not a bbolt file "), 1000)
	if err := os.WriteFile(session, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kept.bin")
	if err := os.WriteFile(out, []byte("a finished download"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := daemon.New(daemon.Options{Dir: dir, Secret: secret, Session: session})
	if err == nil || !strings.Contains(err.Error(), session) {
		t.Fatalf("a corrupt session: %v, want an error naming %s", err, session)
	}
	if b, _ := os.ReadFile(session); !bytes.Equal(b, junk) {
		t.Error("the corrupt session was changed")
	}
	if b, _ := os.ReadFile(out); string(b) != "a finished download" {
		t.Errorf("the download in --dir: %q", b)
	}
}

// TestSessionInsideDir: a --session where clients write (inside --dir,
// outside .dlflow) is refused: an out of "session.db" would replace it.
func TestSessionInsideDir(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []string{filepath.Join(dir, "session.db"), filepath.Join(dir, "sub", "s.db")} {
		if _, err := daemon.New(daemon.Options{Dir: dir, Secret: secret, Session: s}); err == nil || !strings.Contains(err.Error(), "inside --dir") {
			t.Errorf("--session %s: %v", s, err)
		}
	}
	d, err := daemon.New(daemon.Options{Dir: dir, Secret: secret, Session: filepath.Join(dir, ".dlflow", "other.db")})
	if err != nil {
		t.Fatalf("a session in .dlflow: %v", err)
	}
	d.Close()
}

// TestWindowsStylePaths: on every OS a dir or out written for Windows
// (a drive letter, a UNC path, backslashes) is refused, as is a name
// longer than file systems take.
func TestWindowsStylePaths(t *testing.T) {
	_, c := newInProcess(t, daemon.Options{Jobs: 0})
	for _, opts := range []map[string]string{
		{"out": `C:\Windows\x.dll`}, {"out": `c:x`}, {"out": `\\server\share\x`}, {"out": `..\..\x`},
		{"dir": `C:\`}, {"dir": `\\server\share`}, {"dir": `a\..\..\b`}, {"out": strings.Repeat("n", 256)},
		{"dir": strings.Repeat("d/", 2100)},
	} {
		if _, e := c.call(t, "aria2.addUri", []string{"http://127.0.0.1:9/x"}, opts); e == nil || e.Code != 1 {
			t.Errorf("addUri with %q was taken", opts)
		}
	}
	if n := numWaiting(t, c); n != "0" {
		t.Errorf("%s tasks queued by refused calls", n)
	}
}

// TestLargeBodiesBounded: large POST bodies being read at once are held
// to a budget of bytes (strangers sending many 16 MiB bodies cannot take
// the memory): past it a large body waits, then gets 503, while small
// calls are still answered; room comes back when a body is done.
func TestLargeBodiesBounded(t *testing.T) {
	t.Cleanup(daemon.SetBodyBudget(2<<20, 300*time.Millisecond)) // after the server's
	_, srv := newGuarded(t, daemon.Options{})
	addr := strings.TrimPrefix(srv.URL, "http://")
	var holders []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// 1 MiB declared, one byte sent: the read holds its room.
		fmt.Fprintf(c, "POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n{", 1<<20)
		holders = append(holders, c)
	}
	big := `{"jsonrpc":"2.0","id":1,"method":"aria2.getVersion","params":["token:` + secret + `"]}` + strings.Repeat(" ", 1<<20)
	small := big[:len(big)-1<<20]
	var resp *http.Response
	var b string
	// The holders' requests reach the handler in their own time: retry
	// until the budget is seen full, a bounded number of times.
	for i := 0; i < 100; i++ {
		resp, b = post(t, srv.URL+"/jsonrpc", nil, big)
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a large body past the budget: %d %s, want 503", resp.StatusCode, b)
	}
	if resp, b := post(t, srv.URL+"/jsonrpc", nil, small); resp.StatusCode != 200 || !strings.Contains(b, `"version"`) {
		t.Fatalf("a small call while the budget is full: %d %s", resp.StatusCode, b)
	}
	for _, c := range holders {
		c.Close()
	}
	for i := 0; i < 100; i++ {
		resp, b = post(t, srv.URL+"/jsonrpc", nil, big)
		if resp.StatusCode == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp.StatusCode != 200 || !strings.Contains(b, `"version"`) {
		t.Fatalf("a large body once the holders are gone: %d %s", resp.StatusCode, b)
	}
}
