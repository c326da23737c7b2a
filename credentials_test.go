package dlflow_test

// Where credentials go (README "Credentials"): downloads against real
// servers (internal/credtest) that record the headers of every request,
// with mirrors and a Metalink on other origins. Only the origin the user
// named sees the credentials and the secret headers; the others see the
// harmless ones.

import (
	"encoding/base64"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/credtest"
)

const credSize, credSeed = 4<<20 + 77, 33

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// credSecrets are the credential and secret headers of credRequest, as
// they must reach the origin the user named.
var credSecrets = map[string]string{
	"Authorization": basicAuth("alice", "pw"),
	"Cookie":        "s=x",
	"X-Api-Key":     "key-1",
	"X-Session-Id":  "sess-2",
}

// credContent is the file every server serves.
func credContent() []byte {
	b := make([]byte, credSize)
	origin.Fill(b, 0, credSeed)
	return b
}

// credRequest downloads url and mirrors with basic auth (alice:pw), a
// cookie, two secret headers and a harmless one (X-Trace), ranged over 2
// connections per source in pieces of 256 KiB, trusting httptest's
// certificate.
func credRequest(url, out string, mirrors ...string) *dlflow.Request {
	return &dlflow.Request{URL: url, Mirrors: mirrors, Path: out, Topology: dlflow.Topology{Name: "ranged"},
		Connections: 2,
		Header: http.Header{"Cookie": {"s=x"}, "X-Api-Key": {"key-1"}, "X-Session-Id": {"sess-2"},
			"X-Trace": {"trace-3"}},
		Sets: []string{"http.basic_auth=alice:pw", "http.insecure=true", "stages.split.config.piece=256KiB",
			"stages.fetch.config.backoff=10ms", "stages.fetch.config.max_backoff=50ms"}}
}

// assertCarry fails unless srv got at least one request and every one
// carried want (name -> value; an empty value: the header is absent) and
// the harmless X-Trace.
func assertCarry(t *testing.T, name string, srv *credtest.Server, want map[string]string) {
	t.Helper()
	reqs := srv.Requests()
	if len(reqs) == 0 {
		t.Fatalf("%s: no request", name)
	}
	for i, r := range reqs {
		for h, v := range want {
			if got := r.Header.Get(h); got != v {
				t.Errorf("%s request %d (%s %s, range %q): %s is %q, want %q", name, i, r.Method, r.Path, r.Header.Get("Range"), h, got, v)
			}
		}
		if r.Header.Get("X-Trace") != "trace-3" {
			t.Errorf("%s request %d (%s): the harmless X-Trace is %q, want it sent", name, i, r.Path, r.Header.Get("X-Trace"))
		}
	}
}

// none is credSecrets all absent.
func none() map[string]string {
	m := map[string]string{"Proxy-Authorization": ""}
	for h := range credSecrets {
		m[h] = ""
	}
	return m
}

// TestCredentialsHTTPSPrimaryPlainMirror: an https primary and a plain
// http mirror on the same host and port (issue 18.5): the credentials go
// to https only, in none of the mirror's requests, in clear text.
func TestCredentialsHTTPSPrimaryPlainMirror(t *testing.T) {
	noLeaks(t)
	secure, plain := credtest.Pair(t, credContent())
	out := fltOut(t)
	logOpt, log := withLog(zerolog.WarnLevel)
	res, err := do(t, credRequest(secure.URL+"/file.bin", out, plain.URL+"/file.bin"), logOpt)
	fltOK(t, res, err, out, credSize, credSeed)
	assertCarry(t, "https primary", secure, credSecrets)
	assertCarry(t, "http mirror", plain, none())
	// The refusal is said, naming the mirror, once.
	if n := strings.Count(log.String(), "these sources get none"); n != 1 || !strings.Contains(log.String(), `"sources":["`+plain.URL+`/file.bin"]`) {
		t.Fatalf("%d warnings naming the mirror, want 1:\n%s", n, log.String())
	}
}

