package dlflow_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

// streamNoTaps is stream.yaml without its progress.tap and hash.tap.
const streamNoTaps = `
stages:
  fetch:
    type: http.source
  write:
    type: file.sink
    inputs: [fetch]
`

// rangedNoVerify is ranged.yaml without its hash.tap: bytes in any order.
const rangedNoVerify = `
stages:
  split:
    type: range.splitter
  fetch:
    type: http.reader
    inputs: [split]
    workers: 4
  progress:
    type: progress.tap
    inputs: [fetch]
  write:
    type: file.sink
    inputs: [progress]
    config:
      mode: positional
`

// TestNeedProgressTapAdded: a topology without a progress.tap gets one,
// so the progress moves (before: 0 B for the whole download).
func TestNeedProgressTapAdded(t *testing.T) {
	noLeaks(t)
	const size = 3<<20 + 17
	srv := startOrigin(t, origin.Options{Size: size, Seed: 7})
	out := filepath.Join(t.TempDir(), "out")
	d := newClient(t).Start(t.Context(), &dlflow.Request{URL: srv.URL(), Path: out,
		Topology: dlflow.Topology{File: "notaps.yaml", Data: []byte(streamNoTaps)}})
	if _, err := d.Wait(); err != nil {
		t.Fatal(err)
	}
	assertComplete(t, out, size, 7)
	if p := d.Progress(); p.Done != size || p.Total != size {
		t.Errorf("progress %d / %d at the end, want %d / %d", p.Done, p.Total, size, size)
	}
}

// TestNeedChecksumHashTapAdded: a checksum with a topology of one ordered
// stream and no hash.tap is verified by one dlflow adds (before: the
// request was refused); a wrong one fails as a checksum mismatch.
func TestNeedChecksumHashTapAdded(t *testing.T) {
	noLeaks(t)
	const size = 2<<20 + 5
	srv := startOrigin(t, origin.Options{Size: size, Seed: 8})
	topo := dlflow.Topology{File: "notaps.yaml", Data: []byte(streamNoTaps)}
	out := filepath.Join(t.TempDir(), "out")
	res, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Path: out, Topology: topo,
		Checksum: "sha256:" + origin.SHA256Hex(size, 8)})
	if err != nil {
		t.Fatal(err)
	}
	assertComplete(t, out, size, 8)
	if res.Verified != dlflow.VerifiedChecksum {
		t.Errorf("verified %v, want checksum", res.Verified)
	}
	bad := strings.Repeat("0", 64)
	_, err = newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Path: filepath.Join(t.TempDir(), "bad"), Topology: topo,
		Checksum: "sha256:" + bad})
	if !errors.Is(err, pipeline.ErrCorrupt) {
		t.Errorf("a wrong checksum: %v, want ErrCorrupt", err)
	}
}

// TestNeedChecksumRefused: a checksum with a topology whose bytes arrive
// in any order and that has no hash.tap fails with a *NeedError naming
// the need and the topology, before any request.
func TestNeedChecksumRefused(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 9})
	_, err := newClient(t).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Path: filepath.Join(t.TempDir(), "out"),
		Topology: dlflow.Topology{File: "noverify.yaml", Data: []byte(rangedNoVerify)},
		Checksum: "sha256:" + origin.SHA256Hex(1<<20, 9)})
	var ne *dlflow.NeedError
	if !errors.As(err, &ne) || ne.Need != pipeline.ProvidesChecksum || ne.Topology != "noverify.yaml" {
		t.Fatalf("error %v, want a *NeedError for checksum naming noverify.yaml", err)
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests, want none", n)
	}
}

// TestNeedMirrorsUnusedSaidAtWarn: mirrors for a file under 16 MiB are not
// used (one stream): one line says so at warn, the default level (before:
// info).
func TestNeedMirrorsUnusedSaidAtWarn(t *testing.T) {
	noLeaks(t)
	srv := startOrigin(t, origin.Options{Size: 1 << 20, Seed: 10})
	opt, logs := withLog(zerolog.WarnLevel)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := newClient(t, opt).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Path: out, Mirrors: []string{srv.URL() + "?mirror"}}); err != nil {
		t.Fatal(err)
	}
	assertComplete(t, out, 1<<20, 10)
	if n := strings.Count(logs.String(), "the mirrors are not used"); n != 1 {
		t.Errorf("%d warnings that the mirrors are not used, want 1; log:\n%s", n, logs)
	}
}

// TestNeedConnectionsReal: --connections 8 with a ranged topology against
// a server that sends no ranges and no size runs on one connection: the
// result says 1 (before: 8), and one line at warn says why.
func TestNeedConnectionsReal(t *testing.T) {
	noLeaks(t)
	const size = 20 << 20
	srv := startOrigin(t, origin.Options{Size: size, Seed: 11})
	srv.SetFaults(origin.Faults{NoLength: true})
	opt, logs := withLog(zerolog.WarnLevel)
	out := filepath.Join(t.TempDir(), "out")
	res, err := newClient(t, opt).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Path: out, Connections: 8,
		Topology: dlflow.Topology{Name: "ranged"}})
	if err != nil {
		t.Fatal(err)
	}
	assertComplete(t, out, size, 11)
	if res.Connections != 1 {
		t.Errorf("result says %d connections, want 1", res.Connections)
	}
	if n := strings.Count(logs.String(), "downloading over one connection"); n != 1 {
		t.Errorf("%d warnings of one connection, want 1; log:\n%s", n, logs)
	}
}

// TestNeedMirrorsNoRangesSaidAtWarn: mirrors with a ranged topology and a
// server that sends no ranges and no size go unused: one line says so at
// warn, and the bytes come from the primary alone.
func TestNeedMirrorsNoRangesSaidAtWarn(t *testing.T) {
	noLeaks(t)
	const size = 18 << 20
	srv := startOrigin(t, origin.Options{Size: size, Seed: 12})
	srv.SetFaults(origin.Faults{NoLength: true})
	mirror := startOrigin(t, origin.Options{Size: size, Seed: 12})
	opt, logs := withLog(zerolog.WarnLevel)
	out := filepath.Join(t.TempDir(), "out")
	res, err := newClient(t, opt).Do(t.Context(), &dlflow.Request{URL: srv.URL(), Path: out, Mirrors: []string{mirror.URL()},
		Topology: dlflow.Topology{Name: "ranged"}})
	if err != nil {
		t.Fatal(err)
	}
	assertComplete(t, out, size, 12)
	if n := strings.Count(logs.String(), "the mirrors are not used"); n != 1 {
		t.Errorf("%d warnings that the mirrors are not used, want 1; log:\n%s", n, logs)
	}
	if n := mirror.Stats().GETs; n != 0 {
		t.Errorf("the mirror got %d GETs, want none", n)
	}
	if res.Connections != 1 {
		t.Errorf("result says %d connections, want 1", res.Connections)
	}
}
