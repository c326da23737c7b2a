// Package web serves the daemon's page (issue #21, DAEMON-PROTOCOL.md): one
// embedded HTML page, its script and its style sheet, and nothing else.
//
// # Contract
//
// The daemon mounts [Handler] at "/" of its listener, beside /jsonrpc,
// /events and /metrics (which, being longer patterns, win). The handler
// serves "/", "/app.js" and "/app.css" from an embed.FS, answers 404 to
// every other path and 405 to methods other than GET and HEAD. It holds no
// state, is safe for concurrent use and needs no secret: the page is
// public, the secret is not in it.
//
// The page talks to the daemon only over the WebSocket at /jsonrpc of its
// own origin, in aria2's JSON-RPC: tellActive, tellWaiting and tellStopped
// once, then dlflow.subscribe for pushed progress (dlflow.onProgress, with
// the per-connection "lanes" of a ranged download); when that call fails
// (a plain `aria2c --enable-rpc`) it polls tellActive and getGlobalStat
// every second instead. aria2's onDownload* notifications make it ask
// tellStatus of the task at once. It adds downloads with addUri (one per
// line; several URLs on a line are mirrors of one file) and addMetalink
// (the file's content, base64), and pauses, resumes and removes them.
//
// # Security
//
// The secret comes from the page's fragment, /#secret=S (never sent to the
// server, removed from the address bar once read), or from a form; it is
// kept in memory, or in sessionStorage when the user ticks "remember", and
// never in a cookie (so another site cannot ride it) nor localStorage.
//
// File names, URLs and error messages are the data of whoever added a
// download or named a file, so the script puts them in the DOM with
// textContent only (TestPageScriptHasNoHTMLSinks holds it). Every response
// carries a Content-Security-Policy that allows scripts, styles and
// connections from the page's own origin alone (connect-src names ws:// and
// wss:// of the request's Host for browsers whose 'self' does not cover
// WebSocket), forbids framing, plugins, <base> and form posts, plus
// X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"regexp"
	"time"
)

//go:embed static
var static embed.FS

// asset is one embedded file, read once.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// routes maps the paths the page uses to its files.
var routes = map[string]struct{ file, ctype string }{
	"/":        {"static/index.html", "text/html; charset=utf-8"},
	"/app.js":  {"static/app.js", "text/javascript; charset=utf-8"},
	"/app.css": {"static/app.css", "text/css; charset=utf-8"},
}

// Handler returns the handler of the page; see the package documentation.
func Handler() http.Handler {
	assets := make(map[string]asset, len(routes))
	for path, r := range routes {
		body, err := static.ReadFile(r.file)
		if err != nil {
			panic("daemon/web: embedded file missing: " + err.Error()) // a build error, not a run-time one
		}
		sum := sha256.Sum256(body)
		assets[path] = asset{body: body, ctype: r.ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp(r.Host))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		// Revalidate every time: a new daemon may serve a new page.
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

// hostRE is a Host header that may be written into the policy as it is:
// a name or IPv4 address, or a bracketed IPv6 address, and an optional port.
// Anything else (a header injection attempt) gets 'self' alone.
var hostRE = regexp.MustCompile(`^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// csp is the Content-Security-Policy of every response for a request to
// host: the page's own origin for everything, nothing from elsewhere.
func csp(host string) string {
	connect := "'self'"
	if hostRE.MatchString(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'self'; connect-src " + connect +
		"; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
