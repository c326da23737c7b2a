package daemon

import (
	"encoding/hex"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/dlflow/dlflow"
)

// pieceLength is what aria2 reports for an HTTP download (its
// --piece-length default); dlflow has no pieces, so it only sizes
// numPieces for clients that show them.
const pieceLength = 1 << 20

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// live is how far a task is: from its running download, else its record.
type live struct {
	total, done int64
	speed       int64
	conns       int
	progress    *dlflow.Progress // nil when not running
}

// liveOf reads t's progress. Called with e.mu held.
func liveOf(t *task) live {
	l := live{total: max(t.Total, 0), done: t.Completed}
	if t.dl == nil {
		return l
	}
	p := t.dl.Progress()
	l.progress = &p
	l.done, l.speed = p.Done, int64(p.Rate)
	if p.Total >= 0 {
		l.total = p.Total
	}
	for _, s := range p.Sources {
		l.conns += s.Connections
	}
	if l.conns == 0 {
		for _, c := range p.Connections {
			if c > 0 {
				l.conns++
			}
		}
	}
	return l
}

// status is aria2's tellStatus of t, reduced to keys (all when empty),
// its fields in key order. Called with e.mu held. It is on the path of
// tellActive over every task: no closures, few allocations.
func (e *Engine) status(t *task, keys []string) []kv {
	all := len(keys) == 0
	want := func(k string) bool { return all || slices.Contains(keys, k) }
	l := live{total: max(t.Total, 0), done: t.Completed}
	if t.dl != nil && (all || want("completedLength") || want("downloadSpeed") || want("connections") || want("totalLength") || want("files") || want("numPieces") || want("bitfield")) {
		l = liveOf(t)
	}
	fields := make([]kv, 0, 15)
	if t.Ever && l.total > 0 && want("bitfield") {
		fields = append(fields, kv{"bitfield", bitfield(l.done, l.total)})
	}
	if want("completedLength") {
		fields = append(fields, kv{"completedLength", itoa(l.done)})
	}
	if want("connections") {
		fields = append(fields, kv{"connections", strconv.Itoa(l.conns)})
	}
	if want("dir") {
		fields = append(fields, kv{"dir", e.taskDir(t)})
	}
	if want("downloadSpeed") {
		fields = append(fields, kv{"downloadSpeed", itoa(l.speed)})
	}
	if isStopped(t.Status) {
		if want("errorCode") {
			fields = append(fields, kv{"errorCode", strconv.Itoa(t.ErrCode)})
		}
		if want("errorMessage") {
			fields = append(fields, kv{"errorMessage", t.ErrMsg})
		}
	}
	if want("files") {
		fields = append(fields, kv{"files", e.files(t, l)})
	}
	if want("gid") {
		fields = append(fields, kv{"gid", t.GID})
	}
	if want("numPieces") {
		fields = append(fields, kv{"numPieces", itoa((l.total + pieceLength - 1) / pieceLength)})
	}
	if want("pieceLength") {
		fields = append(fields, kv{"pieceLength", pieceLengthText})
	}
	if want("status") {
		fields = append(fields, kv{"status", t.Status})
	}
	if want("totalLength") {
		fields = append(fields, kv{"totalLength", itoa(l.total)})
	}
	if want("uploadLength") {
		fields = append(fields, kv{"uploadLength", "0"})
	}
	if want("uploadSpeed") {
		fields = append(fields, kv{"uploadSpeed", "0"})
	}
	return fields
}

var pieceLengthText = strconv.Itoa(pieceLength)

// taskDir is the absolute directory of t.
func (e *Engine) taskDir(t *task) string {
	if t.Opts.Dir == "" {
		return e.root
	}
	return e.root + string(filepath.Separator) + t.Opts.Dir // both clean
}

// files is aria2's getFiles of t: one file.
func (e *Engine) files(t *task, l live) []fileEntry {
	path := t.Path
	if path == "" && t.Opts.Out != "" {
		path = filepath.Join(e.taskDir(t), t.Opts.Out)
	}
	return []fileEntry{{path: path, length: itoa(l.total), done: itoa(l.done), uris: uriEntries(t)}}
}

func uriEntries(t *task) []uriEntry {
	status := "waiting"
	if t.Ever {
		status = "used"
	}
	out := make([]uriEntry, 0, len(t.URIs))
	for _, u := range t.URIs {
		out = append(out, uriEntry{uri: u, status: status})
	}
	return out
}

// uris is aria2's getUris of t: "used" once the task ran, else "waiting".
func uris(t *task) []any {
	status := "waiting"
	if t.Ever {
		status = "used"
	}
	out := make([]any, 0, len(t.URIs))
	for _, u := range t.URIs {
		out = append(out, map[string]string{"uri": u, "status": status})
	}
	return out
}

// servers is aria2's getServers of an active task.
func servers(t *task) []any {
	var list []any
	if t.dl != nil {
		p := t.dl.Progress()
		for _, s := range p.Sources {
			if s.Connections > 0 {
				list = append(list, map[string]string{"uri": s.URL, "currentUri": s.URL, "downloadSpeed": itoa(int64(s.Rate()))})
			}
		}
		if len(p.Sources) == 0 && len(t.URIs) > 0 {
			info := t.dl.Info()
			cur := info.URL
			if cur == "" {
				cur = t.URIs[0]
			}
			list = append(list, map[string]string{"uri": t.URIs[0], "currentUri": cur, "downloadSpeed": itoa(int64(p.Rate))})
		}
	}
	if list == nil {
		list = []any{}
	}
	return []any{map[string]any{"index": "1", "servers": list}}
}

// laneMeter measures the speed of each connection of a running task from
// the samples of the progress push.
type laneMeter struct {
	at    time.Time
	bytes []int64
	speed []int64
}

// sample takes the bytes of each connection now; samples closer than
// 100 ms keep the speeds of the last.
func (m *laneMeter) sample(now time.Time, bytes []int64) []int64 {
	if dt := now.Sub(m.at); !m.at.IsZero() && dt >= 100*time.Millisecond {
		m.speed = make([]int64, len(bytes))
		for i, b := range bytes {
			if i < len(m.bytes) {
				m.speed[i] = int64(float64(b-m.bytes[i]) / dt.Seconds())
			}
		}
	} else if !m.at.IsZero() {
		return m.speed
	}
	m.at, m.bytes = now, slices.Clone(bytes)
	return m.speed
}

// bitfield is aria2's bitfield (hex, one bit a piece, the first piece the
// high bit) of a download with done of total bytes in place, counted as
// whole pieces from the start: dlflow tells how many bytes are in, not
// which, so a ranged download's map is its count, not its layout.
func bitfield(done, total int64) string {
	pieces := (total + pieceLength - 1) / pieceLength
	full := done / pieceLength
	if done >= total {
		full = pieces
	}
	b := make([]byte, (pieces+7)/8)
	for i := int64(0); i < full; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return hex.EncodeToString(b)
}
