package daemon_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/daemon"
)

// pushedLane is a lane of a dlflow.onProgress push.
type pushedLane struct {
	Index, Start, End, CompletedLength, Source string
}

// TestPushLaneRanges: the push of a ranged task over four throttled
// connections carries each connection's range: start and end (inclusive)
// within the file, not "-1", ranges of one push that do not overlap, the
// bytes of each range within it, the source the URL; the file is right.
func TestPushLaneRanges(t *testing.T) {
	const size = 16 << 20
	o := startOrigin(t, origin.Options{Size: size, Seed: 6, Files: 1, RateLimit: 2 << 20})
	d, c := newInProcess(t, daemon.Options{Jobs: 1})
	var gid string
	c.must(t, &gid, "aria2.addUri", []string{o.FileURL(0)}, map[string]string{"split": "4", "max-connection-per-server": "4", "out": "l.bin"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":"s","method":"dlflow.subscribe","params":["token:`+secret+`",{"interval_ms":100}]}`)); err != nil {
		t.Fatal(err)
	}
	most, status := 0, ""
	for i := 0; i < 1000 && status != "complete"; i++ {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages (%d lanes with ranges at most): %v", i, most, err)
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil || m.Method != "dlflow.onProgress" {
			continue
		}
		var p struct {
			Tasks []struct {
				GID, Status string
				Lanes       []pushedLane
			} `json:"tasks"`
		}
		if err := json.Unmarshal(m.Params[0], &p); err != nil || len(p.Tasks) != 1 || p.Tasks[0].GID != gid {
			t.Fatalf("push %s: %v", b, err)
		}
		status = p.Tasks[0].Status
		most = max(most, checkLanes(t, p.Tasks[0].Lanes, size, o.FileURL(0)))
	}
	if status != "complete" {
		t.Fatalf("task %s, not complete", status)
	}
	if most < 2 {
		t.Errorf("at most %d lanes with a range in one push, want several", most)
	}
	if got := fileSHA256(t, filepath.Join(d.Engine().Root(), "l.bin")); got != origin.SHA256Hex(size, origin.FileSeed(6, 0)) {
		t.Errorf("sha256 %s", got)
	}
}

// checkLanes checks the lanes of one push and returns how many have a
// range.
func checkLanes(t *testing.T, lanes []pushedLane, size int64, url string) int {
	t.Helper()
	type span struct{ start, end int64 }
	var seen []span
	for _, l := range lanes {
		if l.Start == "-1" && l.End == "-1" {
			continue
		}
		s, err1 := strconv.ParseInt(l.Start, 10, 64)
		e, err2 := strconv.ParseInt(l.End, 10, 64)
		done, err3 := strconv.ParseInt(l.CompletedLength, 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || s < 0 || e < s || e >= size || done < 0 || done > e-s+1 || l.Source != url {
			t.Fatalf("lane %+v of a %d-byte file from %s", l, size, url)
		}
		for _, o := range seen {
			if s <= o.end && o.start <= e {
				t.Fatalf("lanes overlap in one push: %+v (all %+v)", l, lanes)
			}
		}
		seen = append(seen, span{s, e})
	}
	return len(seen)
}
