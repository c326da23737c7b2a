package httpx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

func TestProbeHEAD(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 12345, nil)
	res := htProbe(t, srv.URL())
	if res.URL != srv.URL() || res.Size != 12345 || !res.AcceptRanges || res.ETag == "" ||
		res.LastModified == "" || res.ContentType != "application/octet-stream" || res.HTTP == nil ||
		res.ProbedAt.IsZero() || res.HTTP.(Requester).Header.Get("Accept-Encoding") != "identity" {
		t.Fatalf("resource %+v", res)
	}
	if st := srv.Stats(); st.HEADs != 1 || st.GETs != 0 {
		t.Fatalf("stats %+v, want one HEAD", st)
	}
}

func TestProbeFallsBackToRangedGET(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusNotImplemented} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, 5000, nil)
			srv.SetFaults(origin.Faults{NoHEAD: status})
			res := htProbe(t, srv.URL())
			if res.Size != 5000 || !res.AcceptRanges || res.ETag == "" {
				t.Fatalf("resource %+v", res)
			}
			log := srv.Log()
			if len(log) != 2 || log[0].Method != "HEAD" || log[1].Method != "GET" || log[1].Range != "bytes=0-0" {
				t.Fatalf("requests %+v, want HEAD then GET bytes=0-0", log)
			}
		})
	}
}

func TestProbeWithoutRanges(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 5000, nil)
	srv.SetFaults(origin.Faults{NoHEAD: 405, IgnoreRange: true})
	res := htProbe(t, srv.URL())
	if res.Size != 5000 || res.AcceptRanges {
		t.Fatalf("a 200 to bytes=0-0 must mean no ranges: %+v", res)
	}
	srv.SetFaults(origin.Faults{NoLength: true})
	res = htProbe(t, srv.URL())
	if res.Size != -1 || res.AcceptRanges {
		t.Fatalf("chunked answer: %+v", res)
	}
	srv.SetFaults(origin.Faults{Gzip: true})
	res = htProbe(t, srv.URL())
	if res.AcceptRanges {
		t.Fatalf("gzip answer: %+v", res)
	}
}

func TestProbeEmptyFile(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 0, nil)
	if res := htProbe(t, srv.URL()); res.Size != 0 {
		t.Fatalf("HEAD: size %d", res.Size)
	}
	srv.SetFaults(origin.Faults{NoHEAD: 403}) // GET bytes=0-0 answers 416 bytes */0
	if res := htProbe(t, srv.URL()); res.Size != 0 || !res.AcceptRanges {
		t.Fatalf("GET: %+v", res)
	}
}

func TestProbeRedirects(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 100, nil)
	srv.SetFaults(origin.Faults{Redirects: 3})
	res := htProbe(t, srv.URL())
	if want := srv.BaseURL() + "/r/3"; res.URL != want || res.Size != 100 {
		t.Fatalf("URL %q size %d, want %q", res.URL, res.Size, want)
	}

	c, h := htClient(t, func(c *HTTPConfig) { c.MaxRedirects = 2 })
	_, err := Probe(htCtx(t, 5*time.Second), c, h, srv.URL())
	var re *RedirectError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "after 2 redirects") {
		t.Fatalf("err = %v, want a *RedirectError after 2 redirects", err)
	}
}

func TestProbeRefusesHTTPSToHTTP(t *testing.T) {
	htNoLeaks(t)
	plain := htOrigin(t, 100, nil)
	tlsSrv := httptest.NewTLSServer(http.RedirectHandler(plain.URL(), http.StatusFound))
	defer tlsSrv.Close()

	c, h := htClient(t, func(c *HTTPConfig) { c.Insecure = true })
	_, err := Probe(htCtx(t, 5*time.Second), c, h, tlsSrv.URL+"/file")
	var re *RedirectError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "https to http") {
		t.Fatalf("err = %v, want a refused downgrade", err)
	}
	if plain.Stats().Requests != 0 {
		t.Fatal("the http side was contacted")
	}

	c, h = htClient(t, func(c *HTTPConfig) { c.Insecure, c.AllowInsecureRedirect = true, true })
	res, err := Probe(htCtx(t, 5*time.Second), c, h, tlsSrv.URL+"/file")
	if err != nil || res.URL != plain.URL() {
		t.Fatalf("allowed downgrade: %v %+v", err, res)
	}
}

