package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPath is the URL path of the file when Options.Path is empty.
const DefaultPath = "/file.bin"

// DefaultLastModified is the Last-Modified time used when
// Options.LastModified is zero.
var DefaultLastModified = time.Date(2024, time.January, 2, 3, 4, 5, 0, time.UTC)

// bufSize is the size of the pooled body buffers (and of each body write when
// no rate limit applies).
const bufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// Options configures a Server.
type Options struct {
	// Size is the size of the served file in bytes.
	Size int64
	// Seed selects the deterministic content (see Fill).
	Seed uint64
	// Path is the URL path of the file; default DefaultPath.
	Path string
	// ETag is the strong, quoted entity tag; default derived from Size and
	// Seed, e.g. "\"100000-2a\"".
	ETag string
	// LastModified defaults to DefaultLastModified. It is truncated to
	// seconds.
	LastModified time.Time
	// RateLimit limits each response body to this many bytes per second
	// (each connection gets its own budget); 0 means unlimited.
	RateLimit int64
	// ConnRateLimit caps the bytes per second written on each accepted
	// TCP connection, over all the responses it carries, headers included
	// (a token bucket per connection whose burst is about 1/32 s of
	// traffic, at most 16 KiB); 0 means no cap. RateLimit paces each
	// response body on its own, from its first byte; ConnRateLimit is a
	// link or CDN that limits connections: the requests of one connection
	// share its rate, and each new connection brings a rate of its own.
	ConnRateLimit int64
	// Latency is slept before each response header is written.
	Latency time.Duration
	// Files, when > 0, serves that many more files besides Path, at
	// FilePath(i) for i in [0, Files): each Size bytes of the content of
	// FileSeed(Seed, i), with an ETag of its own, for benchmarks of many
	// small files. Latency, the rate limits and the faults that answer
	// any request of the file (Status, FailStatus, DropAfter, ...) apply
	// to them too, and their GETs count as GET numbers; Redirects,
	// RedirectTo and ChangeETagAfter concern Path alone.
	Files int
	// Content, when set, gives the bytes of the file's version of seed
	// instead of Fill (Options.Seed, and Seed+k for the versions that
	// ChangeETagAfter serves; called once per seed). Each must be Size
	// bytes long (a tar archive, say, to test extraction).
	Content func(seed uint64) []byte
}

// Stats are request counters since Start or the last ResetStats.
type Stats struct {
	Requests    int64 // all requests
	GETs        int64 // GET requests (any path)
	HEADs       int64 // HEAD requests (any path)
	BytesServed int64 // response body bytes written (after compression)
	// MaxInFlight is the most requests in progress at once (the high-water
	// mark). A request counts from its arrival until just before the write
	// that completes its body (or the end of the handler), so a client can
	// never see a response finish while it still counts: a client that
	// keeps at most N requests open never makes it exceed N. A request the
	// client abandons counts until the server notices.
	MaxInFlight int64
	// MaxOpenConns is the most TCP connections open at once, busy or idle
	// (the high-water mark), from accept until the server sees them
	// closed.
	MaxOpenConns int64
	// ConnsAccepted is how many TCP connections the server accepted.
	ConnsAccepted int64
}

// Request is one entry of the request log.
type Request struct {
	Method         string
	Path           string
	RemoteAddr     string // client address; distinct values = distinct connections
	Range          string // Range request header
	IfRange        string // If-Range request header
	AcceptEncoding string // Accept-Encoding request header
	Authorization  string // Authorization request header (credential-leak tests)
	Status         int    // status sent (0 if none, e.g. aborted)
	Bytes          int64  // body bytes written
}

// resource is one version of the served file.
type resource struct {
	seed       uint64
	etag       string
	lastMod    time.Time
	lastModStr string
}

