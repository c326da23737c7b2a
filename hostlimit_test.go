package dlflow

import (
	"context"
	"testing"
)

func TestHostKey(t *testing.T) {
	for in, want := range map[string]string{
		"http://Example.com/x":       "example.com:80",
		"https://example.com/x":      "example.com:443",
		"http://example.com:80/y":    "example.com:80",
		"http://127.0.0.1:8080/":     "127.0.0.1:8080",
		"https://u:p@[::1]:8443/f":   "[::1]:8443",
		"not a url":                  "",
		"http:///nohost":             "",
		"ftp://example.com/whatever": "example.com:80",
	} {
		if got := hostKey(in); got != want {
			t.Errorf("hostKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHostLimiter: a weight above the limit is cut to it instead of
// waiting forever, and a cancelled wait takes nothing.
func TestHostLimiter(t *testing.T) {
	l := newHostLimiter(2)
	ctx := context.Background()
	rel1, err := l.acquire(ctx, "h:1", 5) // capped to 2
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.acquire(cctx, "h:1", 1); err == nil {
		t.Fatal("acquired a slot of a full host")
	}
	other, err := l.acquire(ctx, "h:2", 2) // another host is not affected
	if err != nil {
		t.Fatal(err)
	}
	other()
	rel1()
	rel1() // a second release gives nothing back twice
	rel2, err := l.acquire(ctx, "h:1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(l.slotsOf("h:1").slots); n != 2 {
		t.Fatalf("%d slots in use, want 2", n)
	}
	rel2()
	if n := len(l.slotsOf("h:1").slots); n != 0 {
		t.Fatalf("%d slots in use after release, want 0", n)
	}
}
