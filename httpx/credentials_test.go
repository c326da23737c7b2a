package httpx

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dlflow/dlflow/internal/credtest"
	"github.com/dlflow/dlflow/pipeline"
)

// credConfig is a client config with basic auth (alice:pw), a cookie, a
// secret header (X-Api-Key) and a harmless one (X-Trace), trusting
// httptest's certificate.
func credConfig(c *HTTPConfig) {
	c.Insecure = true
	c.BasicAuth = "alice:pw"
	c.Headers = map[string]string{"Cookie": "s=x", "X-Api-Key": "key-1", "X-Trace": "trace-3"}
}

var credSent = map[string]string{
	"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw")),
	"Cookie":        "s=x",
	"X-Api-Key":     "key-1",
}

// credCheck fails unless srv got at least min requests, each carrying the
// credentials (with) or none of them, and X-Trace either way.
func credCheck(t *testing.T, name string, srv *credtest.Server, min int, with bool) {
	t.Helper()
	reqs := srv.Requests()
	if len(reqs) < min {
		t.Fatalf("%s: %d requests, want at least %d", name, len(reqs), min)
	}
	for i, r := range reqs {
		for h, v := range credSent {
			if !with {
				v = ""
			}
			if got := r.Header.Get(h); got != v {
				t.Errorf("%s request %d (%s %s): %s is %q, want %q", name, i, r.Method, r.Path, h, got, v)
			}
		}
		if r.Header.Get("X-Trace") != "trace-3" {
			t.Errorf("%s request %d: X-Trace %q, want it sent", name, i, r.Header.Get("X-Trace"))
		}
	}
}

// readerGET asks res for its first bytes as a reader does: through
// res.HTTP, to res.URL.
func readerGET(t *testing.T, ctx context.Context, urlStr string, client pipeline.Doer) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, urlStr, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=0-9")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusPartialContent || string(b) != "0123456789" {
		t.Fatalf("reader GET: %d %q", resp.StatusCode, b)
	}
}

// TestCredentialsHTTPSToHTTPRedirectSameHost: a redirect from https to
// plain http on the same host and port (allowed by
// http.allow_insecure_redirect) strips the credentials, and the readers'
// later requests to the final URL do not bring them back.
func TestCredentialsHTTPSToHTTPRedirectSameHost(t *testing.T) {
	htNoLeaks(t)
	secure, plain := credtest.Pair(t, []byte(strings.Repeat("0123456789", 100)))
	secure.Redirect("/file", plain.URL+"/file")
	c, h := htClient(t, func(c *HTTPConfig) { credConfig(c); c.AllowInsecureRedirect = true })
	ctx := htCtx(t, 10*time.Second)
	res, err := Probe(ctx, c, h, secure.URL+"/file")
	if err != nil {
		t.Fatal(err)
	}
	if res.URL != plain.URL+"/file" || res.Size != 1000 {
		t.Fatalf("probe: URL %q size %d", res.URL, res.Size)
	}
	readerGET(t, ctx, res.URL, res.HTTP)
	credCheck(t, "https", secure, 1, true)
	credCheck(t, "http", plain, 2, false)
}

// TestCredentialsRedirectChainDoesNotBringThemBack: A redirects to B (on
// 127.0.0.2), which redirects back to A: once the chain left A, none of
// its requests carries the credentials, A's last one included; a reader's
// request to B after the probe carries none either.
func TestCredentialsRedirectChainDoesNotBringThemBack(t *testing.T) {
	htNoLeaks(t)
	content := []byte(strings.Repeat("0123456789", 100))
	a := credtest.Start(t, "127.0.0.1", content)
	b := credtest.Start(t, "127.0.0.2", content)
	a.Redirect("/start", b.URL+"/hop")
	b.Redirect("/hop", a.URL+"/file")
	c, h := htClient(t, credConfig)
	ctx := htCtx(t, 10*time.Second)
	res, err := Probe(ctx, c, h, a.URL+"/start")
	if err != nil {
		t.Fatal(err)
	}
	if res.URL != a.URL+"/file" {
		t.Fatalf("probe: URL %q", res.URL)
	}
	readerGET(t, ctx, b.URL+"/file", res.HTTP)
	credCheck(t, "B", b, 2, false)
	for i, r := range a.Requests() {
		want := r.Path == "/start"
		for hd, v := range credSent {
			if !want {
				v = ""
			}
			if got := r.Header.Get(hd); got != v {
				t.Errorf("A request %d (%s): %s is %q, want %q", i, r.Path, hd, got, v)
			}
		}
	}
}

