package origin

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestMaxInFlight: the high-water mark counts requests whose response is not
// complete, and a request read to the end no longer counts.
func TestMaxInFlight(t *testing.T) {
	// Bodies far larger than the socket buffers: a handler stays in its
	// body writes until the client reads, so the three are in flight at
	// once for sure once their headers have arrived.
	s := startServer(t, Options{Size: 64 << 20, Seed: 3})
	c := newClient(t, false)
	var bodies []io.ReadCloser
	for range 3 {
		resp, err := c.Get(s.URL())
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	if got := s.Stats().MaxInFlight; got != 3 {
		t.Fatalf("MaxInFlight = %d with three bodies open, want 3", got)
	}
	for _, b := range bodies {
		b.Close()
	}
	if !s.WaitIdle(30 * time.Second) {
		t.Fatal("handlers still running")
	}
	s.ResetStats()
	// Connections the client closed may not have been seen closed yet.
	if st := s.Stats(); st != (Stats{MaxOpenConns: st.MaxOpenConns}) {
		t.Fatalf("after reset: %+v", st)
	}

	// One request after another, each read to the end: never two at once,
	// even though the client sends the next one as soon as it has the last
	// byte of the previous answer.
	for range 5 {
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-99999")
		wantStatus(t, r, http.StatusPartialContent)
		r = do(t, c, http.MethodHead, s.URL())
		wantStatus(t, r, http.StatusOK)
	}
	if !s.WaitIdle(30 * time.Second) {
		t.Fatal("handlers still running")
	}
	if got := s.Stats().MaxInFlight; got != 1 {
		t.Fatalf("MaxInFlight = %d for sequential requests, want 1", got)
	}
}

// TestMaxOpenConns: the high-water mark counts TCP connections, idle ones
// included: a keep-alive client making requests one after another holds
// one, three clients hold three.
func TestMaxOpenConns(t *testing.T) {
	s := startServer(t, Options{Size: 1 << 20, Seed: 3})
	c := newClient(t, false)
	for range 5 {
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-99")
		wantStatus(t, r, http.StatusPartialContent)
	}
	if got := s.Stats().MaxOpenConns; got != 1 {
		t.Fatalf("MaxOpenConns = %d for one keep-alive client, want 1", got)
	}
	for range 2 {
		r := do(t, newClient(t, false), http.MethodHead, s.URL())
		wantStatus(t, r, http.StatusOK)
	}
	if got := s.Stats().MaxOpenConns; got != 3 {
		t.Fatalf("MaxOpenConns = %d with three clients' connections open, want 3", got)
	}
}
