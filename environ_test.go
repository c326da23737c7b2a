package dlflow_test

import (
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// TestEnvironNilReadsNone: with Request.Environ nil the library reads no
// DLFLOW_ variable of the process, whichever topology runs (a built-in one
// by name used to read them all, and fail on any it did not know).
func TestEnvironNilReadsNone(t *testing.T) {
	t.Setenv("DLFLOW_NOT_A_KEY", "1")
	t.Setenv("DLFLOW_HTTP__HEADER_TIMEOUT", "-1s") // refused: negative
	srv := startOrigin(t, origin.Options{Size: 100 << 10, Seed: 5})
	for _, topology := range []string{"", "stream", "buffered", "ranged", "ranged-ordered"} {
		t.Run("topology="+topology, func(t *testing.T) {
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Topology: dlflow.Topology{Name: topology}})
			fltOK(t, res, err, out, 100<<10, 5)
		})
	}
}