// Server is a loopback HTTP origin serving one deterministic file.
type Server struct {
	opts      Options
	base      resource
	changed   resource
	ln        net.Listener
	srv       *http.Server
	serveDone chan struct{}
	done      chan struct{}      // closed by Close
	stop      context.CancelFunc // ends the writes that ConnRateLimit holds
	faults    atomic.Pointer[faultState]

	requests, gets, heads, bytes, inflight atomic.Int64
	active, maxActive                      atomic.Int64 // for Stats.MaxInFlight
	conns, maxConns                        atomic.Int64 // for Stats.MaxOpenConns
	accepted                               atomic.Int64 // Stats.ConnsAccepted

	logMu sync.Mutex
	log   []*Request

	mu        sync.Mutex // guards closed and wg.Add
	closed    bool
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	digestMu sync.Mutex
	digests  map[digestKey][]byte // computed on first use; see digest.go

	contentMu sync.Mutex
	contents  map[uint64][]byte // Options.Content's answers, by seed
}

// fill puts the bytes of the version of seed at off into p.
func (s *Server) fill(p []byte, off int64, seed uint64) {
	if s.opts.Content == nil {
		Fill(p, off, seed)
		return
	}
	s.contentMu.Lock()
	data, ok := s.contents[seed]
	if !ok {
		data = s.opts.Content(seed)
		if int64(len(data)) != s.opts.Size {
			s.contentMu.Unlock()
			panic(fmt.Sprintf("origin: Content(%d) has %d bytes, not Size %d", seed, len(data), s.opts.Size))
		}
		if s.contents == nil {
			s.contents = map[uint64][]byte{}
		}
		s.contents[seed] = data
	}
	s.contentMu.Unlock()
	copy(p, data[off:])
}

// Start starts a server listening on 127.0.0.1 on a free port.
func Start(opts Options) (*Server, error) {
	if opts.Size < 0 || opts.ConnRateLimit < 0 || opts.Files < 0 {
		return nil, errors.New("origin: negative size, connection rate limit or number of files")
	}
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if !strings.HasPrefix(opts.Path, "/") {
		return nil, fmt.Errorf("origin: path %q must start with /", opts.Path)
	}
	changedETag := fmt.Sprintf(`"%x-%x"`, opts.Size, opts.Seed+1)
	if opts.ETag == "" {
		opts.ETag = fmt.Sprintf(`"%x-%x"`, opts.Size, opts.Seed)
	} else {
		changedETag = strings.TrimSuffix(opts.ETag, `"`) + `-changed"`
	}
	if opts.LastModified.IsZero() {
		opts.LastModified = DefaultLastModified
	}
	opts.LastModified = opts.LastModified.UTC().Truncate(time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	life, stop := context.WithCancel(context.Background())
	if opts.ConnRateLimit > 0 {
		ln = &cappedListener{Listener: ln, bytesPerSec: opts.ConnRateLimit, life: life}
	}
	s := &Server{
		stop:      stop,
		opts:      opts,
		base:      newResource(opts.Seed, opts.ETag, opts.LastModified),
		changed:   newResource(opts.Seed+1, changedETag, opts.LastModified.Add(time.Hour)),
		ln:        ln,
		serveDone: make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.faults.Store(newFaultState(Faults{}))
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState:         s.connState,
	}
	go func() {
		defer close(s.serveDone)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func newResource(seed uint64, etag string, lm time.Time) resource {
	return resource{seed: seed, etag: etag, lastMod: lm, lastModStr: lm.Format(http.TimeFormat)}
}

// URL returns the full URL of the file.
func (s *Server) URL() string { return s.BaseURL() + s.opts.Path }

// BaseURL returns "http://127.0.0.1:PORT".
func (s *Server) BaseURL() string { return "http://" + s.ln.Addr().String() }

// Options returns the effective options (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// SetFaults installs f (replacing any previous faults) and resets the fault
// counters. Safe for concurrent use with requests.
func (s *Server) SetFaults(f Faults) { s.faults.Store(newFaultState(f)) }

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:      s.requests.Load(),
		GETs:          s.gets.Load(),
		HEADs:         s.heads.Load(),
		BytesServed:   s.bytes.Load(),
		MaxInFlight:   s.maxActive.Load(),
		MaxOpenConns:  s.maxConns.Load(),
		ConnsAccepted: s.accepted.Load(),
	}
}

// Log returns a copy of the request log in arrival order. Status and Bytes
// of requests still in flight are provisional; see WaitIdle.
func (s *Server) Log() []Request {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	out := make([]Request, len(s.log))
	for i, r := range s.log {
		out[i] = *r
	}
	return out
}

// ResetStats zeroes the counters and clears the log.
func (s *Server) ResetStats() {
	s.logMu.Lock()
	s.log = nil
	s.requests.Store(0)
	s.gets.Store(0)
	s.heads.Store(0)
	s.bytes.Store(0)
	s.maxActive.Store(s.active.Load())
	s.maxConns.Store(s.conns.Load())
	s.accepted.Store(0)
	s.logMu.Unlock()
}

// WaitIdle waits up to timeout until no handler is running, reporting
// whether that happened. Use it before inspecting Log or Stats: a client may
// finish reading a body before the handler has recorded its completion.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for s.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// Close closes the listener and all connections, interrupts throttled or
// delayed responses and waits for all handlers to return.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		s.stop()
		s.closeErr = s.srv.Close()
		s.wg.Wait()
		<-s.serveDone
	})
	return s.closeErr
}

