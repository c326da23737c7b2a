package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Daemon is the engine behind its HTTP server.
type Daemon struct {
	opts Options
	e    *Engine
	stop atomic.Pointer[context.CancelFunc] // ends ServeListener (aria2.shutdown)
}

// New checks opts, opens the session and brings its tasks back (active
// ones start again). The caller must Close it, or let Serve do so.
func New(opts Options) (*Daemon, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:6800"
	}
	if opts.Secret == "" && !isUnix(opts.Listen) {
		return nil, errors.New("daemon: a secret is required (--secret), unless --listen is a unix socket")
	}
	origins := make([]string, 0, len(opts.AllowOrigins))
	for _, o := range opts.AllowOrigins {
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || o == "*" || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return nil, fmt.Errorf("daemon: --allow-origin %q: want an origin such as https://ariang.example.com", o)
		}
		// As a browser sends it: scheme://host[:port], no slash.
		origins = append(origins, strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host))
	}
	opts.AllowOrigins = origins
	e, err := newEngine(opts)
	if err != nil {
		return nil, err
	}
	return &Daemon{opts: e.opts, e: e}, nil
}

// isUnix says whether listen names a unix socket.
func isUnix(listen string) bool {
	return strings.HasPrefix(listen, "unix:") || strings.ContainsRune(listen, '/')
}

// Engine is the daemon's engine (for metrics).
func (d *Daemon) Engine() *Engine { return d.e }

// Close stops the downloads (active tasks stay active in the session, to
// resume at the next start) and closes the session.
func (d *Daemon) Close() error { return d.e.close() }

// Listen opens the daemon's listener: TCP, or a unix socket made
// accessible to its owner alone.
func (d *Daemon) Listen() (net.Listener, error) {
	if !isUnix(d.opts.Listen) {
		return net.Listen("tcp", d.opts.Listen)
	}
	path := strings.TrimPrefix(d.opts.Listen, "unix:")
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		os.Remove(path) // a stale socket of an earlier run
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve listens and serves until ctx is done, then shuts the server down
// and closes the daemon.
func (d *Daemon) Serve(ctx context.Context) error {
	ln, err := d.Listen()
	if err != nil {
		d.Close()
		return fmt.Errorf("daemon: listen: %w", err)
	}
	return d.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened.
func (d *Daemon) ServeListener(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.stop.Store(&cancel)
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	d.e.log.Info().Str("listen", ln.Addr().String()).Str("dir", d.e.root).Msg("daemon listening")
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		d.e.log.Warn().Str("listen", ln.Addr().String()).Msg("listening beyond the loopback: anyone who can reach this port and has the secret can download into --dir; put TLS in front")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
	case err = <-errc:
	}
	if cerr := d.Close(); err == nil || errors.Is(err, http.ErrServerClosed) {
		err = cerr
	}
	return err
}

// Handler is the daemon's HTTP handler: /jsonrpc (POST and WebSocket),
// /events (SSE), and Options.Extra.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/jsonrpc", d.serveRPC)
	mux.HandleFunc("/events", d.serveEvents)
	for pattern, h := range d.opts.Extra {
		mux.Handle(pattern, h)
	}
	return mux
}

// originOK applies the origin rule: a request without Origin (not a
// browser's) passes; one from a page passes when the page is the
// daemon's own (Origin's host:port is the Host) or an allowed origin.
// allowed is set for the latter, which gets CORS headers.
func (d *Daemon) originOK(r *http.Request) (ok, allowed bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true, false
	}
	if slices.Contains(d.opts.AllowOrigins, origin) {
		return true, true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false, false
	}
	return strings.EqualFold(u.Host, r.Host), false
}

func (d *Daemon) serveRPC(w http.ResponseWriter, r *http.Request) {
	ok, allowed := d.originOK(r)
	if !ok {
		http.Error(w, "forbidden: cross-origin request (see --allow-origin)", http.StatusForbidden)
		return
	}
	if allowed {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		h.Set("Vary", "Origin")
		h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	}
	switch {
	case r.Method == http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		d.serveWS(w, r)
	case r.Method == http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "request too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		resp, status := d.handleBody(r.Context(), body, nil)
		w.Header().Set("Content-Type", "application/json-rpc")
		w.WriteHeader(status)
		w.Write(resp)
	default:
		w.Header().Set("Allow", "POST, GET, OPTIONS")
		http.Error(w, "POST a JSON-RPC request, or open a WebSocket", http.StatusMethodNotAllowed)
	}
}

// Root is the absolute download directory.
func (e *Engine) Root() string { return e.root }
