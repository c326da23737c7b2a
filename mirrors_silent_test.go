package dlflow_test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// silentServer accepts connections on 127.0.0.1 and never answers: a
// mirror that takes requests and sends no header. It reports how many
// connections it accepted; Close drops them.
type silentServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startSilent(t *testing.T) *silentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

func (s *silentServer) URL() string { return "http://" + s.ln.Addr().String() + "/file.bin" }

func (s *silentServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *silentServer) Close() {
	s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// TestMirrorSilentLosesItsRange: a mirror that accepts requests and never
// answers held the range it took (a probe) until the idle timeout, 30 s,
// and longer (the download failed at the test's 60 s), for a download the
// primary serves in a fraction of a second. A request still waiting for
// its header long after the other sources answered is taken over by an
// idle connection of a source that answers, and the silent mirror is
// dropped: the download completes exact, well within the timeout, every
// byte from the primary. The same with 15 such mirrors, as a hostile
// Metalink may list.
func TestMirrorSilentLosesItsRange(t *testing.T) {
	for _, n := range []int{1, 15} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			noLeaks(t)
			const size, seed = 20 << 20, 5
			a := startOrigin(t, origin.Options{Size: size, Seed: seed})
			var silent []*silentServer
			var urls []string
			for range n {
				s := startSilent(t)
				silent, urls = append(silent, s), append(urls, s.URL())
			}
			out := fltOut(t)
			start := time.Now()
			res, err := do(t, mirRequest(a.URL(), out, urls...))
			took := time.Since(start)
			fltOK(t, res, err, out, size, seed)
			got := sourceBytes(t, res.Sources, n+1)
			if got[0] != size {
				t.Errorf("sources delivered %v, want all %d from the primary", got, size)
			}
			asked := 0
			for _, s := range silent {
				if s.accepted() > 0 {
					asked++
				}
			}
			if asked == 0 {
				t.Error("no silent mirror was asked")
			}
			if took > 15*time.Second {
				t.Errorf("took %v; the silent mirrors held their ranges until the idle timeout", took)
			}
			t.Logf("%d MiB in %v; %d of %d silent mirrors asked", size>>20, took.Round(time.Millisecond), asked, n)
		})
	}
}
