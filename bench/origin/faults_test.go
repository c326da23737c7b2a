package origin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
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

// TestFaultFailAnyMethod: FailStatus with FailAnyMethod fails HEAD too, and
// the budget is shared by both methods.
func TestFaultFailAnyMethod(t *testing.T) {
	s := startServer(t, Options{Size: 100, Seed: testSeed})
	c := newClient(t, false)
	s.SetFaults(Faults{FailStatus: 503, FailCount: 2, RetryAfter: "1", FailAnyMethod: true})
	head := do(t, c, http.MethodHead, s.URL())
	wantStatus(t, head, 503)
	wantHeader(t, head, "Retry-After", "1")
	get := do(t, c, http.MethodGet, s.URL())
	wantStatus(t, get, 503)
	wantHeader(t, get, "Retry-After", "1")
	wantStatus(t, do(t, c, http.MethodHead, s.URL()), 200)
	wantFull(t, do(t, c, http.MethodGet, s.URL()), 100, testSeed)

	// Without it, HEAD is not failed and does not spend the budget.
	s.SetFaults(Faults{FailStatus: 500, FailCount: 1})
	wantStatus(t, do(t, c, http.MethodHead, s.URL()), 200)
	wantStatus(t, do(t, c, http.MethodGet, s.URL()), 500)
	wantStatus(t, do(t, c, http.MethodGet, s.URL()), 200)
}

// TestFaultResetRequests: the first requests of any method get a reset
// connection and no answer; the next ones are served.
func TestFaultResetRequests(t *testing.T) {
	s := startServer(t, Options{Size: 100, Seed: testSeed})
	c := newClient(t, false)
	s.SetFaults(Faults{ResetRequests: 2, FailStatus: 503, FailCount: 1, FailAnyMethod: true})
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(method, s.URL(), nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: got %s, want a reset connection", method, resp.Status)
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Fatalf("%s: %v, want a connection reset", method, err)
		}
	}
	wantStatus(t, do(t, c, http.MethodHead, s.URL()), 503) // the reset budget is spent first
	wantFull(t, do(t, c, http.MethodGet, s.URL()), 100, testSeed)
	s.WaitIdle(5 * time.Second)
	if st := s.Stats(); st.HEADs != 2 || st.GETs != 2 {
		t.Fatalf("stats %+v, want 2 HEADs and 2 GETs", st)
	}
	log := s.Log()
	if len(log) != 4 || log[0].Status != 0 || log[1].Status != 0 || log[2].Status != 503 || log[3].Status != 200 {
		t.Fatalf("log %+v, want two unanswered requests, a 503, a 200", log)
	}
}

// rawExchange sends request on a new connection and returns all the bytes
// the server sends until it closes the connection.
func rawExchange(t *testing.T, s *Server, request string) []byte {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.BaseURL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading until the server closes: %v (after %d bytes)", err, len(got))
	}
	return got
}

// splitAnswer cuts raw bytes after the header of the first answer,
// checking its status line and Content-Length.
func splitAnswer(t *testing.T, raw []byte, status string, length int) []byte {
	t.Helper()
	head, rest, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of header in %q", raw)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 "+status+"\r\n")) || !bytes.Contains(head, fmt.Appendf(nil, "\r\nContent-Length: %d\r\n", length)) {
		t.Fatalf("header %q, want %s with Content-Length %d", head, status, length)
	}
	return rest
}

// TestFaultHEADBody: the answer to HEAD is followed on the wire by the
// file's bytes, which HEAD must not carry, then the connection closes.
func TestFaultHEADBody(t *testing.T) {
	const size = 3000
	s := startServer(t, Options{Size: size, Seed: testSeed})
	s.SetFaults(Faults{HEADBody: true})
	raw := rawExchange(t, s, "HEAD /file.bin HTTP/1.1\r\nHost: origin\r\n\r\n")
	if rest := splitAnswer(t, raw, "200 OK", size); !bytes.Equal(rest, content(0, size, testSeed)) {
		t.Fatalf("after the HEAD answer: %d bytes, want the %d bytes of the file", len(rest), size)
	}
	s.SetFaults(Faults{})
	raw = rawExchange(t, s, "HEAD /file.bin HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n")
	if rest := splitAnswer(t, raw, "200 OK", size); len(rest) != 0 {
		t.Fatalf("without the fault, %d bytes after the HEAD answer", len(rest))
	}
}

// TestFaultExtraBytes: complete GET bodies, 200 and 206, are followed by
// the extra bytes, then the connection closes.
func TestFaultExtraBytes(t *testing.T) {
	const size, extra = 3000, "\r\nstray bytes\r\n"
	s := startServer(t, Options{Size: size, Seed: testSeed})
	s.SetFaults(Faults{ExtraBytes: extra})
	raw := rawExchange(t, s, "GET /file.bin HTTP/1.1\r\nHost: origin\r\n\r\n")
	if rest := splitAnswer(t, raw, "200 OK", size); !bytes.Equal(rest, append(content(0, size, testSeed), extra...)) {
		t.Fatalf("200: %d bytes after the header, want the file and %q", len(rest), extra)
	}
	raw = rawExchange(t, s, "GET /file.bin HTTP/1.1\r\nHost: origin\r\nRange: bytes=10-19\r\n\r\n")
	if rest := splitAnswer(t, raw, "206 Partial Content", 10); !bytes.Equal(rest, append(content(10, 10, testSeed), extra...)) {
		t.Fatalf("206: %q after the header", rest)
	}
}

// TestFaultIgnoreIfRange: with ChangeETagAfter and IgnoreIfRange, a range
// request whose If-Range names the old version is answered 206 with the
// new version's bytes and validators.
func TestFaultIgnoreIfRange(t *testing.T) {
	const size = 1000
	s := startServer(t, Options{Size: size, Seed: testSeed})
	c := newClient(t, false)
	s.SetFaults(Faults{ChangeETagAfter: 1, IgnoreIfRange: true})
	oldTag := fmt.Sprintf(`"%x-%x"`, size, testSeed)
	wantHeader(t, do(t, c, http.MethodGet, s.URL(), "Range", "bytes=0-99"), "ETag", oldTag)
	r := do(t, c, http.MethodGet, s.URL(), "Range", "bytes=100-199", "If-Range", oldTag)
	wantStatus(t, r, http.StatusPartialContent)
	wantHeader(t, r, "ETag", fmt.Sprintf(`"%x-%x"`, size, testSeed+1))
	wantHeader(t, r, "Last-Modified", DefaultLastModified.Add(time.Hour).Format(http.TimeFormat))
	wantHeader(t, r, "Content-Range", fmt.Sprintf("bytes 100-199/%d", size))
	if !bytes.Equal(r.body, content(100, 100, testSeed+1)) {
		t.Fatal("body is not the new version's")
	}
}