func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	s.inflight.Add(1)
	return true
}

func (s *Server) leave() {
	s.inflight.Add(-1)
	s.wg.Done()
}

func (s *Server) logStart(r *http.Request) *Request {
	e := &Request{
		Method:         r.Method,
		Path:           r.URL.Path,
		RemoteAddr:     r.RemoteAddr,
		Range:          r.Header.Get("Range"),
		IfRange:        r.Header.Get("If-Range"),
		AcceptEncoding: r.Header.Get("Accept-Encoding"),
		Authorization:  r.Header.Get("Authorization"),
	}
	s.logMu.Lock()
	s.log = append(s.log, e)
	s.logMu.Unlock()
	return e
}

func (s *Server) logEnd(e *Request, status int, n int64) {
	s.logMu.Lock()
	e.Status, e.Bytes = status, n
	s.logMu.Unlock()
}

// sleepUntil sleeps until t, returning false early if ctx is done or the
// server is closing.
func (s *Server) sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// begin counts a request in flight for Stats.MaxInFlight.
func (s *Server) begin() { raiseMax(&s.maxActive, s.active.Add(1)) }

// connState counts connections for Stats.MaxOpenConns and
// Stats.ConnsAccepted.
func (s *Server) connState(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.accepted.Add(1)
		raiseMax(&s.maxConns, s.conns.Add(1))
	case http.StateClosed, http.StateHijacked:
		s.conns.Add(-1)
	}
}

// raiseMax makes max at least n.
func raiseMax(max *atomic.Int64, n int64) {
	for {
		m := max.Load()
		if n <= m || max.CompareAndSwap(m, n) {
			return
		}
	}
}

// recorder wraps the ResponseWriter to record the status and count body
// bytes.
type recorder struct {
	http.ResponseWriter
	s      *Server
	status int
	n      int64
	length int64 // declared Content-Length, or -1
	ended  bool  // no longer counted in flight
}

// end stops counting the request in flight; only the first call counts.
func (w *recorder) end() {
	if !w.ended {
		w.ended = true
		w.s.active.Add(-1)
	}
}

func (w *recorder) WriteHeader(code int) {
	w.noteStatus(code)
	w.ResponseWriter.WriteHeader(code)
}

// noteStatus records the first status sent and the declared length.
func (w *recorder) noteStatus(code int) {
	if w.status == 0 {
		w.status = code
		w.length = -1
		if cl, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil {
			w.length = cl
		}
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.noteStatus(http.StatusOK)
	if w.length >= 0 && w.n+int64(len(p)) >= w.length {
		w.end() // this write can complete the response
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	w.s.bytes.Add(int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
