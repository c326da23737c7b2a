package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestFaultIgnoreIfRangeBothWays: a changed file is served as 206 of the new
// version to an If-Range naming the old one; without the fault, 200.
func TestFaultIgnoreIfRangeBothWays(t *testing.T) {
	const size = 1000
	s := startServer(t, Options{Size: size, Seed: testSeed})
	c := newClient(t, false)
	old := fmt.Sprintf(`"%x-%x"`, size, testSeed)
	for _, ignore := range []bool{false, true} {
		s.SetFaults(Faults{ChangeETagAfter: 1, IgnoreIfRange: ignore})
		do(t, c, http.MethodGet, s.URL())
		r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=10-19", "If-Range", old)
		want, body := http.StatusOK, content(0, size, testSeed+1)
		if ignore {
			want, body = http.StatusPartialContent, content(10, 10, testSeed+1)
		}
		wantStatus(t, r, want)
		if !bytes.Equal(r.body, body) {
			t.Fatalf("ignore %v: body of %d bytes is not the new version's", ignore, len(r.body))
		}
	}
}

// TestFaultWrongTotal: the 206's Content-Range declares another total;
// the range and its bytes are right.
func TestFaultWrongTotal(t *testing.T) {
	s := startServer(t, Options{Size: 1000, Seed: testSeed})
	c := newClient(t, false)
	s.SetFaults(Faults{WrongTotal: 7})
	r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=10-19")
	wantStatus(t, r, http.StatusPartialContent)
	wantHeader(t, r, "Content-Range", "bytes 10-19/1007")
	if !bytes.Equal(r.body, content(10, 10, testSeed)) {
		t.Fatal("body is not the range's")
	}
}

// TestFaultSilent: the chosen GETs get no answer until the client gives
// up; the others are served.
func TestFaultSilent(t *testing.T) {
	s := startServer(t, Options{Size: 100, Seed: testSeed})
	s.SetFaults(Faults{SilentAfter: 1, SilentCount: 1})
	c := newClient(t, false)
	wantFull(t, do(t, c, http.MethodGet, s.URL()), 100, testSeed)
	quick := &http.Client{Transport: c.Transport, Timeout: 300 * time.Millisecond}
	if resp, err := quick.Get(s.URL()); err == nil {
		resp.Body.Close()
		t.Fatalf("the second GET was answered %s", resp.Status)
	}
	wantFull(t, do(t, c, http.MethodGet, s.URL()), 100, testSeed)
	if !s.WaitIdle(10 * time.Second) {
		t.Fatal("the silent handler did not end when the client went away")
	}
	if st := s.Stats(); st.GETs != 3 {
		t.Fatalf("%d GETs, want 3", st.GETs)
	}
}

// TestContent: Options.Content gives each version's bytes, to GETs,
// ranges and the digest.
func TestContent(t *testing.T) {
	version := func(seed uint64) []byte { return bytes.Repeat([]byte{byte(seed)}, 100) }
	s := startServer(t, Options{Size: 100, Seed: 7, Content: version})
	c := newClient(t, false)
	s.SetFaults(Faults{ChangeETagAfter: 2, ReprDigest: "sha-256"})
	if r := do(t, c, http.MethodGet, s.URL()); !bytes.Equal(r.body, version(7)) {
		t.Fatalf("body %q", r.body)
	}
	if r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=90-"); !bytes.Equal(r.body, version(7)[90:]) {
		t.Fatalf("range %q", r.body)
	}
	r := do(t, c, http.MethodGet, s.URL())
	if !bytes.Equal(r.body, version(8)) {
		t.Fatalf("changed version %q", r.body)
	}
	sum := sha256.Sum256(version(8))
	wantHeader(t, r, "Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
}

// TestFaultStall: the first StallRequests bodies stop after StallAfter
// bytes and hold the connection until the client gives up; the next is
// whole.
func TestFaultStall(t *testing.T) {
	s := startServer(t, Options{Size: 1000, Seed: testSeed})
	s.SetFaults(Faults{StallAfter: 100, StallRequests: 1})
	c := newClient(t, false)
	quick := &http.Client{Transport: c.Transport, Timeout: 500 * time.Millisecond}
	resp, err := quick.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A timeout, not the unexpected EOF of a cut: the connection stayed open.
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !bytes.Equal(body, content(0, 100, testSeed)) {
		t.Fatalf("stalled body: %d bytes, %v; want the first 100 and a timeout", len(body), err)
	}
	wantFull(t, do(t, c, http.MethodGet, s.URL()), 1000, testSeed)
	if !s.WaitIdle(10 * time.Second) {
		t.Fatal("the stalled handler did not end when the client went away")
	}
}
