package origin

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestConnRateLimitSpansResponses: the responses of one keep-alive
// connection draw from one allowance, and an idle pause between them
// (as Latency makes) does not save any up.
func TestConnRateLimitSpansResponses(t *testing.T) {
	const size, rate = 64 << 10, 128 << 10
	s := startServer(t, Options{Size: size, Seed: 3, ConnRateLimit: rate})
	burst := time.Duration(connBurst(rate))
	lower := func(bytes int64) time.Duration { return (time.Duration(bytes) - burst) * time.Second / rate }
	c := newClient(t, false)
	start := time.Now()
	wantFull(t, do(t, c, http.MethodGet, s.URL()), size, 3)
	wantFull(t, do(t, c, http.MethodGet, s.URL()), size, 3)
	if el := time.Since(start); el < lower(2*size) {
		t.Errorf("two responses of 64 KiB on one connection at 128 KiB/s took %v, want at least %v", el, lower(2*size))
	}
	time.Sleep(300 * time.Millisecond) // idle: a real link saves nothing up
	start = time.Now()
	wantFull(t, do(t, c, http.MethodGet, s.URL()), size, 3)
	if el := time.Since(start); el < lower(size) {
		t.Errorf("64 KiB after an idle pause took %v, want at least %v", el, lower(size))
	}
	s.WaitIdle(5 * time.Second)
	log := s.Log()
	if st := s.Stats(); st.ConnsAccepted != 1 || st.GETs != 3 || len(log) != 3 || log[0].RemoteAddr != log[2].RemoteAddr {
		t.Errorf("stats %+v, log %+v; want 3 GETs on one connection", st, log)
	}
}

// TestConnRateLimitPerConnection: each connection has a cap of its own,
// so four in parallel move clearly more than one cap's worth per second,
// and each still takes its own bytes' time; Close interrupts a capped
// write.
func TestConnRateLimitPerConnection(t *testing.T) {
	const size, rate, conns = 128 << 10, 64 << 10, 4
	s := startServer(t, Options{Size: size, Seed: 4, ConnRateLimit: rate})
	lower := (time.Duration(size) - time.Duration(connBurst(rate))) * time.Second / rate // 1.97s
	// One cap shared by all would need 8s for the four; a cap each, 2s.
	const upper = 5 * time.Second
	tr := &http.Transport{MaxConnsPerHost: conns}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	took := make([]time.Duration, conns)
	bodies := make([][]byte, conns)
	errs := make([]error, conns)
	start := time.Now()
	for i := range conns {
		wg.Go(func() {
			resp, err := c.Get(s.URL())
			if err == nil {
				bodies[i], err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			took[i], errs[i] = time.Since(start), err
		})
	}
	wg.Wait()
	total := time.Since(start)
	for i, body := range bodies {
		if errs[i] != nil || string(body) != string(content(0, size, 4)) {
			t.Fatalf("connection %d: %v, %d bytes, or not the content", i, errs[i], len(body))
		}
		if took[i] < lower {
			t.Errorf("connection %d: 128 KiB at 64 KiB/s took %v, want at least %v", i, took[i], lower)
		}
	}
	if total >= upper {
		t.Errorf("four connections of 128 KiB at 64 KiB/s each took %v, want under %v", total, upper)
	}
	if st := s.Stats(); st.ConnsAccepted != conns || st.MaxOpenConns != conns {
		t.Errorf("stats %+v, want %d connections accepted and open at once", st, conns)
	}

	big, err := Start(Options{Size: 10 << 20, ConnRateLimit: rate})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := c.Get(big.URL())
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); big.Stats().Requests == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	closeStart := time.Now()
	if err := big.Close(); err != nil {
		t.Fatal(err)
	}
	// 10 MiB at 64 KiB/s would take 160 s; 20 s leaves room for load.
	if el := time.Since(closeStart); el > 20*time.Second {
		t.Errorf("Close took %v", el)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("a capped download of 10 MiB completed despite Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client did not finish after Close")
	}
}

// TestFiles: Options.Files serves files of their own content and ETag
// beside the main file; other paths under /files/ are not found, and
// ResetStats zeroes the count of accepted connections.
func TestFiles(t *testing.T) {
	const size, seed = 1000, 7
	s := startServer(t, Options{Size: size, Seed: seed, Files: 3})
	c := newClient(t, false)
	etags := map[string]bool{}
	for i := range 3 {
		if want := fmt.Sprintf("%s/files/%d.bin", s.BaseURL(), i); s.FileURL(i) != want {
			t.Fatalf("FileURL(%d) = %q, want %q", i, s.FileURL(i), want)
		}
		r := do(t, c, http.MethodGet, s.FileURL(i))
		wantStatus(t, r, 200)
		wantFull(t, r, size, FileSeed(seed, i))
		wantHeader(t, r, "ETag", fmt.Sprintf(`"%x-%x"`, size, FileSeed(seed, i)))
		etags[r.resp.Header.Get("ETag")] = true
		r = do(t, c, http.MethodGet, s.FileURL(i), "Range", "bytes=10-19")
		wantStatus(t, r, 206)
		if string(r.body) != string(content(10, 10, FileSeed(seed, i))) {
			t.Errorf("file %d: range 10-19 is not its content", i)
		}
	}
	r := do(t, c, http.MethodGet, s.URL())
	wantFull(t, r, size, seed)
	etags[r.resp.Header.Get("ETag")] = true
	if len(etags) != 4 {
		t.Errorf("ETags %v: want four different ones", etags)
	}
	for _, path := range []string{"/files/3.bin", "/files/01.bin", "/files/-1.bin", "/files/1", "/files/"} {
		wantStatus(t, do(t, c, http.MethodGet, s.BaseURL()+path), 404)
	}
	s.WaitIdle(5 * time.Second)
	if st := s.Stats(); st.ConnsAccepted != 1 || st.Requests != 12 {
		t.Errorf("stats %+v, want 12 requests on 1 connection", st)
	}
	s.ResetStats()
	if st := s.Stats(); st.ConnsAccepted != 0 {
		t.Errorf("after ResetStats: %d connections accepted", st.ConnsAccepted)
	}
}
