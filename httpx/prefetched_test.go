package httpx

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRequesterHeaders: Requester.Do sends the run's header fields where
// the request has none of that name, leaves the request's own (a Range, an
// Accept-Encoding) as they are, and gives each request its own copy of
// the values, so that a stage that changes one changes no other request.
func TestRequesterHeaders(t *testing.T) {
	got := make(chan http.Header, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	defer srv.Close()
	run := http.Header{"User-Agent": {"dlflow-test"}, "Accept-Encoding": {"identity"}, "X-Token": {"t1"}}
	rq := Requester{Client: srv.Client(), Header: run}
	for i, own := range []http.Header{{"Range": {"bytes=0-9"}, "Accept-Encoding": {"gzip"}}, nil} {
		req, err := http.NewRequestWithContext(htCtx(t, 5*time.Second), http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if own != nil {
			req.Header = own
		}
		resp, err := rq.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		req.Header["X-Token"][0] = "changed" // by a stage, after the request
		h := <-got
		wantEnc, wantRange := "identity", ""
		if own != nil {
			wantEnc, wantRange = "gzip", "bytes=0-9"
		}
		if h.Get("User-Agent") != "dlflow-test" || h.Get("X-Token") != "t1" || h.Get("Accept-Encoding") != wantEnc || h.Get("Range") != wantRange {
			t.Errorf("request %d sent %v", i, h)
		}
	}
	if v := run["X-Token"]; len(v) != 1 || v[0] != "t1" {
		t.Errorf("the run's header changed: X-Token %q", v)
	}
}
