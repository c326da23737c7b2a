package httpx

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
)

// With Prefetch the probe is one GET for the first bytes, with no HEAD,
// and its answer stays open in Resource.Prefetched with exactly those
// bytes: the first piece of a large file, all of a small one, all of a
// file whose server ignores ranges; an empty file has no answer to keep.
func TestProbePrefetch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size       int64
		prefetch   int64
		faults     origin.Faults
		status     int
		body       int64 // bytes in the kept answer
		ranges     bool
		wantRanges string
	}{
		{"first piece", 10 << 20, 4 << 20, origin.Faults{}, 206, 4 << 20, true, "bytes=0-4194303"},
		{"small file", 1000, 4 << 20, origin.Faults{}, 206, 1000, true, "bytes=0-4194303"},
		{"all of it", 3 << 20, -1, origin.Faults{}, 206, 3 << 20, true, "bytes=0-"},
		{"ranges ignored", 2 << 20, 1 << 20, origin.Faults{IgnoreRange: true}, 200, 2 << 20, false, "bytes=0-1048575"},
		{"empty", 0, 4 << 20, origin.Faults{}, 0, 0, true, "bytes=0-4194303"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			htNoLeaks(t)
			srv := htOrigin(t, tc.size, nil)
			srv.SetFaults(tc.faults)
			c, h := htClient(t, nil)
			res, stats, err := ProbeWith(htCtx(t, 10*time.Second), c, h, srv.URL(), ProbeOptions{Prefetch: tc.prefetch})
			if err != nil {
				t.Fatal(err)
			}
			if res.Size != tc.size || res.AcceptRanges != tc.ranges || stats.Requests != 1 || stats.Retries != 0 {
				t.Fatalf("resource size %d, ranges %v, stats %+v", res.Size, res.AcceptRanges, stats)
			}
			log := srv.Log()
			if len(log) != 1 || log[0].Method != http.MethodGet || log[0].Range != tc.wantRanges {
				t.Fatalf("requests %+v, want one GET %s", log, tc.wantRanges)
			}
			resp := TakePrefetched(res.Prefetched)
			if tc.status == 0 {
				if resp != nil {
					t.Fatalf("an answer kept for an empty file: %d", resp.StatusCode)
				}
				return
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("kept answer %v, want a %d", resp, tc.status)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			want := make([]byte, tc.body)
			origin.Fill(want, 0, 1)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("kept answer: %d bytes (%v), want the first %d of the file", len(got), err, tc.body)
			}
			if TakePrefetched(res.Prefetched) != nil {
				t.Fatal("the answer was handed out twice")
			}
		})
	}
}

// A 206 that does not start at offset 0 says too little to keep: the probe
// closes it and asks as without Prefetch (HEAD).
func TestProbePrefetchWrongRange(t *testing.T) {
	htNoLeaks(t)
	srv := htOrigin(t, 1<<20, nil)
	srv.SetFaults(origin.Faults{WrongContentRange: true})
	c, h := htClient(t, nil)
	res, _, err := ProbeWith(htCtx(t, 10*time.Second), c, h, srv.URL(), ProbeOptions{Prefetch: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if TakePrefetched(res.Prefetched) != nil || res.Size != 1<<20 {
		t.Fatalf("resource %+v: a wrong answer was kept", res)
	}
	if st := srv.Stats(); st.GETs != 1 || st.HEADs != 1 {
		t.Fatalf("stats %+v, want the GET then a HEAD", st)
	}
}
