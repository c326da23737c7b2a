package sinks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// TestFileSinkStateHoldsNoSecret: the URL asked for, with a password in
// its userinfo and a signature in its query, leaves neither in the state
// file, which is 0600; a rerun with the same URL still resumes.
func TestFileSinkStateHoldsNoSecret(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(4 * chunk)
	res := resource(int64(len(data)), `"v1"`)
	res.Requested = "https://alice:Pa55w0rd-Hunter2@files.example.test/dl/f.iso?X-Amz-Credential=AKIAEXAMPLEKEY&X-Amz-Signature=5f1e2d3c4b5a69788796a5b4c3d2e1f0#frag"
	res.URL = "https://cdn.example.test/f.iso?token=cdn-secret-token"
	r := newRig(t)
	g := r.build(t, failAfter(r, data, []int{0, 1}), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	raw := readFile(t, out+".tmp.state")
	for _, secret := range []string{"Pa55w0rd-Hunter2", "alice", "AKIAEXAMPLEKEY", "5f1e2d3c4b5a69788796a5b4c3d2e1f0", "cdn-secret-token", "frag"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the state holds %q:\n%s", secret, raw)
		}
	}
	if st := readStateFile(t, out); st.URL != "https://files.example.test/dl/f.iso" {
		t.Errorf("state url %q, want the URL asked for without userinfo, query and fragment", st.URL)
	}
	fi, err := os.Stat(out + ".tmp.state")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state mode %v (%v), want 0600", fi.Mode(), err)
	}

	var sent []pipeline.Range
	r2 := newRig(t)
	g = r2.build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatal("output differs")
	}
	if len(sent) == 0 || sent[0].Start != 2*chunk {
		t.Errorf("the rerun sent %v, want only from %d on: the same URL resumes", sent, 2*chunk)
	}
}

// TestFileSinkResumeOtherURL: a partial download of URL a is resumed by a
// download of URL b only when the ETag names the content or a checksum
// will verify the result; an ETag made of the file's time and size
// (nginx's, Apache's), or none, starts over with a warning. Without that,
// two same-size files written in the same second on an nginx server made
// a file that was a up to the resume point and b after.
func TestFileSinkResumeOtherURL(t *testing.T) {
	data := payload(6*chunk + 11)
	size := int64(len(data))
	nginx := fmt.Sprintf(`"65a1b2c3-%x"`, size)       // mtime-size
	apache := fmt.Sprintf(`"%x-60d2f1a3b4c5e"`, size) // size-mtime (µs)
	for _, tc := range []struct {
		name     string
		url      string // of the second run; the first's is http://a.example.test/f
		etag     string
		checksum bool
		resumes  bool
	}{
		{"same URL, nginx ETag", "http://a.example.test/f", nginx, false, true},
		{"other URL, nginx ETag", "http://b.example.test/f", nginx, false, false},
		{"other URL, Apache ETag", "http://b.example.test/f", apache, false, false},
		{"other URL, no ETag", "http://b.example.test/f", "", false, false},
		{"other URL, short ETag", "http://b.example.test/f", `"e1"`, false, false},
		{"other URL, weak digest ETag", "http://b.example.test/f", `W/"9e107d9d372bb6826bd81d3542a419d6"`, false, false},
		{"other URL, content ETag", "http://b.example.test/f", `"9e107d9d372bb6826bd81d3542a419d6"`, false, true},
		{"other URL, nginx ETag, checksum", "http://b.example.test/f", nginx, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			res := resource(size, tc.etag)
			res.Requested, res.URL = "http://a.example.test/f", "http://a.example.test/f"
			r := newRig(t)
			g := r.build(t, failAfter(r, data, []int{0, 1, 2}), "file.sink", fileCfg(out, sinks.ModePositional), 1)
			if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
				t.Fatal(err)
			}

			res2 := *res
			res2.Requested, res2.URL = tc.url, tc.url
			cfg := fileCfg(out, sinks.ModePositional)
			settings := pipeline.Settings{Output: out, Resume: true}
			if tc.checksum {
				settings.Checksum = "sha256:" + sum(data)
			}
			cfg.TakeSettings(settings)
			var sent []pipeline.Range
			g = newRig(t).build(t, sendMissing(data, chunk, &sent), "file.sink", cfg, 1)
			var logs bytes.Buffer
			if err := runWith(t, g, &res2, &logs); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, out); !bytes.Equal(got, data) {
				t.Fatal("output differs")
			}
			resumed := len(sent) > 0 && sent[0].Start == 3*chunk
			if resumed != tc.resumes || (!resumed && (len(sent) == 0 || sent[0].Start != 0)) {
				t.Fatalf("the rerun sent %v; want resumed=%v", sent, tc.resumes)
			}
			why := out + ".tmp holds a partial download of another URL (http://a.example.test/f); "
			if loggedPrefix(&logs, "warn", why) == tc.resumes {
				t.Errorf("want a warning %q... iff it starts over; log:\n%s", why, logs.String())
			}
			if strings.Contains(logs.String(), "changed") {
				t.Errorf("the file of another URL is not a changed file; log:\n%s", logs.String())
			}
		})
	}
}