// TestCredentialsMirrorOwnUserinfo: a mirror on another origin gets only
// the credentials of its own URL; a mirror on the primary's origin (same
// scheme, host and port, another path) gets the user's.
func TestCredentialsMirrorOwnUserinfo(t *testing.T) {
	noLeaks(t)
	content := credContent()
	primary := credtest.Start(t, "127.0.0.1", content)
	other := credtest.Start(t, "127.0.0.2", content)
	mirror := strings.Replace(other.URL, "http://", "http://bob:mirror-pw@", 1) + "/file.bin"
	// Every source is asked in one download: the primary holds its
	// requests (after the probe) until both mirrors were asked, and each
	// mirror holds its own (after its first) until the other was asked.
	// While requests stall, the scheduler offers that work to the mirrors
	// not measured yet (a probe of each stalled range), so neither can be
	// left out, however the readers start; the download cannot complete
	// without both, or the holds running out (10 s).
	copyAsked, otherAsked := primary.Asked("/copy.bin"), other.Asked("/file.bin")
	both := make(chan struct{})
	go func() {
		defer close(both)
		for _, c := range []<-chan struct{}{copyAsked, otherAsked} {
			select {
			case <-c:
			case <-t.Context().Done(): // the test ended: nothing waits on both
				return
			}
		}
	}()
	primary.Hold("/file.bin", both)
	primary.Hold("/copy.bin", otherAsked)
	other.Hold("/file.bin", copyAsked)
	out := fltOut(t)
	logOpt, log := withLog(zerolog.WarnLevel)
	res, err := do(t, credRequest(primary.URL+"/file.bin", out, primary.URL+"/copy.bin", mirror), logOpt)
	fltOK(t, res, err, out, credSize, credSeed)
	if strings.Contains(log.String(), "get none") {
		t.Errorf("a warning though every source has credentials:\n%s", log.String())
	}
	copies := 0
	for _, r := range primary.Requests() {
		if r.Path == "/copy.bin" {
			copies++
		}
	}
	if ranOut := primary.RanOut() + other.RanOut(); copies == 0 || len(other.Requests()) == 0 || ranOut > 0 {
		t.Fatalf("%d requests to the copy on the primary's origin, %d to the other origin, %d held requests answered when their hold ran out: a mirror was not asked in time",
			copies, len(other.Requests()), ranOut)
	}
	assertCarry(t, "primary", primary, credSecrets)
	own := none()
	own["Authorization"] = basicAuth("bob", "mirror-pw")
	assertCarry(t, "mirror with its own userinfo", other, own)
}

// TestCredentialsMetalinkListedHosts: the Metalink's URL names the origin
// (issue 18.6). The Metalink, fetched over https from A, lists B (another
// host), A's plain-http twin (same host and port), C (another port) and A
// itself, whose URL redirects to B. Only A's requests carry the
// credentials: the .meta4 and every request to A/redir; none to B, also
// behind A's redirect, nor to the http twin, nor to C.
func TestCredentialsMetalinkListedHosts(t *testing.T) {
	noLeaks(t)
	content := credContent()
	a, aPlain := credtest.Pair(t, content)
	b := credtest.StartTLS(t, "127.0.0.2", content)
	c := credtest.StartTLS(t, "127.0.0.1", content)
	a.Redirect("/redir", b.URL+"/via-a.bin")
	meta, err := os.ReadFile(writeMetalink(t, credSize, credSeed, 0,
		b.URL+"/file.bin", aPlain.URL+"/file.bin", c.URL+"/file.bin", a.URL+"/redir"))
	if err != nil {
		t.Fatal(err)
	}
	a.Serve("/f.meta4", meta)

	out := fltOut(t)
	req := credRequest("", out)
	req.Metalink = a.URL + "/f.meta4"
	res, err := do(t, req)
	fltOK(t, res, err, out, credSize, credSeed)
	if res.URL != b.URL+"/file.bin" {
		t.Fatalf("primary %q, want the Metalink's first URL %q", res.URL, b.URL+"/file.bin")
	}
	assertCarry(t, "A (the Metalink's origin)", a, credSecrets)
	assertCarry(t, "B (another host)", b, none())
	assertCarry(t, "A over http", aPlain, none())
	assertCarry(t, "C (another port)", c, none())
	redirected := 0
	for _, r := range b.Requests() {
		if r.Path == "/via-a.bin" {
			redirected++
		}
	}
	var asked []string
	for _, r := range a.Requests() {
		asked = append(asked, r.Path)
	}
	if redirected == 0 || !strings.Contains(strings.Join(asked, " "), "/redir") {
		t.Fatalf("A was asked %v and B got %d redirected requests: the redirect was not exercised", asked, redirected)
	}
}
