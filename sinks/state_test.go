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
	return func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		pool := env.Buffers.Pool(chunk)
		*sent = nil
		for _, m := range env.Have.Missing(int64(len(data))) {
			for off := m.Start; off < m.End; {
				end := min((off/int64(chunk)+1)*int64(chunk), m.End)
				c := pool.Get(off)
				c.Data = c.Data[:copy(c.Data, data[off:end])]
				*sent = append(*sent, pipeline.Range{Start: off, End: end})
				if err := edges.Send(ctx, c); err != nil {
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
	return func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
		if err := send(ctx, env, edges); err != nil {
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
		{"no state", func(t *testing.T, out string) { os.Remove(out + ".tmp.state") }, nil, resource(size, `"v1"`),
			func(c *sinks.FileConfig) { c.Overwrite = true }, "no resume state"}, // without Overwrite: TestFileSinkKeepsForeignTmp
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
			src := func(ctx context.Context, env *pipeline.Env, edges pipeline.IO) error {
				if err := send(ctx, env, edges); err != nil {
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
// leaves a state of no ranges, so nothing claims to be resumable, but a
// rerun knows the PATH.tmp for dlflow's.
func TestFileSinkNoStateWithoutValidators(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.bin")
	data := payload(3 * chunk)
	r := newRig(t)
	g := r.build(t, failAfter(r, data, []int{0}), "file.sink", fileCfg(out, sinks.ModeSequential), 1)
	if err := runWith(t, g, &pipeline.Resource{Size: int64(len(data)), AcceptRanges: true}, new(bytes.Buffer)); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	if st := readStateFile(t, out); len(st.Ranges) != 0 {
		t.Errorf("the state claims %v", st.Ranges)
	}
	if got := readFile(t, out+".tmp"); !bytes.Equal(got, data[:chunk]) {
		t.Error("partial data not kept")
	}
}
