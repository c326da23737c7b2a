package dlflow_test

// Request.Writer: the bytes, in order, to a writer instead of a file
// (`dlflow URL -o -`).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// hashWriter counts and hashes what it is given.
type hashWriter struct {
	h hash.Hash
	n int64
}

func newHashWriter() *hashWriter { return &hashWriter{h: sha256.New()} }

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

func (w *hashWriter) sum() string { return hex.EncodeToString(w.h.Sum(nil)) }

// inEmptyDir runs the test in a directory of its own and fails it if
// anything (a file, a .tmp, a state) is left there.
func inEmptyDir(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	t.Cleanup(func() {
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%d entries left in the working directory, first %s", len(ents), ents[0].Name())
		}
	})
}

// A download to a Writer gives exactly the file's bytes, by the ranged
// topology with a reorder window or by one stream, and writes nothing to
// disk.
func TestWriterGetsTheBytes(t *testing.T) {
	inEmptyDir(t)
	noLeaks(t)
	for _, tc := range []struct {
		name     string
		size     int64
		faults   origin.Faults
		pipe     bool
		topology string
		conns    int
	}{
		{"ranged", 64 << 20, origin.Faults{}, false, "(built-in) stdout.yaml", 8},
		{"ranged-pipe", 64 << 20, origin.Faults{}, true, "(built-in) stdout.yaml", 8},
		{"small", 10_000_019, origin.Faults{}, false, "(built-in) stdout-stream.yaml", 1},
		{"no-ranges", 64 << 20, origin.Faults{NoLength: true}, false, "(built-in) stdout-stream.yaml", 1},
		{"no-ranges-odd-pipe", 10_000_019, origin.Faults{NoLength: true}, true, "(built-in) stdout-stream.yaml", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startOrigin(t, origin.Options{Size: tc.size, Seed: 5})
			srv.SetFaults(tc.faults)
			hw := newHashWriter()
			var w io.Writer = hw
			copied := make(chan error, 1)
			if tc.pipe {
				r, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				go func() {
					_, err := io.Copy(hw, r)
					copied <- err
				}()
				w = pw
				defer pw.Close()
			}
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			res, err := newClient(t).Do(ctx, &dlflow.Request{URL: srv.URL(), Writer: w})
			if err != nil {
				t.Fatal(err)
			}
			if tc.pipe {
				w.(*os.File).Close()
				if err := <-copied; err != nil {
					t.Fatal(err)
				}
			}
			if hw.n != tc.size || hw.sum() != origin.SHA256Hex(tc.size, 5) {
				t.Fatalf("writer got %d bytes, sha256 %s; want %d, %s", hw.n, hw.sum(), tc.size, origin.SHA256Hex(tc.size, 5))
			}
			if res.Path != "" || res.Bytes != tc.size || res.Topology != tc.topology || res.Connections != tc.conns || res.Partial != "" {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// A checksum mismatch comes after the bytes: the writer has every byte of
// the file (there is no taking them back), then Wait says they are wrong.
func TestWriterChecksumMismatch(t *testing.T) {
	inEmptyDir(t)
	noLeaks(t)
	for _, size := range []int64{ckSize, 10_000_019} {
		srv := startOrigin(t, origin.Options{Size: size, Seed: ckSeed})
		hw := newHashWriter()
		res, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Writer: hw, Checksum: "sha256:" + ckZeros})
		ckMismatch(t, err, "sha256", "checksum")
		if hw.n != size || hw.sum() != origin.SHA256Hex(size, ckSeed) {
			t.Errorf("%d bytes: the writer got %d bytes, sha256 %s, before the error", size, hw.n, hw.sum())
		}
		if res.Checksum != "" || res.Partial != "" {
			t.Errorf("result %+v", res)
		}
		// And a right checksum is verified.
		hw = newHashWriter()
		res, err = newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Writer: hw, Checksum: "sha256:" + origin.SHA256Hex(size, ckSeed)})
		if err != nil || res.Checksum != "sha256:"+origin.SHA256Hex(size, ckSeed) || hw.n != size {
			t.Errorf("%d bytes: %v, result %+v, %d bytes written", size, err, res, hw.n)
		}
	}
}

