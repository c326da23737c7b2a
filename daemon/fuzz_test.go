package daemon

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
)

// FuzzJSONRPC feeds the request parser anything: it never panics, always
// answers valid JSON-RPC, and a body without the secret queues nothing.
func FuzzJSONRPC(f *testing.F) {
	const tok = "fuzz-secret"
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"aria2.getVersion","params":["token:x"]}`,
		`[{"jsonrpc":"2.0","id":1,"method":"aria2.tellActive"},{"id":2,"method":"system.listMethods"}]`,
		`{"jsonrpc":"2.0","id":"q","method":"system.multicall","params":[[{"methodName":"aria2.addUri","params":["token:y",["http://a/b"]]}]]}`,
		`{"id":null,"method":"aria2.addUri","params":[["http://a/b"],{"out":"../x","dir":"/etc"},-1]}`,
		`{"id":1,"method":"aria2.tellWaiting","params":[-5,3,["gid"]]}`,
		`{"id":1,"method":"aria2.changePosition","params":["0123456789abcdef",1,"POS_CUR"]}`,
		`{"id":1,"method":"aria2.addMetalink","params":["PG1ldGFsaW5rLz4="]}`,
		`{`, `[]`, `[1,2]`, `"x"`, `{"id":{},"method":"a","params":[{"token:":1}]}`,
	} {
		f.Add([]byte(s))
	}
	e, err := newEngine(Options{Dir: f.TempDir(), Secret: tok, Session: filepath.Join(f.TempDir(), "s.db")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.close() })
	d := &Daemon{opts: e.opts, e: e}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, status := d.handleBody(context.Background(), body, nil)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON answered to %q: %q", body, out)
		}
		var one response
		var many []response
		if json.Unmarshal(out, &one) != nil && json.Unmarshal(out, &many) != nil {
			t.Fatalf("not a JSON-RPC response: %s", out)
		}
		if status == 0 {
			t.Fatalf("no status for %q", body)
		}
		e.mu.Lock()
		n := len(e.tasks)
		e.mu.Unlock()
		if n != 0 {
			t.Fatalf("%q queued a task without the secret", body)
		}
	})
}

func TestBitfield(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		want        string
	}{
		{0, 8 << 20, "00"},
		{1 << 20, 8 << 20, "80"},
		{2<<20 + 5, 8 << 20, "c0"},
		{8 << 20, 8 << 20, "ff"},
		{9<<20 + 1, 9<<20 + 1, "ffc0"},
		{5, 10, "00"}, {10, 10, "80"},
	} {
		if got := bitfield(tc.done, tc.total); got != tc.want {
			t.Errorf("bitfield(%d, %d) = %s, want %s", tc.done, tc.total, got, tc.want)
		}
	}
}