// TestOriginOf: scheme, host and port, with the default ports made
// explicit; any difference is another origin.
func TestOriginOf(t *testing.T) {
	same := [][2]string{
		{"https://h/f", "https://h:443/g"},
		{"http://H/f", "http://h:80/"},
		{"HTTPS://user:pw@h/f", "https://h/"},
		{"http://[::1]/", "http://[::1]:80/x"},
	}
	differ := [][2]string{
		{"https://h/f", "http://h/f"},
		{"https://h/f", "https://h:8443/f"},
		{"http://h/f", "http://h2/f"},
		{"http://h:80/", "https://h:80/"},
	}
	origin := func(raw string) Origin {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return OriginOf(u)
	}
	for _, p := range same {
		if a, b := origin(p[0]), origin(p[1]); a != b {
			t.Errorf("%s (%v) and %s (%v): want one origin", p[0], a, p[1], b)
		}
	}
	for _, p := range differ {
		if a, b := origin(p[0]), origin(p[1]); a == b {
			t.Errorf("%s and %s: want two origins, both %v", p[0], p[1], a)
		}
	}
	if got := origin("https://h/").String(); got != "https://h:443" {
		t.Errorf("String %q", got)
	}
}

// TestIsSecretHeader: the credential headers and any name with key,
// token, secret, auth or session; not the harmless ones.
func TestIsSecretHeader(t *testing.T) {
	for _, name := range []string{"Authorization", "proxy-authorization", "Cookie", "Cookie2", "X-Api-Key",
		"X-API-KEY", "X-Session-Id", "X-Auth-Token", "X-Amz-Security-Token", "Client-Secret", "X-CSRF-Token"} {
		if !IsSecretHeader(name) {
			t.Errorf("%s: want secret", name)
		}
	}
	for _, name := range []string{"X-Trace", "User-Agent", "Accept", "X-Request-Id", "Range", "If-Range", "Referer"} {
		if IsSecretHeader(name) {
			t.Errorf("%s: want not secret", name)
		}
	}
}

// TestCredentialsNamedOwner: a client whose owner is named gives the
// credentials to that origin alone, whichever it asks first; a URL's own
// userinfo still goes to its own origin.
func TestCredentialsNamedOwner(t *testing.T) {
	htNoLeaks(t)
	content := []byte(strings.Repeat("0123456789", 100))
	owner := credtest.Start(t, "127.0.0.1", content)
	other := credtest.Start(t, "127.0.0.2", content)
	cfg := DefaultHTTPConfig()
	credConfig(&cfg)
	tr, err := NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	c, h, err := NewClientOn(tr, cfg, owner.URL+"/meta")
	if err != nil {
		t.Fatal(err)
	}
	ctx := htCtx(t, 10*time.Second)
	readerGET(t, ctx, other.URL+"/file", Requester{Client: c, Header: h}) // first, so it would be bound as the owner
	readerGET(t, ctx, owner.URL+"/file", Requester{Client: c, Header: h})
	withUser := strings.Replace(other.URL, "http://", "http://bob:pw2@", 1) + "/file"
	readerGET(t, ctx, withUser, Requester{Client: c, Header: h})
	credCheck(t, "owner", owner, 1, true)
	reqs := other.Requests()
	if len(reqs) != 2 {
		t.Fatalf("other: %d requests, want 2", len(reqs))
	}
	bob := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:pw2"))
	for i, want := range []string{"", bob} {
		r := reqs[i]
		if r.Header.Get("Authorization") != want || r.Header.Get("Cookie") != "" || r.Header.Get("X-Api-Key") != "" {
			t.Errorf("other request %d: %v, want Authorization %q and no other secret", i, r.Header, want)
		}
	}
}
