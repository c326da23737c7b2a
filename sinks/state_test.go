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

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// stateFile mirrors the state file the sink keeps beside PATH.tmp.
type stateFile struct {
	Version      int        `json:"version"`
	URL          string     `json:"url"`
	URLSum       string     `json:"url_sha256"`
	Size         int64      `json:"size"`
	ETag         string     `json:"etag"`
	LastModified string     `json:"last_modified"`
	Ranges       [][2]int64 `json:"ranges"`
}

func readStateFile(tb testing.TB, out string) stateFile {
	tb.Helper()
	var s stateFile
	if err := json.Unmarshal(readFile(tb, out+".tmp.state"), &s); err != nil {
		tb.Fatal(err)
	}
	return s
}

// resource is a resumable resource: known size, ranges and a strong ETag.
func resource(size int64, etag string) *pipeline.Resource {
	return &pipeline.Resource{URL: "http://example.test/f", Size: size, AcceptRanges: true, ETag: etag, LastModified: "Tue, 02 Jan 2024 03:04:05 GMT"}
}

// runWith runs g against res, logging into logs, and checks that every
// buffer came back.
func runWith(tb testing.TB, g *pipeline.Graph, res *pipeline.Resource, logs *bytes.Buffer) error {
	tb.Helper()
	bufs := pipeline.NewBuffers()
	err := g.Run(context.Background(), pipeline.RunOptions{Resource: res, Buffers: bufs, Log: zerolog.New(logs)})
	if n := bufs.InUse(); n != 0 {
		tb.Errorf("%d bytes of buffers still in use after the run", n)
	}
	return err
}

// sendMissing sends what env.Have says is missing, in chunk-sized pieces
// cut at multiples of chunk, and records what it sent.
func sendMissing(data []byte, chunk int, sent *[]pipeline.Range) pipeline.StageFunc {
	return func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
		pool := env.Buffers.Pool(chunk)
		*sent = nil
		for _, m := range env.Have.Missing(int64(len(data))) {
			for off := m.Start; off < m.End; {
				end := min((off/int64(chunk)+1)*int64(chunk), m.End)
				c := pool.Get(off)
				c.Data = c.Data[:copy(c.Data, data[off:end])]
				*sent = append(*sent, pipeline.Range{Start: off, End: end})
				if err := io.Send(ctx, c); err != nil {
					return err
				}
				off = end
			}
		}
		return nil
	}
}

var errCut = errors.New("connection reset")

// failAfter sends the listed pieces, then fails once the sink wrote them.
func failAfter(r *rig, data []byte, order []int) pipeline.StageFunc {
	send := sendPieces(data, chunk, order)
	return func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
		if err := send(ctx, env, io); err != nil {
			return err
		}
		if !waitFor(func() bool { return r.file.Bytes() >= int64(len(order)*chunk) }) {
			return errors.New("sink did not write what was sent")
		}
		return errCut
	}
}