// logged reports whether logs hold a record of level with message msg.
func logged(logs *bytes.Buffer, level, msg string) bool {
	return loggedFunc(logs, level, func(m string) bool { return m == msg })
}

// loggedPrefix reports whether logs hold a record of level whose message
// starts with prefix.
func loggedPrefix(logs *bytes.Buffer, level, prefix string) bool {
	return loggedFunc(logs, level, func(m string) bool { return strings.HasPrefix(m, prefix) })
}

func loggedFunc(logs *bytes.Buffer, level string, match func(string) bool) bool {
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct{ Level, Message string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == level && match(rec.Message) {
			return true
		}
	}
	return false
}

// TestFileSinkFragmentedState: a state of 300,000 valid four-byte ranges
// (besides two large ones) resumes into two missing ranges, not 300,000:
// such a state once made a resume send 30,829 requests in a minute. The
// rerun gives the exact bytes.
func TestFileSinkFragmentedState(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(4<<20 + 77)
	size := int64(len(data))
	res := resource(size, `"v1"`)
	r := newRig(t)
	g := r.build(t, failAfter(r, data, []int{0}), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	// Every byte the state will claim is right: PATH.tmp holds all of
	// them (written in place, the same file).
	if err := os.WriteFile(out+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	ranges := [][2]int64{{0, 256 << 10}}
	for i := range int64(300_000) {
		ranges = append(ranges, [2]int64{1<<20 + 8*i, 1<<20 + 8*i + 4})
	}
	ranges = append(ranges, [2]int64{3584 << 10, 4 << 20})
	rewriteState(t, out, ranges)

	var missing []pipeline.Range
	var sent []pipeline.Range
	send := sendMissing(data, chunk, &sent)
	src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		missing = env.Have.Missing(size)
		if len(missing) > 16 {
			return fmt.Errorf("%d missing ranges handed out", len(missing))
		}
		return send(ctx, env, edges)
	}
	g = newRig(t).build(t, src, "file.sink", fileCfg(out, sinks.ModePositional), 1)
	err := runWith(t, g, res, new(bytes.Buffer))
	want := []pipeline.Range{{Start: 256 << 10, End: 3584 << 10}, {Start: 4 << 20, End: size}}
	if !reflect.DeepEqual(missing, want) {
		t.Fatalf("the resume handed out %d missing ranges (first %v), want %v", len(missing), missing[:min(len(missing), 3)], want)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); sum(got) != sum(data) {
		t.Fatalf("output sha256 %s, want %s", sum(got), sum(data))
	}
}

// rewriteState replaces the ranges of the state beside out, keeping the
// rest. It writes the JSON of the ranges itself: encoding/json takes
// seconds for 300,000 of them under the race detector.
func rewriteState(tb testing.TB, out string, ranges [][2]int64) {
	tb.Helper()
	var st map[string]json.RawMessage
	if err := json.Unmarshal(readFile(tb, out+".tmp.state"), &st); err != nil {
		tb.Fatal(err)
	}
	delete(st, "ranges")
	b, err := json.Marshal(st)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	buf.WriteString(`,"ranges":[`)
	for i, r := range ranges {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, "[%d,%d]", r[0], r[1])
	}
	buf.WriteString("]}")
	if err := os.WriteFile(out+".tmp.state", buf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// TestFileSinkStateCapOnWrite: a run that leaves 300 separate ranges
// writes a state of at most 257 (the prefix and the 256 largest), and a
// rerun from it gives the exact bytes.
func TestFileSinkStateCapOnWrite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(600 * chunk)
	order := make([]int, 300)
	for i := range order {
		order[i] = 2 * i
	}
	res := resource(int64(len(data)), `"v1"`)
	r := newRig(t)
	g := r.build(t, failAfter(r, data, order), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	st := readStateFile(t, out)
	if len(st.Ranges) != 257 || st.Ranges[0] != [2]int64{0, chunk} {
		t.Fatalf("the state holds %d ranges (first %v), want 257 starting with the prefix", len(st.Ranges), st.Ranges[:min(len(st.Ranges), 1)])
	}
	var sent []pipeline.Range
	g = newRig(t).build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); sum(got) != sum(data) {
		t.Fatal("output differs")
	}
	if n := int64(len(sent)); n != 600-257 {
		t.Errorf("the rerun sent %d pieces, want the %d the state does not claim", n, 600-257)
	}
}

// reshapeDef is a source that declares it reshapes the bytes, as a
// decompressor does: its offsets are not the resource's.
var reshapeDef = pipeline.Def[srcConfig]{
	Type:     "test.reshaper",
	Summary:  "sends what its Run function sends, reshaped",
	Produces: pipeline.OrderedBytes,
	Reshapes: true,
	New:      func(c srcConfig) (pipeline.Stage, error) { return c.Run, nil },
	Memory:   func(srcConfig) pipeline.Memory { return pipeline.Memory{} },
}

// TestFileSinkAfterReshape: after a stage that reshapes the bytes the sink
// neither checks offsets against Resource.Size (the decompressed file is
// larger) nor resumes a partial download of the resource, nor records a
// state that a rerun could resume by the resource's offsets.
func TestFileSinkAfterReshape(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	compressed := payload(2 * chunk)
	res := resource(int64(len(compressed)), `"v1"`)
	r := newRig(t)
	g := r.build(t, failAfter(r, compressed, []int{0}), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	readStateFile(t, out) // a resumable partial download of the resource

	build := func(r *rig, src pipeline.StageFunc) *pipeline.Graph {
		if err := pipeline.Register(r.reg, reshapeDef); err != nil {
			t.Fatal(err)
		}
		g, err := pipeline.Build(r.reg, []pipeline.Node{
			{ID: "src", Type: "test.reshaper", Config: &srcConfig{Run: src}},
			{ID: "out", Type: "file.sink", Inputs: []string{"src"}, Config: fileCfg(out, sinks.ModeSequential)},
		})
		if err != nil {
			t.Fatal(err)
		}
		r.capture(g)
		return g
	}
	plain := payload(5*chunk + 3)
	var logs bytes.Buffer
	if err := runWith(t, build(newRig(t), sendPieces(plain, chunk, pieces(len(plain), chunk, 0))), res, &logs); err != nil {
		t.Fatalf("reshaped run: %v", err)
	}
	if got := readFile(t, out); !bytes.Equal(got, plain) {
		t.Fatalf("output has %d bytes, want the %d reshaped ones", len(got), len(plain))
	}
	if !logged(&logs, "warn", "cannot resume this download; starting over") {
		t.Errorf("starting over is not logged:\n%s", logs.String())
	}
	assertMissing(t, out+".tmp.state")

	// A reshaped run that fails keeps its bytes, and a state that claims
	// none of them.
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	r = newRig(t)
	if err := runWith(t, build(r, failAfter(r, plain, []int{0, 1, 2})), res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	if st := readStateFile(t, out); len(st.Ranges) != 0 {
		t.Errorf("the state claims %v", st.Ranges)
	}
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, plain[:3*chunk]) {
		t.Fatalf(".tmp has %d bytes, want the %d written", len(got), 3*chunk)
	}
}