func TestProbeDoesNotForwardCredentials(t *testing.T) {
	htNoLeaks(t)
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+"|"+r.Header.Get("Cookie"))
		mu.Unlock()
		w.Header().Set("Content-Length", "3")
		w.Header().Set("Accept-Ranges", "bytes")
		_, _ = w.Write([]byte("abc"))
	}))
	defer other.Close()
	var firstAuth string
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		firstAuth = r.Header.Get("Authorization")
		mu.Unlock()
		http.Redirect(w, r, other.URL+"/file", http.StatusFound)
	}))
	defer first.Close()

	for _, tc := range []struct {
		name string
		url  string
		hdr  map[string]string
	}{
		{"header", first.URL + "/file", map[string]string{"Authorization": "Bearer s3cret", "Cookie": "id=s3cret"}},
		{"userinfo", strings.Replace(first.URL, "http://", "http://bob:s3cret@", 1) + "/file", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen, firstAuth = nil, ""
			mu.Unlock()
			c, h := htClient(t, func(c *HTTPConfig) { c.Headers = tc.hdr })
			res, err := Probe(htCtx(t, 5*time.Second), c, h, tc.url)
			if err != nil {
				t.Fatal(err)
			}
			// A reader's request to the final URL, as the stages send it.
			req, err := http.NewRequestWithContext(htCtx(t, 5*time.Second), http.MethodGet, res.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := res.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if firstAuth == "" {
				t.Fatal("the first host did not get the credentials")
			}
			if len(seen) < 2 {
				t.Fatalf("the second host was asked %d times, want the probe's and the reader's", len(seen))
			}
			for _, s := range seen {
				if s != "|" {
					t.Fatalf("second host saw credentials %q", s)
				}
			}
			if strings.Contains(res.URL, "s3cret") {
				t.Fatalf("resource URL keeps credentials for the other host: %s", res.URL)
			}
		})
	}
}

func TestProbePermanentStatus(t *testing.T) {
	for _, status := range []int{401, 404, 410} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, 100, nil)
			srv.SetFaults(origin.Faults{Status: status})
			c, h := htClient(t, nil)
			u := strings.Replace(srv.URL(), "http://", "http://me:pa55@", 1)
			_, err := Probe(htCtx(t, 5*time.Second), c, h, u)
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != status {
				t.Fatalf("err = %v, want *HTTPError %d", err, status)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("http %d %s from http://me:xxxxx@", status, http.StatusText(status))) || strings.Contains(msg, "pa55") {
				t.Fatalf("message %q", msg)
			}
			if n := srv.Stats().Requests; n != 1 {
				t.Fatalf("%d requests, want 1 (no fallback for %d)", n, status)
			}
		})
	}
	t.Run("403 after fallback", func(t *testing.T) {
		htNoLeaks(t)
		srv := htOrigin(t, 100, nil)
		srv.SetFaults(origin.Faults{Status: 403})
		c, h := htClient(t, nil)
		_, err := Probe(htCtx(t, 5*time.Second), c, h, srv.URL())
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != 403 || srv.Stats().GETs != 1 {
			t.Fatalf("err = %v, stats %+v", err, srv.Stats())
		}
	})
}

func TestProbeInvalidURL(t *testing.T) {
	c, h := htClient(t, nil)
	for _, u := range []string{"ftp://host/file", "http://", "https:///path", "://x", "example.com/file", "http://u:pw@[::1/x"} {
		_, err := Probe(context.Background(), c, h, u)
		if !errors.Is(err, ErrInvalidURL) || strings.Contains(err.Error(), ":pw@") {
			t.Errorf("Probe(%q) = %v, want ErrInvalidURL without the password", u, err)
		}
	}
}

func TestProbeFileName(t *testing.T) {
	htNoLeaks(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Disposition", `attachment; filename="fallback.bin"; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.pdf`)
		w.Header().Set("Content-Length", "1")
		_, _ = w.Write([]byte("x"))
	}))
	defer srv.Close()
	if res := htProbe(t, srv.URL); res.FileName != "naïve résumé.pdf" || res.AcceptRanges {
		t.Fatalf("resource %+v", res)
	}
}

func ExampleProbe() {
	srv, err := origin.Start(origin.Options{Size: 1 << 20, Seed: 1})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	client, header, err := NewClient(DefaultHTTPConfig())
	if err != nil {
		panic(err)
	}
	defer client.CloseIdleConnections()
	res, err := Probe(context.Background(), client, header, srv.URL())
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Size, res.AcceptRanges, res.Validator() == res.ETag)
	// Output: 1048576 true true
}
