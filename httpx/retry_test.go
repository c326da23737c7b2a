package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&HTTPError{Status: 503}, true},
		{&HTTPError{Status: 429}, true},
		{&HTTPError{Status: 408}, true},
		{fmt.Errorf("wrapped: %w", &HTTPError{Status: 502}), true},
		{&HTTPError{Status: 404}, false},
		{&HTTPError{Status: 416}, false},
		{&HTTPError{Status: 418}, false},
		{&HTTPError{Status: 301}, false},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("body: %w", io.EOF), true},
		{fmt.Errorf("x: %w", ErrStalled), true},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, false},
		{&net.DNSError{Err: "timeout", IsTimeout: true}, true},
		{context.Canceled, false},
		{fmt.Errorf("%w: x", ErrResourceChanged), false},
		{&RangeError{}, false},
		{&EncodingError{}, false},
		{&RedirectError{}, false},
		{errors.New("something odd"), false},
		{nil, false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{" 3 ", 3 * time.Second, true},
		{"86400", maxRetryAfter, true},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(time.Hour).Format(http.TimeFormat), maxRetryAfter, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
	} {
		d, ok := parseRetryAfter(tc.in, now)
		if d != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, d, ok, tc.want, tc.ok)
		}
	}
}

func TestRetrierBackoff(t *testing.T) {
	cfg := RetryConfig{Attempts: 100, Total: 100, Backoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}
	r := Retrier{Config: cfg, Budget: &RetryBudget{}}
	for attempt, ceiling := range []time.Duration{10, 20, 40, 80, 80, 80} {
		r.attempt = attempt + 1
		for range 50 {
			if d := r.delay(io.EOF); d < 0 || d > ceiling*time.Millisecond {
				t.Fatalf("attempt %d: delay %v beyond %v", r.attempt, d, ceiling*time.Millisecond)
			}
		}
	}
	r.attempt = 1000 // no overflow
	if d := r.delay(io.EOF); d < 0 || d > cfg.MaxBackoff {
		t.Fatalf("delay %v", d)
	}
	he := &HTTPError{Status: 503, retryAfter: 2 * time.Second, hasRetryAfter: true}
	if d := r.delay(he); d != 2*time.Second {
		t.Fatalf("Retry-After ignored: %v", d)
	}
}

func TestRetrierBudgets(t *testing.T) {
	ctx := context.Background()
	b := &RetryBudget{}
	b.Reset(3)
	r := Retrier{Config: RetryConfig{Attempts: 2, Total: 3}, Budget: b}
	if _, err := r.Next(ctx, io.EOF, false); err != nil {
		t.Fatalf("first retry refused: %v", err)
	}
	if _, err := r.Next(ctx, io.EOF, false); err == nil {
		t.Fatal("attempts not enforced")
	}
	// Progress resets the per-piece count but not the shared budget.
	r = Retrier{Config: RetryConfig{Attempts: 2, Total: 3}, Budget: b}
	for i := range 2 {
		if _, err := r.Next(ctx, io.EOF, true); err != nil {
			t.Fatalf("retry %d refused: %v", i, err)
		}
	}
	_, err := r.Next(ctx, io.EOF, true)
	if !errors.Is(err, io.EOF) || err.Error() != "giving up: the stage's 3 retries are spent: EOF" {
		t.Fatalf("err = %v", err)
	}
	if _, err := r.Next(ctx, &HTTPError{Status: 404}, false); err.Error() != "http 404 Not Found from " {
		t.Fatalf("permanent error rewrapped: %v", err)
	}
}

func TestSleepStopsAtCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	// The sleep is an hour: any bound far below it shows the cancel
	// ended it; 30 s leaves a loaded machine its margin.
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("sleep took %v after cancel", d)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func ExampleIsTransient() {
	fmt.Println(IsTransient(&HTTPError{Status: 503}), IsTransient(&HTTPError{Status: 404}))
	// Output: true false
}
