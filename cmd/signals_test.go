package cmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// TestSignalInterrupt runs the CLI as a real process against a throttled
// origin and stops it with SIGINT or SIGTERM mid-download: it exits 130 or
// 143 promptly with one line saying so and where the partial data is, keeps
// PATH.tmp (for the stream, exactly the prefix it received) and creates no
// PATH.
func TestSignalInterrupt(t *testing.T) {
	const size, seed = 8 << 20, 5
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, topo := range []string{"stream", "ranged"} {
			t.Run(fmt.Sprintf("%v/%s", sig, topo), func(t *testing.T) {
				t.Parallel()
				srv := startOrigin(t, origin.Options{Size: size, Seed: seed, RateLimit: 1 << 20})
				out := fltOut(t)
				cmd := exec.Command(os.Args[0], fltArgs(topo, srv.URL(), out)...)
				cmd.Env = append(os.Environ(), cliEnv+"=1")
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				var err error
				done := make(chan struct{}) // closed when err is Wait's result
				go func() { err = cmd.Wait(); close(done) }()
				t.Cleanup(func() {
					// Kills the process only when the test failed early.
					select {
					case <-done:
					default:
						_ = cmd.Process.Kill()
						<-done
					}
				})

				// Bounded wait until data is on disk in PATH.tmp: its
				// state appears at the first checkpoint after a write (a
				// PATH.tmp that nothing was written into is not kept).
				deadline := time.Now().Add(30 * time.Second)
				for srv.Stats().BytesServed < 1<<20 || !fltExists(out+".tmp.state") {
					if time.Now().After(deadline) {
						t.Fatalf("no data after 30s; stderr:\n%s", stderr.String())
					}
					select {
					case <-done:
						t.Fatalf("the CLI ended before the signal: %v; stderr:\n%s", err, stderr.String())
					case <-time.After(20 * time.Millisecond):
					}
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				sent := time.Now()
				select {
				case <-done:
				case <-time.After(15 * time.Second):
					t.Fatalf("still running 15s after %v; stderr:\n%s", sig, stderr.String())
				}
				var ee *exec.ExitError
				if err != nil && !errors.As(err, &ee) {
					t.Fatal(err)
				}
				if d := time.Since(sent); d > 5*time.Second {
					t.Errorf("took %v to stop after %v", d, sig)
				}
				wantCode := 128 + int(sig)
				if code := cmd.ProcessState.ExitCode(); code != wantCode {
					t.Fatalf("exit %d, want %d; stderr:\n%s", code, wantCode, stderr.String())
				}
				name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]
				want := fmt.Sprintf("dlflow: interrupted by %s; partial data kept in %s.tmp", name, out)
				if msg := fltMessage(t, stderr.String()); msg != want {
					t.Fatalf("message %q, want %q", msg, want)
				}
				if fltExists(out) {
					t.Fatalf("%s exists after an interrupted run", out)
				}
				if topo == "stream" {
					// The sequential sink keeps exactly what it wrote.
					fltPartialKept(t, out, size, seed, 1)
				} else if !fltExists(out + ".tmp") {
					t.Fatalf("%s.tmp not kept", out)
				}
				if !srv.WaitIdle(5 * time.Second) {
					t.Fatal("the origin still serves requests: readers did not stop")
				}
			})
		}
	}
}

func fltExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