// TestFileSinkResumes: a failed run leaves PATH.tmp and a state listing
// exactly the ranges written; a rerun for the same resource sets env.Have
// from it, gets only the missing bytes, and removes the state when done.
func TestFileSinkResumes(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		order []int // pieces the first run writes
		have  [][2]int64
	}{
		{sinks.ModePositional, []int{0, 1, 4, 7}, [][2]int64{{0, 2 * chunk}, {4 * chunk, 5 * chunk}, {7 * chunk, 8 * chunk}}},
		{sinks.ModeSequential, []int{0, 1, 2}, [][2]int64{{0, 3 * chunk}}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			data := payload(10*chunk + 77)
			res := resource(int64(len(data)), `"v1"`)

			r := newRig(t)
			g := r.build(t, failAfter(r, data, tc.order), "file.sink", fileCfg(out, tc.mode), 1)
			var logs bytes.Buffer
			if err := runWith(t, g, res, &logs); !errors.Is(err, errCut) {
				t.Fatalf("first run: %v", err)
			}
			st := readStateFile(t, out)
			if st.Version != 2 || st.URL != res.URL || len(st.URLSum) != 64 || st.Size != res.Size || st.ETag != res.ETag || st.LastModified != res.LastModified {
				t.Errorf("state %+v does not describe the resource", st)
			}
			if !reflect.DeepEqual(st.Ranges, tc.have) {
				t.Fatalf("state ranges %v, want %v", st.Ranges, tc.have)
			}

			var sent []pipeline.Range
			r2 := newRig(t)
			g = r2.build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, tc.mode), 1)
			logs.Reset()
			if err := runWith(t, g, res, &logs); err != nil {
				t.Fatalf("rerun: %v\n%s", err, logs.String())
			}
			if got := readFile(t, out); !bytes.Equal(got, data) {
				t.Fatal("output differs from the data")
			}
			var fetched int64
			for _, s := range sent {
				fetched += s.Len()
			}
			var had int64
			for _, h := range tc.have {
				had += h[1] - h[0]
			}
			if fetched != int64(len(data))-had || r2.file.Bytes() != fetched {
				t.Errorf("rerun sent %d and wrote %d bytes, want the %d missing", fetched, r2.file.Bytes(), int64(len(data))-had)
			}
			if !strings.Contains(logs.String(), "resuming a partial download") {
				t.Errorf("resume not logged:\n%s", logs.String())
			}
			assertMissing(t, out+".tmp")
			assertMissing(t, out+".tmp.state")
		})
	}
}

// TestFileSinkSequentialUsesOnlyThePrefix: a state with holes (written by a
// positional run) gives a sequential sink only its prefix.
func TestFileSinkSequentialUsesOnlyThePrefix(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(10 * chunk)
	res := resource(int64(len(data)), `"v1"`)
	r := newRig(t)
	g := r.build(t, failAfter(r, data, []int{0, 1, 5, 6}), "file.sink", fileCfg(out, sinks.ModePositional), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	var sent []pipeline.Range
	g = newRig(t).build(t, sendMissing(data, chunk, &sent), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := runWith(t, g, res, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, data) {
		t.Fatal("output differs from the data")
	}
	if len(sent) == 0 || sent[0].Start != 2*chunk {
		t.Errorf("rerun sent %v, want everything from the end of the prefix %d", sent, 2*chunk)
	}
}

// TestFileSinkStartsOver: every case where PATH.tmp must not be trusted.
func TestFileSinkStartsOver(t *testing.T) {
	data := payload(6*chunk + 3)
	size := int64(len(data))
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, out string) // after the first run
		first *pipeline.Resource             // of the first run; nil for resource(size, "v1")
		res   *pipeline.Resource
		cfg   func(*sinks.FileConfig)
		log   string
	}{
		{"changed etag", nil, nil, resource(size, `"v2"`), nil, "the file changed on the server"},
		{"changed size", nil, nil, resource(size+1, `"v1"`), nil, "the file changed on the server"},
		{"no validator in common", nil,
			&pipeline.Resource{URL: "u", Size: size, AcceptRanges: true, ETag: `"v1"`},
			&pipeline.Resource{URL: "u", Size: size, AcceptRanges: true, LastModified: "Tue, 02 Jan 2024 03:04:05 GMT"}, nil,
			"the file changed on the server"},
		{"resume off", nil, nil, resource(size, `"v1"`), func(c *sinks.FileConfig) { c.Resume = false }, "resume is off"},
		{"no state", func(t *testing.T, out string) { os.Remove(out + ".tmp.state") }, nil, resource(size, `"v1"`), nil, "no resume state"},
		{"garbled state", func(t *testing.T, out string) { os.WriteFile(out+".tmp.state", []byte("{\"version\":1,"), 0o644) },
			nil, resource(size, `"v1"`), nil, "unreadable"},
		{"state claims too much", func(t *testing.T, out string) { os.Truncate(out+".tmp", chunk) }, nil, resource(size, `"v1"`), nil,
			"shorter than its resume state"},
		{"not resumable", nil, nil, &pipeline.Resource{URL: "u", Size: size}, nil, "cannot resume"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			r := newRig(t)
			g := r.build(t, failAfter(r, data, []int{0, 1, 3}), "file.sink", fileCfg(out, sinks.ModePositional), 1)
			first := tc.first
			if first == nil {
				first = resource(size, `"v1"`)
			}
			if err := runWith(t, g, first, new(bytes.Buffer)); !errors.Is(err, errCut) {
				t.Fatal(err)
			}
			if tc.spoil != nil {
				tc.spoil(t, out)
			}
			cfg := fileCfg(out, sinks.ModePositional)
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			content := data
			if tc.res.Size != size {
				content = payload(int(tc.res.Size))
			}
			var sent []pipeline.Range
			g = newRig(t).build(t, sendMissing(content, chunk, &sent), "file.sink", cfg, 1)
			var logs bytes.Buffer
			if err := runWith(t, g, tc.res, &logs); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, out); !bytes.Equal(got, content) {
				t.Fatal("output differs from the data")
			}
			if len(sent) == 0 || sent[0].Start != 0 {
				t.Errorf("rerun sent %v, want everything", sent)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logs.String())
			}
			assertMissing(t, out+".tmp.state")
		})
	}
}

