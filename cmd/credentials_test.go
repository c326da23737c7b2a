package cmd

import (
	"encoding/base64"
	"path/filepath"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/internal/credtest"
)

// TestCLICredentialsStayOnHTTPS: `dlflow https://h/f --mirror http://h/f
// -u alice:pw -H 'Cookie: s=x'` (issue 18.5), with the https primary and
// the plain-http mirror on the same host and port: the file is right, every
// request to https carries the credentials, none to http does, and the
// harmless -H header goes to both. The primary holds its requests after
// the probe until the mirror was asked: on a 3 MiB file two connections of
// the primary alone may finish before the mirror gets any work (2 of 20
// runs under -race), and a mirror never asked proves nothing.
func TestCLICredentialsStayOnHTTPS(t *testing.T) {
	const size, seed = 3<<20 + 11, 44
	content := make([]byte, size)
	origin.Fill(content, 0, seed)
	secure, plain := credtest.Pair(t, content)
	secure.Hold("/f.bin", plain.Asked("/f.bin"))
	out := filepath.Join(t.TempDir(), "out.bin")
	res := runCLI(t, secure.URL+"/f.bin", "--mirror", plain.URL+"/f.bin", "-u", "alice:pw",
		"-H", "Cookie: s=x", "-H", "X-Api-Key: key-1", "-H", "X-Trace: trace-3", "-k",
		"-c", examplePath("ranged"), "--connections", "2", "--set", "stages.split.config.piece=256KiB", "-o", out)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	assertComplete(t, out, size, seed)
	if n := secure.RanOut(); n != 0 {
		t.Errorf("%d request(s) of the primary waited out their hold: the mirror was not asked", n)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))
	for _, s := range []struct {
		name string
		srv  *credtest.Server
		with bool
	}{{"https", secure, true}, {"http", plain, false}} {
		reqs := s.srv.Requests()
		if len(reqs) == 0 {
			t.Fatalf("%s: no request", s.name)
		}
		for i, r := range reqs {
			got := [3]string{r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("X-Api-Key")}
			want := [3]string{}
			if s.with {
				want = [3]string{auth, "s=x", "key-1"}
			}
			if got != want || r.Header.Get("X-Trace") != "trace-3" {
				t.Errorf("%s request %d: Authorization, Cookie, X-Api-Key %q, want %q; X-Trace %q", s.name, i, got, want, r.Header.Get("X-Trace"))
			}
		}
	}
}
