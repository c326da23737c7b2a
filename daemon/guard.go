package daemon

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits on what a client without the secret can hold.
const (
	// maxStreams bounds the WebSocket and /events streams open at once;
	// maxUnauthedStreams those of them that have not shown the secret, so
	// that strangers cannot take every slot from the daemon's clients.
	maxStreams         = 1024
	maxUnauthedStreams = 64
)

// bodyTimeout bounds the reading of a POST body (a slow client holding a
// request open, byte by byte); a variable for tests.
var bodyTimeout = 30 * time.Second

// streams counts the open streams.
type streams struct {
	all, unauthed atomic.Int64
}

// slot is one open stream's place in streams.
type slot struct {
	s        *streams
	unauthed atomic.Bool
}

// take reserves a stream, unauthenticated unless authed; nil when the
// daemon holds its limit. The caller calls release once.
func (s *streams) take(authed bool) *slot {
	if s.all.Add(1) > maxStreams {
		s.all.Add(-1)
		return nil
	}
	sl := &slot{s: s}
	if authed {
		return sl
	}
	if s.unauthed.Add(1) > maxUnauthedStreams {
		s.unauthed.Add(-1)
		s.all.Add(-1)
		return nil
	}
	sl.unauthed.Store(true)
	return sl
}

// promote moves the stream out of the unauthenticated ones: it showed the
// secret. Safe for concurrent use, and more than once.
func (sl *slot) promote() {
	if sl.unauthed.Swap(false) {
		sl.s.unauthed.Add(-1)
	}
}

// release frees the stream's place.
func (sl *slot) release() {
	sl.promote()
	sl.s.all.Add(-1)
}

// allowedHosts is the set of host names (without port, lower case) a
// request's Host may name besides IP literals and localhost: the listen
// address's, --allow-host's and --allow-origin's.
func allowedHosts(listen string, hosts, origins []string) []string {
	var out []string
	add := func(h string) {
		if h = hostOnly(h); h != "" {
			out = append(out, h)
		}
	}
	if !isUnix(listen) {
		add(listen)
	}
	for _, h := range hosts {
		add(h)
	}
	for _, o := range origins {
		if _, rest, ok := strings.Cut(o, "://"); ok {
			add(rest)
		}
	}
	return out
}

// hostOnly is the lower-case host name of a Host header or host:port,
// without port or IPv6 brackets.
func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

// hostOK is the guard against DNS rebinding: a page on evil.example whose
// name is made to resolve to 127.0.0.1 is same-origin with the daemon as
// the browser sees it (Origin and Host both evil.example), so the origin
// rule lets it in. Its requests name evil.example in Host; the daemon
// answers only requests that name it by an IP address, localhost (which
// browsers resolve themselves), its listen name, or a name allowed with
// --allow-host or --allow-origin. A request without Host (HTTP/1.0, not a
// browser) passes.
func (d *Daemon) hostOK(r *http.Request) bool {
	h := hostOnly(r.Host)
	switch {
	case h == "":
		return true
	case net.ParseIP(stripZone(h)) != nil:
		return true
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return true
	}
	return slices.Contains(d.hosts, h)
}

// stripZone drops an IPv6 zone (fe80::1%eth0), which ParseIP refuses.
func stripZone(h string) string {
	if i := strings.IndexByte(h, '%'); i >= 0 {
		return h[:i]
	}
	return h
}

// guard wraps every route of the daemon (the RPC, /events, the page,
// /metrics) in the Host check.
func (d *Daemon) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.hostOK(r) {
			http.Error(w, "forbidden: the Host "+safeHost(r.Host)+" is not this daemon's name (see --allow-host)", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// safeHost quotes at most 100 bytes of a client's Host for an error.
func safeHost(h string) string {
	if len(h) > 100 {
		h = h[:100]
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' {
			return '?'
		}
		return r
	}, h) + `"`
}

// Bodies of POSTs held in memory at once: a small body (a call) is read
// at once; a large one (a base64 Metalink, or a stranger's 16 MiB) waits
// up to bodyWait for room in bodyBudget, then gets 503. Without the
// budget, strangers sending many 16 MiB bodies at once (the token is
// inside them) could take the host's memory.
const smallBody = 64 << 10

var (
	bodyBudget int64 = 128 << 20
	bodyWait         = 5 * time.Second
)

// budget is a count of bytes that callers reserve and give back.
type budget struct {
	mu   sync.Mutex
	used int64
	wake chan struct{} // closed when bytes are given back
}

// acquire reserves n bytes of limit, waiting until ctx ends; false if it
// ended first.
func (b *budget) acquire(ctx context.Context, n, limit int64) bool {
	for {
		b.mu.Lock()
		if b.used+n <= limit {
			b.used += n
			b.mu.Unlock()
			return true
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		w := b.wake
		b.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return false
		}
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	b.mu.Unlock()
}

// readBody reads a POST body within the limits above: nil and the status
// to answer when it cannot.
func (d *Daemon) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int) {
	// A body sent byte by byte must not hold the request (and its
	// goroutine and buffer) open: ReadHeaderTimeout covers the headers
	// alone, and a server-wide ReadTimeout would cut the WebSockets.
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
	n := r.ContentLength
	if n < 0 || n > maxBody {
		n = maxBody
	}
	if n > smallBody {
		ctx, cancel := context.WithTimeout(r.Context(), bodyWait)
		ok := d.bodies.acquire(ctx, n, bodyBudget)
		cancel()
		if !ok {
			return nil, http.StatusServiceUnavailable
		}
		defer d.bodies.release(n)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= maxBody {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
		return nil, http.StatusRequestEntityTooLarge
	}
	return buf.Bytes(), http.StatusOK
}