// TestFileSinkDropsCorruptData: a run that fails with pipeline.ErrCorrupt
// (a checksum mismatch) leaves neither PATH.tmp nor its state.
func TestFileSinkDropsCorruptData(t *testing.T) {
	for _, mode := range []string{sinks.ModeSequential, sinks.ModePositional} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.bin")
			data := payload(4 * chunk)
			send := sendPieces(data, chunk, pieces(len(data), chunk, 0))
			corrupt := fmt.Errorf("verify: %w", pipeline.ErrCorrupt)
			src := func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
				if err := send(ctx, env, io); err != nil {
					return err
				}
				return corrupt
			}
			g := newRig(t).build(t, src, "file.sink", fileCfg(out, mode), 1)
			if err := runWith(t, g, resource(int64(len(data)), `"v1"`), new(bytes.Buffer)); !errors.Is(err, pipeline.ErrCorrupt) {
				t.Fatal(err)
			}
			assertMissing(t, out)
			assertMissing(t, out+".tmp")
			assertMissing(t, out+".tmp.state")
		})
	}
}

// TestFileSinkNoStateWithoutValidators: a resource that cannot be resumed
// leaves no state file, so nothing claims to be resumable.
func TestFileSinkNoStateWithoutValidators(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(3 * chunk)
	r := newRig(t)
	g := r.build(t, failAfter(r, data, []int{0}), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := runWith(t, g, &pipeline.Resource{Size: int64(len(data)), AcceptRanges: true}, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	assertMissing(t, out+".tmp.state")
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, data[:chunk]) {
		t.Error("partial data not kept")
	}
}

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
			const why = "the partial download is of another URL, and nothing proves it is the same file; starting over"
			if logged(&logs, "warn", why) == tc.resumes {
				t.Errorf("want a warning %q iff it starts over; log:\n%s", why, logs.String())
			}
		})
	}
}

// logged reports whether logs hold a record of level with message msg.
func logged(logs *bytes.Buffer, level, msg string) bool {
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct{ Level, Message string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == level && rec.Message == msg {
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
	src := func(ctx context.Context, env *pipeline.Env, io pipeline.IO) error {
		missing = env.Have.Missing(size)
		if len(missing) > 16 {
			return fmt.Errorf("%d missing ranges handed out", len(missing))
		}
		return send(ctx, env, io)
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

	// A reshaped run that fails keeps its bytes but no state.
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	r = newRig(t)
	if err := runWith(t, build(r, failAfter(r, plain, []int{0, 1, 2})), res, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	assertMissing(t, out+".tmp.state")
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, plain[:3*chunk]) {
		t.Fatalf(".tmp has %d bytes, want the %d written", len(got), 3*chunk)
	}
}
