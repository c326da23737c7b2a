package nginx

import (
	"errors"
	"testing"
)

// StartT starts nginx for a test: it skips the test when nginx is not
// installed, fails it on other errors and registers Close as a cleanup.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if errors.Is(err, ErrNotInstalled) {
		t.Skip("nginx not installed: apt-get install nginx")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("nginx: Close: %v", err)
		}
	})
	return s
}
