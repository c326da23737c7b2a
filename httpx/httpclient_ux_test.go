package httpx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		in, name, value, err string
	}{
		{in: "X-Token: abc", name: "X-Token", value: "abc"},
		{in: "X-Token:abc", name: "X-Token", value: "abc"},
		{in: "  Authorization :  Bearer a:b  ", name: "Authorization", value: "Bearer a:b"},
		{in: "X-Empty:", name: "X-Empty", value: ""},
		{in: "X-Token abc", err: `"X-Token abc": want "Name: value"`},
		{in: ": v", err: "empty header name"},
		{in: "Bad Name: v", err: `header name "Bad Name"`},
		{in: "X: a\nb", err: `control character '\n'`},
		{in: "X: a\x01b", err: `control character '\x01'`},
		{in: "X: a\x7fb", err: `control character '\x7f'`},
		{in: "X: a\tb é", name: "X", value: "a\tb é"},
	} {
		name, value, err := ParseHeader(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseHeader(%q): error %v, want one with %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || name != tc.name || value != tc.value):
			t.Errorf("ParseHeader(%q) = %q, %q, %v; want %q, %q", tc.in, name, value, err, tc.name, tc.value)
		}
	}
}

func TestNewClientBasicAuth(t *testing.T) {
	cfg := DefaultHTTPConfig()
	cfg.BasicAuth = "alice:p:w" // the password may hold colons
	_, h, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.Get("Authorization"), "Basic YWxpY2U6cDp3"; got != want {
		t.Fatalf("Authorization %q, want %q", got, want)
	}
	// An explicit Authorization header wins.
	cfg.Headers = map[string]string{"Authorization": "Bearer x"}
	if _, h, _ = NewClient(cfg); h.Get("Authorization") != "Bearer x" {
		t.Fatalf("Authorization %q, want the header's", h.Get("Authorization"))
	}
	for _, bad := range []string{"nopassword", ":nouser", "a:b\r\nX: y"} {
		cfg := DefaultHTTPConfig()
		cfg.BasicAuth = bad
		if _, _, err := NewClient(cfg); err == nil || !strings.HasPrefix(err.Error(), "http.basic_auth: ") || strings.Contains(err.Error(), bad) {
			t.Errorf("basic_auth %q: error %v; want one naming the key and not echoing the secret", bad, err)
		}
	}
}

// TestLimitRateSharedByBodies: two bodies read at once share one budget.
// 1 MiB at 2 MiB/s cannot take less than (1 MiB - burst) / 2 MiB/s.
func TestLimitRateSharedByBodies(t *testing.T) {
	body := bytes.Repeat([]byte{'x'}, 512<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	cfg := DefaultHTTPConfig()
	cfg.LimitRate = 2 << 20
	client, _, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections() // reaches the wrapped transport (goleak would tell)
	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := client.Get(srv.URL)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && n != int64(len(body)) {
				err = io.ErrUnexpectedEOF
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	burst := time.Duration(limitBurst(2<<20)) * time.Second / (2 << 20)
	if least := time.Second/2 - burst; time.Since(start) < least {
		t.Fatalf("1 MiB at 2 MiB/s over two bodies took %v, less than %v", time.Since(start), least)
	}
}

// TestLimitRateCancelledBodyWaits: a body whose request is cancelled while
// its bytes wait for their tokens hands them out only when they are due:
// a cancelled request's bytes never beat the limit. At 64 KiB/s the
// burst is 4 KiB: the second 4 KiB are due 62.5 ms after the first.
func TestLimitRateCancelledBodyWaits(t *testing.T) {
	body := bytes.Repeat([]byte{'x'}, 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	cfg := DefaultHTTPConfig()
	cfg.LimitRate = 64 << 10
	client, _, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4<<10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.AfterFunc(5*time.Millisecond, cancel)
	n, err := resp.Body.Read(buf)
	due := time.Duration(n) * time.Second / (64 << 10)
	if took := time.Since(start); n > 0 && took < due-5*time.Millisecond {
		t.Fatalf("%d bytes handed out after %v, before they were due (%v)", n, took, due)
	}
	if n > 0 && !errors.Is(err, context.Canceled) {
		t.Errorf("read after the cancel: %d bytes, %v; want the bytes with the cancellation", n, err)
	}
}
