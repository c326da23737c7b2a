package cmd

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/bench/origin"
)

// piecesMetalink is a Metalink document of the origin's file of size and
// seed, named m.bin, with the sha-256 of each MiB and the two URLs in
// order of priority.
func piecesMetalink(size int64, seed uint64, first, second string) string {
	var doc strings.Builder
	fmt.Fprintf(&doc, `<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="m.bin"><size>%d</size>`, size)
	doc.WriteString(`<pieces length="1048576" type="sha-256">`)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 1 << 20 {
		n := min(1<<20, size-off)
		origin.Fill(buf[:n], off, seed)
		fmt.Fprintf(&doc, "<hash>%x</hash>", sha256.Sum256(buf[:n]))
	}
	fmt.Fprintf(&doc, `</pieces><url priority="1">%s</url><url priority="2">%s</url></file></metalink>`, first, second)
	return doc.String()
}

// TestCLIMirrors: --mirror adds sources; --json reports each with its
// bytes and why a dead one was dropped; a lying mirror with --checksum
// ends right (exit 0, the primary's bytes) or fails cleanly.
func TestCLIMirrors(t *testing.T) {
	const size, seed = 6<<20 + 7, 5
	start := func(opts origin.Options) *origin.Server { return startOrigin(t, opts) }
	a := start(origin.Options{Size: size, Seed: seed})
	b := start(origin.Options{Size: size, Seed: seed})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/file.bin"
	ln.Close()

	t.Run("json", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "f.bin")
		res := runCLI(t, a.URL(), "--mirror", b.URL(), "--mirror", dead, "-o", out, "--json", "-q",
			"-c", examplePath("ranged"), "--connections", "2", "--set", "stages.split.config.piece=1MiB")
		if res.code != 0 {
			t.Fatalf("exit %d: %s", res.code, res.stderr)
		}
		assertComplete(t, out, size, seed)
		var sum summary
		if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
			t.Fatalf("%v: %s", err, res.stdout)
		}
		if len(sum.Sources) != 3 {
			t.Fatalf("sources %+v, want 3", sum.Sources)
		}
		var total int64
		for _, s := range sum.Sources {
			total += s.Bytes
		}
		// The dead mirror's connections are refused as soon as they ask
		// for a range; under load the live ones can take every range
		// before they ask, and then it was never tried: both are fine,
		// as long as the JSON says which.
		d := sum.Sources[2]
		tried := d.Errors > 0 || d.Dropped != ""
		if total != size || d.URL != dead || d.Bytes != 0 || tried && !strings.Contains(d.Dropped, "connection refused") {
			t.Fatalf("sources %+v, want %d bytes from the first two and the dead one dropped (or not tried)", sum.Sources, size)
		}
	})
	t.Run("metalink", func(t *testing.T) {
		liar := start(origin.Options{Size: size, Seed: seed + 1, ETag: fmt.Sprintf(`"%x-%x"`, size, seed)})
		dir := t.TempDir()
		meta := filepath.Join(dir, "m.meta4")
		if err := os.WriteFile(meta, []byte(piecesMetalink(size, seed, liar.URL(), a.URL())), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out.bin")
		res := runCLI(t, "--metalink", meta, "-o", out, "--json", "-q",
			"-c", examplePath("ranged"), "--connections", "2", "--set", "stages.split.config.piece=1MiB")
		if res.code != 0 {
			t.Fatalf("exit %d: %s", res.code, res.stderr)
		}
		assertComplete(t, out, size, seed)
		var sum summary
		if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
			t.Fatalf("%v: %s", err, res.stdout)
		}
		if len(sum.Sources) != 2 || sum.Sources[0].Bytes != 0 || !strings.Contains(sum.Sources[0].Dropped, "fails its sha256 digest") {
			t.Fatalf("sources %+v, want the liar dropped for a piece", sum.Sources)
		}
	})
	t.Run("not with a list", func(t *testing.T) {
		list := filepath.Join(t.TempDir(), "list")
		if err := os.WriteFile(list, []byte(a.URL()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, flag := range [][]string{{"--mirror", b.URL()}, {"--metalink", list}} {
			res := runCLI(t, append([]string{"-i", list, "--dir", t.TempDir()}, flag...)...)
			if res.code != 2 || !strings.Contains(res.stderr, "do not go with -i") {
				t.Fatalf("%v: exit %d, %s", flag, res.code, res.stderr)
			}
		}
	})
	t.Run("lying mirror", func(t *testing.T) {
		liar := start(origin.Options{Size: size, Seed: seed + 1, ETag: fmt.Sprintf(`"%x-%x"`, size, seed)})
		out := filepath.Join(t.TempDir(), "f.bin")
		res := runCLI(t, a.URL(), "--mirror", liar.URL(), "-o", out, "-q", "--checksum", "sha256:"+origin.SHA256Hex(size, seed),
			"-c", examplePath("ranged"), "--connections", "2", "--set", "stages.split.config.piece=1MiB")
		if res.code != 0 {
			assertFailedCleanly(t, res, res.code, out, "mismatch")
			return
		}
		assertComplete(t, out, size, seed)
		if liar.Stats().BytesServed == 0 {
			t.Fatal("the liar served nothing: the test proves nothing")
		}
	})
}
