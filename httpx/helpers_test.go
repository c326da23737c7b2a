package httpx

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// htNoLeaks checks, after every other cleanup of the test, that the test
// left no goroutine behind. Call it first.
func htNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// htClient returns a client with the default config whose idle connections
// are closed when the test ends.
func htClient(t testing.TB, mod func(*HTTPConfig)) (*http.Client, http.Header) {
	t.Helper()
	cfg := DefaultHTTPConfig()
	if mod != nil {
		mod(&cfg)
	}
	c, h, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, h
}

// htProbe probes url with a default client.
func htProbe(t testing.TB, url string) *pipeline.Resource {
	t.Helper()
	c, h := htClient(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Probe(ctx, c, h, url)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return res
}

// htOrigin starts the test origin with size bytes of seed 1.
func htOrigin(t testing.TB, size int64, mod func(*origin.Options)) *origin.Server {
	t.Helper()
	opts := origin.Options{Size: size, Seed: 1}
	if mod != nil {
		mod(&opts)
	}
	srv, err := origin.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func htCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
