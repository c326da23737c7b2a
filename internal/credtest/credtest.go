// Package credtest starts real HTTP and HTTPS servers on loopback for the
// tests of where credentials go: each serves one file (with ranges, as a
// download needs) and records the headers of every request it receives,
// so that a test can say which origin saw which credential.
//
// Pair starts an https and a plain http server on the same host and port
// (one listener; the first byte of a connection tells a TLS handshake from
// a plain request): two origins that differ only in their scheme, the case
// a comparison of hosts alone misses.
package credtest

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ETag is the validator every server sends, so that one serves as the
// mirror of another.
const ETag = `"credtest-1"`

// modTime is the Last-Modified of every server's file, for the same reason.
var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Request is what a server saw of one request.
type Request struct {
	Method, Path string
	Header       http.Header
}

// Server is one origin: it serves Content at every path but the ones given
// to Redirect or Serve, and records each request.
type Server struct {
	// URL is the origin, such as https://127.0.0.1:PORT, without a path.
	URL string

	content []byte
	srv     *httptest.Server

	mu        sync.Mutex
	reqs      []Request
	redirects map[string]string
	bodies    map[string][]byte
	holds     map[string]<-chan struct{}
	seen      map[string]int
	asked     map[string]chan struct{}
	ranOut    int // holds that ended after 10 s, their release not closed
}

func newServer(content []byte) *Server {
	return &Server{content: content, redirects: map[string]string{}, bodies: map[string][]byte{},
		holds: map[string]<-chan struct{}{}, seen: map[string]int{}, asked: map[string]chan struct{}{}}
}

// ServeHTTP records r and answers it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
	to, redirect := s.redirects[r.URL.Path]
	body, served := s.bodies[r.URL.Path]
	s.seen[r.URL.Path]++
	hold, held := s.holds[r.URL.Path]
	held = held && s.seen[r.URL.Path] > 1
	if c, ok := s.asked[r.URL.Path]; ok && s.seen[r.URL.Path] == 1 {
		close(c)
	}
	s.mu.Unlock()
	if held {
		select { // bounded: a test never waits on its own origin forever
		case <-hold:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
			s.mu.Lock()
			s.ranOut++
			s.mu.Unlock()
		}
	}
	switch {
	case redirect:
		http.Redirect(w, r, to, http.StatusFound)
	case served:
		_, _ = w.Write(body)
	default:
		w.Header().Set("ETag", ETag)
		http.ServeContent(w, r, "file.bin", modTime, bytes.NewReader(s.content))
	}
}

// Redirect makes a request for path answer 302 to the URL to.
func (s *Server) Redirect(path, to string) {
	s.mu.Lock()
	s.redirects[path] = to
	s.mu.Unlock()
}

// Serve makes a request for path answer 200 with body.
func (s *Server) Serve(path string, body []byte) {
	s.mu.Lock()
	s.bodies[path] = body
	s.mu.Unlock()
}

// Hold makes every request for path but the first (a probe's) wait
// until release is closed (at most 10 s), so that a test can make sure
// another source is asked before this one answers.
func (s *Server) Hold(path string, release <-chan struct{}) {
	s.mu.Lock()
	s.holds[path] = release
	s.mu.Unlock()
}

// RanOut returns how many held requests were answered because their hold
// ran out (10 s) before its release was closed.
func (s *Server) RanOut() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ranOut
}

// Asked returns a channel closed at the first request for path.
func (s *Server) Asked(path string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.asked[path]
	if !ok {
		c = make(chan struct{})
		if s.seen[path] > 0 {
			close(c)
		}
		s.asked[path] = c
	}
	return c
}

// Requests returns what the server saw so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Start starts a plain http server on host (such as 127.0.0.2), on a free
// port, closed when the test ends.
func Start(t testing.TB, host string, content []byte) *Server {
	return start(t, host, content, false)
}

// StartTLS starts an https server like Start. Its certificate is
// httptest's: clients skip its verification (http.insecure).
func StartTLS(t testing.TB, host string, content []byte) *Server {
	return start(t, host, content, true)
}

func start(t testing.TB, host string, content []byte, tls bool) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(content)
	s.srv = httptest.NewUnstartedServer(s)
	s.srv.Listener.Close()
	s.srv.Listener = ln
	if tls {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Pair starts an https and a plain http server on 127.0.0.1 and the same
// port, both serving content: https://127.0.0.1:P and http://127.0.0.1:P.
func Pair(t testing.TB, content []byte) (secure, plain *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsL, plainL := newChanListener(ln.Addr()), newChanListener(ln.Addr())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		demux(ln, tlsL, plainL)
	}()
	secure, plain = newServer(content), newServer(content)
	secure.srv, plain.srv = httptest.NewUnstartedServer(secure), httptest.NewUnstartedServer(plain)
	secure.srv.Listener.Close()
	plain.srv.Listener.Close()
	secure.srv.Listener, plain.srv.Listener = tlsL, plainL
	secure.srv.StartTLS()
	plain.srv.Start()
	secure.URL, plain.URL = secure.srv.URL, plain.srv.URL
	if strings.TrimPrefix(secure.URL, "https://") != strings.TrimPrefix(plain.URL, "http://") {
		t.Fatalf("pair on two addresses: %s and %s", secure.URL, plain.URL)
	}
	t.Cleanup(func() {
		secure.srv.Close()
		plain.srv.Close()
		ln.Close()
		wg.Wait()
	})
	return secure, plain
}

// demux hands each connection of ln to tlsL when its first byte opens a
// TLS handshake (0x16), else to plainL, until ln is closed.
func demux(ln net.Listener, tlsL, plainL *chanListener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A client that sends nothing is dropped, so that no
			// goroutine outlives the test.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			first, err := br.Peek(1)
			_ = c.SetReadDeadline(time.Time{})
			if err != nil {
				c.Close()
				return
			}
			to := plainL
			if first[0] == 0x16 {
				to = tlsL
			}
			to.deliver(&peekedConn{Conn: c, r: br})
		}()
	}
}

// peekedConn is a connection whose first bytes wait in r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed by demux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, errors.New("listener closed")
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