// A download to a writer has no path: a request that names one is
// refused before any request.
func TestWriterRequestErrors(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 5})
	for _, tc := range []struct {
		req  dlflow.Request
		want string
	}{
		{dlflow.Request{Path: "out.bin"}, "a download to a writer has no path: set Writer, or Path and Dir, not both"},
		{dlflow.Request{Dir: "d"}, "a download to a writer has no path: set Writer, or Path and Dir, not both"},
		{dlflow.Request{SkipExisting: true}, "a download to a writer has no output that could exist: SkipExisting does not apply"},
	} {
		tc.req.URL, tc.req.Writer = srv.URL(), io.Discard
		_, err := newClient(t).Do(t.Context(), &tc.req)
		var re *dlflow.RequestError
		if !errors.As(err, &re) || re.Field != "Writer" || err.Error() != tc.want {
			t.Errorf("%+v: err = %v, want a RequestError on Writer: %s", tc.req, err, tc.want)
		}
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests for refused requests", n)
	}
}

// A file that changes on the server after bytes went out to the writer
// fails the download: starting over would write the new version after
// part of the old one. The file changes at the first write, with pieces
// left to ask for (the window holds 12 of its 16).
func TestWriterFileChanged(t *testing.T) {
	inEmptyDir(t)
	noLeaks(t)
	const size = 64 << 20
	srv := startOrigin(t, origin.Options{Size: size, Seed: 5})
	w := &changeAtFirstWrite{hashWriter: newHashWriter(), srv: srv}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	_, err := newClient(t).Do(ctx, &dlflow.Request{URL: srv.URL(), Writer: w, Connections: 2,
		Sets: []string{"stages.fetch.config.max_request=4MiB"}})
	const want = "the bytes of the old version went out to the writer already, so the download cannot start over"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if w.n == 0 || w.n >= size {
		t.Errorf("the writer got %d bytes", w.n)
	}
}

// changeAtFirstWrite changes the origin's file once the first bytes are
// written: every GET after it sees the new version.
type changeAtFirstWrite struct {
	*hashWriter
	srv     *origin.Server
	changed bool
}

func (w *changeAtFirstWrite) Write(p []byte) (int, error) {
	if !w.changed {
		w.changed = true
		w.srv.SetFaults(origin.Faults{ChangeETagAfter: int(w.srv.Stats().GETs)})
	}
	return w.hashWriter.Write(p)
}

// A topology given with a Writer: one whose sink is a stdout.sink takes
// it, whatever the size; one that writes a file is refused before any
// request, with a hint.
func TestWriterTopologies(t *testing.T) {
	inEmptyDir(t)
	noLeaks(t)
	const size = 10_000_019
	srv := startOrigin(t, origin.Options{Size: size, Seed: 5})
	hw := newHashWriter()
	res, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Writer: hw, Topology: dlflow.Topology{Name: "stdout"}, Connections: 3})
	if err != nil {
		t.Fatal(err)
	}
	if hw.n != size || hw.sum() != origin.SHA256Hex(size, 5) || res.Topology != "(built-in) stdout.yaml" || res.Connections != 3 {
		t.Errorf("%d bytes, sha256 %s; result %+v", hw.n, hw.sum(), res)
	}
	srv.ResetStats()
	_, err = newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Writer: hw, Topology: dlflow.Topology{Name: "ranged"}})
	const want = "stages.write.config: writes a file, but this run's bytes go to a writer: use a topology whose sink is a stdout.sink, such as stdout.yaml"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ranged.yaml with a writer: %v, want %q", err, want)
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests for a refused topology", n)
	}
}
