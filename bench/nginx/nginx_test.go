package nginx

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/origin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func writeFile(t *testing.T, name string, size int64, seed uint64) string {
	t.Helper()
	dir := t.TempDir()
	if err := origin.WriteFile(filepath.Join(dir, name), size, seed); err != nil {
		t.Fatal(err)
	}
	return dir
}

func client(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func get(t *testing.T, c *http.Client, url, rng string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func content(off, n int64, seed uint64) []byte {
	p := make([]byte, n)
	origin.Fill(p, off, seed)
	return p
}

func TestServeFullAndRanges(t *testing.T) {
	const size, seed = 8<<20 + 7, 11
	s := StartT(t, Options{Root: writeFile(t, "f.bin", size, seed)})
	c := client(t)
	url := s.BaseURL() + "/f.bin"

	resp, body := get(t, c, url, "")
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	if sha256.Sum256(body) != origin.SHA256(size, seed) {
		t.Fatal("full body sha256 mismatch")
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("ETag") == "" {
		t.Fatalf("headers: %v", resp.Header)
	}

	cases := []struct {
		rng        string
		start, end int64
	}{
		{"bytes=1000-1999", 1000, 1999},
		{"bytes=4194301-", 4194301, size - 1},
		{"bytes=-77", size - 77, size - 1},
	}
	for _, tc := range cases {
		resp, body := get(t, c, url, tc.rng)
		want := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, size)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != want {
			t.Fatalf("%s: status %d, Content-Range %q", tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"))
		}
		if !bytes.Equal(body, content(tc.start, tc.end-tc.start+1, seed)) {
			t.Fatalf("%s: body mismatch", tc.rng)
		}
	}

	resp, _ = get(t, c, s.BaseURL()+"/missing", "")
	if resp.StatusCode != 404 {
		t.Fatalf("missing file: status %d", resp.StatusCode)
	}
	// nginx writes the access log line after the response is sent, so the
	// last line may land a moment after the client has read the body.
	var log string
	var err error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if log, err = s.AccessLog(); err != nil || strings.Count(log, "\n") >= 5 {
			break
		}
	}
	if err != nil || strings.Count(log, "\n") != 5 || !strings.Contains(log, `206 77 "bytes=-77"`) {
		t.Fatalf("access log (%v):\n%s", err, log)
	}
}

func TestMaxRangesZero(t *testing.T) {
	const size, seed = 100000, 3
	zero := 0
	s := StartT(t, Options{Root: writeFile(t, "a.bin", size, seed), MaxRanges: &zero})
	resp, body := get(t, client(t), s.BaseURL()+"/a.bin", "bytes=10-19")
	if resp.StatusCode != 200 || sha256.Sum256(body) != origin.SHA256(size, seed) {
		t.Fatalf("status %d, %d bytes; want full 200", resp.StatusCode, len(body))
	}
}

func TestLimitRate(t *testing.T) {
	const size, seed = 1536 << 10, 5
	s := StartT(t, Options{Root: writeFile(t, "slow.bin", size, seed), LimitRate: "512k"})
	start := time.Now()
	_, body := get(t, client(t), s.BaseURL()+"/slow.bin", "")
	// nginx lets one second's worth through at once; the rest takes ~2s.
	if el := time.Since(start); el < time.Second {
		t.Fatalf("1.5 MiB at 512k/s took only %v", el)
	}
	if sha256.Sum256(body) != origin.SHA256(size, seed) {
		t.Fatal("sha256 mismatch")
	}
}

func TestExtraAndClose(t *testing.T) {
	s, err := Start(Options{Root: writeFile(t, "x.bin", 10, 1), Extra: `add_header X-Test "yes";`})
	if errors.Is(err, ErrNotInstalled) {
		t.Skip("nginx not installed: apt-get install nginx")
	}
	if err != nil {
		t.Fatal(err)
	}
	c := client(t)
	resp, body := get(t, c, s.BaseURL()+"/x.bin", "")
	if resp.Header.Get("X-Test") != "yes" || !bytes.Equal(body, content(0, 10, 1)) {
		t.Fatalf("Extra directive not applied or body wrong: %v", resp.Header)
	}
	c.CloseIdleConnections()
	dir := s.dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp dir still present: %v", err)
	}
	if s.cmd.ProcessState == nil {
		t.Fatal("nginx process not reaped")
	}
	if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("port still accepting after Close")
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := Binary(); err != nil {
		t.Skip("nginx not installed: apt-get install nginx")
	}
	_, err := Start(Options{Root: t.TempDir(), LimitRate: "not-a-rate"})
	if err == nil || errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "limit_rate") {
		t.Fatalf("want startup error mentioning limit_rate, got %v", err)
	}
	if _, err := Start(Options{Root: filepath.Join(t.TempDir(), "nope")}); err == nil {
		t.Fatal("missing root accepted")
	}
}

func TestConfigUserDirective(t *testing.T) {
	n := 2
	conf := config("/tmp/d", "/srv", "127.0.0.1:1234", Options{MaxRanges: &n, LimitRate: "25m"})
	hasUser := strings.Contains(conf, "user root;")
	if hasUser != (os.Geteuid() == 0) {
		t.Fatalf("user directive present=%v with euid %d", hasUser, os.Geteuid())
	}
	for _, want := range []string{"listen 127.0.0.1:1234;", "max_ranges 2;", "limit_rate 25m;", `root "/srv";`, "sendfile on;", "daemon off;", strconv.Quote("/tmp/d/nginx.pid")} {
		if !strings.Contains(conf, want) {
			t.Fatalf("config lacks %q:\n%s", want, conf)
		}
	}
}
