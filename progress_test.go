package dlflow_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// The ETA of a download whose rate is not measured yet is ETAUnknown,
// which prints "unknown" (not "-1ns"); the first Progress call at least
// 100 ms after the transfer began already has a rate, and an ETA.
func TestProgressEarlyRateAndUnknownETA(t *testing.T) {
	noLeaks(t)
	const size = 4 << 20
	srv := startOrigin(t, origin.Options{Size: size, Seed: 41})
	out := fltOut(t)
	started := make(chan struct{})
	req := &dlflow.Request{URL: srv.URL(), Path: out, LimitRate: 1 << 20,
		Hooks: dlflow.Hooks{Started: func(*dlflow.Download) { close(started) }}}
	d := newClient(t).Start(t.Context(), req)
	// Before the probe answered: no size, no rate.
	if p := d.Progress(); p.ETA != dlflow.ETAUnknown || fmt.Sprint(p.ETA) != "unknown" || p.Rate != 0 {
		t.Errorf("progress at the start: rate %v, ETA %v (%d); want 0, unknown", p.Rate, p.ETA, int64(p.ETA))
	} else if _, ok := p.ETA.Duration(); ok {
		t.Errorf("an unknown ETA has a duration")
	}
	select {
	case <-started:
	case <-time.After(testTimeout):
		t.Fatal("Hooks.Started not called")
	}
	// Bytes arrive about 200 ms in (the limiter lets 256 KiB through at a
	// time); the first call after that must show a rate. (Before, the
	// first call only set the meter's baseline and read 0.)
	time.Sleep(600 * time.Millisecond)
	p := d.Progress() // the first call since the transfer began
	eta, known := p.ETA.Duration()
	switch {
	case p.Done == 0 || p.Done == size:
		t.Logf("done %d of %d 600ms in: the machine is too busy or too fast for the test to show anything", p.Done, size)
	case p.Rate <= 0 || !known || eta <= 0 || fmt.Sprint(p.ETA) == "unknown":
		t.Errorf("first progress 600ms in: done %d, rate %v, ETA %v; want a rate and an ETA", p.Done, p.Rate, p.ETA)
	case p.Rate > 8<<20:
		t.Errorf("rate %.0f B/s under a limit of 1 MiB/s", p.Rate)
	}
	res, err := d.Wait()
	fltOK(t, res, err, out, size, 41)
	if p := d.Progress(); p.ETA != 0 || fmt.Sprint(p.ETA) != "0s" {
		t.Errorf("ETA after the end: %v", p.ETA)
	}
}

func TestRemainingString(t *testing.T) {
	cases := []struct {
		r    dlflow.Remaining
		want string
	}{
		{dlflow.ETAUnknown, "unknown"},
		{0, "0s"},
		{dlflow.Remaining(1234567 * time.Microsecond), "1s"},
		{dlflow.Remaining(95 * time.Second), "1m35s"},
		{dlflow.Remaining(250400 * time.Microsecond), "250ms"},
	}
	for _, c := range cases {
		if got := c.r.String(); got != c.want {
			t.Errorf("%d: %q, want %q", int64(c.r), got, c.want)
		}
	}
}
