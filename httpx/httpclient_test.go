package httpx

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewClientHeader(t *testing.T) {
	cfg := DefaultHTTPConfig()
	cfg.Headers = map[string]string{"Authorization": "Bearer t0k3n", "X-Trace": "abc"}
	_, h, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"User-Agent": "dlflow/0.1", "Accept-Encoding": "identity",
		"Authorization": "Bearer t0k3n", "X-Trace": "abc",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestNewClientRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*HTTPConfig)
		want string
	}{
		{"header name", func(c *HTTPConfig) { c.Headers = map[string]string{"X Bad": "v"} }, `"X Bad"`},
		{"header CRLF", func(c *HTTPConfig) { c.Headers = map[string]string{"X-Evil": "a\r\nHost: x"} }, `"X-Evil"`},
		{"user agent LF", func(c *HTTPConfig) { c.UserAgent = "a\nb" }, "user_agent"},
		{"gzip", func(c *HTTPConfig) { c.Headers = map[string]string{"Accept-Encoding": "gzip"} }, "identity"},
		{"redirects", func(c *HTTPConfig) { c.MaxRedirects = -1 }, "max_redirects"},
		{"proxy", func(c *HTTPConfig) { c.Proxy = "ftp://u:secret@proxy:21" }, "xxxxx"},
		{"ca file", func(c *HTTPConfig) { c.CACert = filepath.Join(t.TempDir(), "missing.pem") }, "ca_cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultHTTPConfig()
			tc.mod(&cfg)
			_, _, err := NewClient(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error leaks a password: %v", err)
			}
		})
	}
}

// TestNewClientProtocols: HTTP/1.1 only by default, even against a server
// that offers HTTP/2; HTTP/2 when asked. It also trusts a CA file.
func TestNewClientProtocols(t *testing.T) {
	htNoLeaks(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted try logs a handshake error
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h2 := range []bool{false, true} {
		c, _ := htClient(t, func(c *HTTPConfig) { c.CACert, c.HTTP2 = ca, h2 })
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
			t.Errorf("http2=%v: protocol %s", h2, resp.Proto)
		}
		c.CloseIdleConnections()
	}
	// Without the CA the certificate is not trusted.
	c, _ := htClient(t, nil)
	if resp, err := c.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("untrusted certificate accepted")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:secret@host/p?q=1": "https://user:xxxxx@host/p?q=1",
		"https://user@host/p":            "https://user@host/p",
		"http://host:8080/a":             "http://host:8080/a",
		"http://u:secret@ho st/%zz":      "http://xxxxx@ho st/%zz",
		"not a url":                      "not a url",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func ExampleRedactURL() {
	fmt.Println(RedactURL("https://alice:hunter2@example.com/file.iso"))
	// Output: https://alice:xxxxx@example.com/file.iso
}
