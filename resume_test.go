package dlflow_test

// Resume within one process: a download cancelled midway leaves PATH.tmp
// and a state that claims only bytes on disk; the next download of the
// same file fetches exactly the rest and says how much it resumed. (The
// CLI tests in cmd kill a process instead, with SIGKILL and SIGINT.)

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

const resSize, resSeed = 8<<20 + 3, 13

// resETag names the content, as S3's MD5 does: the reruns below ask another
// origin (another URL), which the file sink resumes only when the ETag is
// not one made of size and time (the origin's default "size-seed" has that
// form) or a checksum will verify the result.
const resETag = `"b1946ac92492d2347c6235b4d2611184"`

// resCancelMidway starts req, waits (bounded) until at least least bytes
// are in place, cancels it, and returns its result and the resume state it
// left, after checking that every byte the state claims is on disk.
func resCancelMidway(t *testing.T, req *dlflow.Request, least int64) (*dlflow.Result, resumeState) {
	t.Helper()
	d := newClient(t).Start(context.Background(), req)
	defer d.Cancel() // when the test fails before
	for deadline := time.Now().Add(30 * time.Second); d.Progress().Done < least; {
		select {
		case <-d.Done():
			res, err := d.Wait()
			t.Fatalf("ended before it could be cancelled: %v, %+v", err, res)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("less than %d bytes after 30s: %+v", least, d.Progress())
		}
	}
	d.Cancel()
	res, err := d.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	out := req.Path
	assertMissing(t, out)
	if res.Partial != out+".tmp" {
		t.Fatalf("result partial %q, want %s.tmp", res.Partial, out)
	}
	st := readResumeState(t, out)
	if st.claimed() == 0 || st.claimed() >= resSize || st.claimed() > res.Bytes {
		t.Fatalf("the state claims %d bytes, the result %d in place of %d", st.claimed(), res.Bytes, int64(resSize))
	}
	data, err := os.ReadFile(out + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Ranges {
		want := make([]byte, r[1]-r[0])
		origin.Fill(want, r[0], resSeed)
		if r[1] > int64(len(data)) || !bytes.Equal(data[r[0]:r[1]], want) {
			t.Fatalf("the state claims [%d,%d), which does not hold the file's bytes", r[0], r[1])
		}
	}
	return res, st
}

// TestResumeAfterCancel: after Download.Cancel the partial data is kept
// with every byte written, so the next download fetches exactly the
// missing bytes, and Result.Resumed says how many it did not fetch.
func TestResumeAfterCancel(t *testing.T) {
	for _, tc := range []struct {
		topo  string
		conns int
		rate  int64 // per connection
	}{
		{"ranged", 4, 1 << 20},
		{"stream", 0, 4 << 20},
	} {
		t.Run(tc.topo, func(t *testing.T) {
			t.Parallel()
			out := fltOut(t)
			slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag, RateLimit: tc.rate})
			// Without work stealing, which may race a slow tail on
			// purpose, the rerun must fetch exactly the missing bytes.
			req := &dlflow.Request{URL: slow.URL(), Path: out, Topology: dlflow.Topology{Name: tc.topo}, Connections: tc.conns,
				Sets: []string{"stages.split.config.piece=1MiB", "stages.fetch.config.steal_min=0"}}
			if tc.topo == "stream" {
				req.Sets = nil
			}
			_, st := resCancelMidway(t, req, resSize/4)
			slow.Close()

			// Same size and seed: same content, ETag and Last-Modified, on
			// another port.
			fast := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, ETag: resETag})
			again := *req
			again.URL = fast.URL()
			logOpt, log := withLog(zerolog.InfoLevel)
			res, err := do(t, &again, logOpt)
			fltOK(t, res, err, out, resSize, resSeed)
			fast.WaitIdle(5 * time.Second)
			served := fast.Stats().BytesServed
			t.Logf("state claimed %d bytes in %d ranges; the rerun fetched %d", st.claimed(), len(st.Ranges), served)
			if served != resSize-st.claimed() {
				t.Errorf("the rerun fetched %d bytes, want exactly the %d missing", served, resSize-st.claimed())
			}
			if res.Resumed != st.claimed() {
				t.Errorf("result resumed %d bytes, the state claimed %d", res.Resumed, st.claimed())
			}
			if !contains(log.String(), "resuming a partial download") {
				t.Errorf("no resume logged:\n%s", log)
			}
		})
	}
}

// TestResumeOffAfterCancel: NoResume fetches everything again and resumes
// nothing.
func TestResumeOffAfterCancel(t *testing.T) {
	t.Parallel()
	out := fltOut(t)
	slow := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed, RateLimit: 4 << 20})
	resCancelMidway(t, &dlflow.Request{URL: slow.URL(), Path: out, Topology: dlflow.Topology{Name: "stream"}}, resSize/4)
	slow.Close()

	fast := startOrigin(t, origin.Options{Size: resSize, Seed: resSeed})
	logOpt, log := withLog(zerolog.InfoLevel)
	res, err := do(t, &dlflow.Request{URL: fast.URL(), Path: out, NoResume: true}, logOpt)
	fltOK(t, res, err, out, resSize, resSeed)
	fast.WaitIdle(5 * time.Second)
	if served := fast.Stats().BytesServed; served < resSize {
		t.Errorf("fetched %d bytes, want the whole %d again", served, int64(resSize))
	}
	if res.Resumed != 0 {
		t.Errorf("result resumed %d bytes with NoResume", res.Resumed)
	}
	if !contains(log.String(), "resume is off") {
		t.Errorf("starting over is not logged:\n%s", log)
	}
}

// TestResumeTmpWithoutState: a PATH.tmp without a state file may hold
// anything (another tool, a crash before the first checkpoint): it is not
// trusted. It is replaced only with Overwrite; without, the run is refused
// (cmd's TestForeignTmpIsNotDestroyed).
func TestResumeTmpWithoutState(t *testing.T) {
	const size, seed = 8<<20 + 5, 3
	for _, topo := range []string{"ranged", "stream"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			out := fltOut(t)
			// A prefix of the right bytes followed by garbage: neither part
			// may be kept.
			junk := make([]byte, size)
			origin.Fill(junk[:size/2], 0, seed)
			for i := size / 2; i < size; i++ {
				junk[i] = 0xa5
			}
			if err := os.WriteFile(out+".tmp", junk, 0o644); err != nil {
				t.Fatal(err)
			}
			srv := startOrigin(t, origin.Options{Size: size, Seed: seed})
			logOpt, log := withLog(zerolog.InfoLevel)
			res, err := do(t, &dlflow.Request{URL: srv.URL(), Path: out, Overwrite: true, Topology: dlflow.Topology{Name: topo}}, logOpt)
			fltOK(t, res, err, out, size, seed)
			srv.WaitIdle(5 * time.Second)
			if served := srv.Stats().BytesServed; served < size {
				t.Errorf("fetched %d bytes, want all %d", served, size)
			}
			if res.Resumed != 0 {
				t.Errorf("result resumed %d bytes of an untrusted file", res.Resumed)
			}
			if !contains(log.String(), "no resume state") {
				t.Errorf("not logged why the partial file was discarded:\n%s", log)
			}
		})
	}
}
