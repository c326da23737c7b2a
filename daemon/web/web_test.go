package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/daemon/web"
)

func get(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestPageHeaders: every response carries the strict policy and nosniff,
// none sets a cookie; the three files have their types; other paths and
// methods are refused.
func TestPageHeaders(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	host := srv.Listener.Addr().String()
	wantCSP := "default-src 'self'; connect-src 'self' ws://" + host + " wss://" + host +
		"; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	for _, c := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8"},
		{"HEAD", "/", 200, "text/html; charset=utf-8"},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/app.css", 200, "text/css; charset=utf-8"},
		{"GET", "/index.html", 404, ""},
		{"GET", "/static/app.js", 404, ""},
		{"GET", "/../web.go", 404, ""},
		{"POST", "/", 405, ""},
	} {
		resp, body := get(t, c.method, srv.URL+c.path, nil)
		name := c.method + " " + c.path
		if resp.StatusCode != c.code {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, c.code)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != wantCSP {
			t.Errorf("%s: CSP %q\nwant %q", name, got, wantCSP)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", name, got)
		}
		if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q", name, got)
		}
		if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("%s: sets cookies %q", name, got)
		}
		if c.ctype != "" && resp.Header.Get("Content-Type") != c.ctype {
			t.Errorf("%s: Content-Type %q, want %q", name, resp.Header.Get("Content-Type"), c.ctype)
		}
		if c.code == 200 && c.method == "GET" && len(body) < 100 {
			t.Errorf("%s: body of %d bytes", name, len(body))
		}
	}
	// A Host that is not a plain host:port is not written into the policy.
	resp, _ := get(t, "GET", srv.URL+"/", map[string]string{"Host": "evil.example;script-src"})
	if got := resp.Header.Get("Content-Security-Policy"); strings.Contains(got, "evil") || !strings.HasPrefix(got, "default-src 'self'; connect-src 'self'; ") {
		t.Errorf("hostile Host: CSP %q", got)
	}
	// Revalidation: the ETag answers 304.
	first, _ := get(t, "GET", srv.URL+"/app.js", nil)
	again, _ := get(t, "GET", srv.URL+"/app.js", map[string]string{"If-None-Match": first.Header.Get("ETag")})
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", again.StatusCode)
	}
}

// TestPageHasNoExternalURL: the page loads nothing from elsewhere (no
// CDN, no font, no absolute URL at all) and every file it names is one the
// handler serves.
func TestPageHasNoExternalURL(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	external := regexp.MustCompile(`(?i)\b(https?|wss?|ftp|data|javascript):|\burl\(|@import|\bsrc\s*=\s*["']?//|\bhref\s*=\s*["']?//`)
	for _, path := range []string{"/", "/app.js", "/app.css"} {
		_, body := get(t, "GET", srv.URL+path, nil)
		// The script builds its WebSocket URL from its own location:
		// 'wss:' and 'ws:' are the scheme of that, not an address.
		scan := body
		if path == "/app.js" {
			scan = strings.NewReplacer("'https:'", "", "'wss:'", "", "'ws:'", "").Replace(body)
		}
		if m := external.FindAllString(scan, -1); len(m) > 0 {
			t.Errorf("%s names external resources: %q", path, m)
		}
	}
	_, page := get(t, "GET", srv.URL+"/", nil)
	refs := regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) != 2 {
		t.Errorf("page references %v, want app.css and app.js", refs)
	}
	for _, ref := range refs {
		if resp, _ := get(t, "GET", srv.URL+"/"+ref[1], nil); resp.StatusCode != 200 {
			t.Errorf("page references %q: status %d", ref[1], resp.StatusCode)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " style=") || strings.Contains(page, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
		t.Error("page has inline script, style or handlers, which the policy refuses")
	}
}

// TestPageScriptHasNoHTMLSinks: the script never parses data as HTML nor
// evaluates strings, and keeps the secret out of cookies and localStorage.
func TestPageScriptHasNoHTMLSinks(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	_, js := get(t, "GET", srv.URL+"/app.js", nil)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
		"new Function", "setAttribute('on", "document.cookie", "localStorage", ".href ="} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
	if !strings.Contains(js, "textContent") || !strings.Contains(js, "sessionStorage") {
		t.Error("app.js no longer uses textContent and sessionStorage: this test reads the wrong file")
	}
}
