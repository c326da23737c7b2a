package origin

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestFaultChangeAgain: with ChangeAgain the resource changes after every
// ChangeETagAfter GETs, each version with its own ETag, date and content.
func TestFaultChangeAgain(t *testing.T) {
	const size = 1000
	s := startServer(t, Options{Size: size, Seed: testSeed})
	c := newClient(t, false)
	s.SetFaults(Faults{ChangeETagAfter: 2, ChangeAgain: true})
	for k := range 3 {
		for range 2 {
			r := do(t, c, http.MethodGet, s.URL())
			wantHeader(t, r, "ETag", fmt.Sprintf(`"%x-%x"`, size, testSeed+k))
			wantHeader(t, r, "Last-Modified", DefaultLastModified.Add(time.Duration(k)*time.Hour).Format(http.TimeFormat))
			wantFull(t, r, size, testSeed+uint64(k))
		}
	}

	custom := startServer(t, Options{Size: size, Seed: testSeed, ETag: `"abc"`})
	custom.SetFaults(Faults{ChangeETagAfter: 1, ChangeAgain: true})
	for _, want := range []string{`"abc"`, `"abc-changed"`, `"abc-changed-2"`} {
		wantHeader(t, do(t, c, http.MethodGet, custom.URL()), "ETag", want)
	}
}

// TestFaultContentDisposition: the header is sent on HEAD, 200 and 206.
func TestFaultContentDisposition(t *testing.T) {
	s := startServer(t, Options{Size: 100, Seed: testSeed})
	c := newClient(t, false)
	const cd = `attachment; filename="../../etc/passwd"`
	s.SetFaults(Faults{ContentDisposition: cd})
	for _, r := range []result{
		do(t, c, http.MethodHead, s.URL()),
		do(t, c, http.MethodGet, s.URL()),
		do(t, c, http.MethodGet, s.URL(), "Range", "bytes=1-2"),
	} {
		wantHeader(t, r, "Content-Disposition", cd)
	}
}

// TestFaultLogsAuthorization: the request log keeps the Authorization
// header, so tests can tell where credentials went.
func TestFaultLogsAuthorization(t *testing.T) {
	s := startServer(t, Options{Size: 10, Seed: testSeed})
	c := newClient(t, false)
	do(t, c, http.MethodGet, s.URL(), "Authorization", "Bearer x")
	if log := s.Log(); len(log) != 1 || log[0].Authorization != "Bearer x" {
		t.Fatalf("log %+v", log)
	}
}
