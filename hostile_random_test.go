package dlflow_test

// TestHostileRandom: a property test of downloads from hostile origins.
// Each case, drawn from a seed (hostile_gen_test.go), downloads one file
// through one of the topologies and outputs, from an origin and maybe a
// mirror that inject detectable faults. Whatever the faults, a download
// either succeeds with the exact bytes of one version the primary served
// (the Metalink's when it has piece hashes), or fails and leaves nothing
// at the output; credentials reach only the primary's origin; no
// goroutine is left.
//
//	go test -race -run TestHostileRandom .                       # 200 cases (40 with -short)
//	go test -race -run 'TestHostileRandom/seed=1234$' .          # replay one
//	DLFLOW_HOSTILE_CASES=10000 go test -run TestHostileRandom -timeout 2h .
//	DLFLOW_HOSTILE_FAULTS=all (or cut,liar,...) enables classes, pending ones too.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

const hostileAuth, hostileUserinfo = "Bearer hostile-secret", "hostile-password"

func TestHostileRandom(t *testing.T) {
	n := envInt(t, "DLFLOW_HOSTILE_CASES", 200)
	if testing.Short() && os.Getenv("DLFLOW_HOSTILE_CASES") == "" {
		n = 40
	}
	first := uint64(envInt(t, "DLFLOW_HOSTILE_SEED", 1))
	long := os.Getenv("DLFLOW_HOSTILE_CASES") != "" // the long run draws files up to 40 MB
	enabled := hostileEnabled()
	seeds := make([]uint64, 0, n)
	for i := range n {
		seeds = append(seeds, first+uint64(i))
	}
	// A seed named by -run is replayed even when it lies outside the run.
	if f := flag.Lookup("test.run"); f != nil {
		for _, m := range regexp.MustCompile(`seed=(\d+)`).FindAllStringSubmatch(f.Value.String(), -1) {
			if s, err := strconv.ParseUint(m[1], 10, 64); err == nil && !slices.Contains(seeds, s) {
				seeds = append(seeds, s)
			}
		}
	}
	// Cases mostly wait (for timeouts, on loopback), so they run
	// DLFLOW_HOSTILE_PARALLEL (16) at a time, whatever -parallel says;
	// leaks are then checked once, after all of them. With 1, after each.
	workers := max(envInt(t, "DLFLOW_HOSTILE_PARALLEL", 16), 1)
	if workers > 1 {
		opt := goleak.IgnoreCurrent()
		t.Cleanup(func() {
			if err := goleak.Find(opt); err != nil {
				t.Errorf("goroutines left by the cases (rerun with DLFLOW_HOSTILE_PARALLEL=1 to find which): %v", err)
			}
		})
	}
	next := make(chan uint64)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for seed := range next {
				c := genCase(seed, enabled, long)
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					if workers == 1 {
						noLeaks(t)
					}
					runHostile(t, c)
				})
			}
		})
	}
	for _, seed := range seeds {
		next <- seed
	}
	close(next)
	wg.Wait()
}

func envInt(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a count", key, v)
	}
	return n
}

// hostileEnabled is DLFLOW_HOSTILE_FAULTS's classes ("all": every one),
// else every class but the pending ones.
func hostileEnabled() map[string]bool {
	on := map[string]bool{}
	switch v := os.Getenv("DLFLOW_HOSTILE_FAULTS"); v {
	case "":
		for _, c := range hostileClasses {
			on[c] = !slices.Contains(pendingFaults, c)
		}
	case "all":
		for _, c := range hostileClasses {
			on[c] = true
		}
	default:
		for _, c := range strings.Split(v, ",") {
			on[strings.TrimSpace(c)] = true
		}
	}
	return on
}

// hostileOrigins starts the primary and, for c.mirror, the mirror: the same
// file (or, for "liar", other bytes under the same validators).
func hostileOrigins(t *testing.T, c *hostileCase) (primary, mirror *origin.Server) {
	opts := origin.Options{Size: c.size, Seed: c.seed}
	if c.tar {
		// Version 0 is built before the origin starts: building it in
		// the first request would count against the header timeout.
		first := tarOf(c.size, c.seed)
		opts.Content = func(seed uint64) []byte {
			if seed == c.seed {
				return first
			}
			return tarOf(c.size, seed)
		}
	}
	liar := opts
	liar.Seed, liar.ETag = c.seed+liarSeed, fmt.Sprintf(`"%x-%x"`, c.size, c.seed)
	if c.has("liar") && c.liar == "primary" {
		primary = startOrigin(t, liar)
	} else {
		primary = startOrigin(t, opts)
	}
	primary.SetFaults(c.primary)
	if !c.mirror {
		return primary, nil
	}
	if c.has("liar") && c.liar == "mirror" {
		opts = liar
	}
	mirror = startOrigin(t, opts)
	mirror.SetFaults(c.second)
	return primary, mirror
}

// hostileRequest is c's download from primary (and mirror) into dir; out
// is where its bytes end up (a file, a directory, or the buffer).
func hostileRequest(t *testing.T, c *hostileCase, primary, mirror *origin.Server, dir string) (*dlflow.Request, string, *bytes.Buffer) {
	header := hostileHeaderTimeout
	if c.has("silent-mirror") && !c.has("silent") {
		// A silent mirror must not hold its range until the header
		// timeout: with one of 10 minutes, a download that waits for it
		// runs into the case's 2 minutes.
		header = "10m"
	}
	req := &dlflow.Request{URL: primary.URL(), Topology: dlflow.Topology{Name: c.topology},
		Sets: []string{"stages.fetch.config.backoff=10ms", "stages.fetch.config.max_backoff=50ms",
			"stages.fetch.config.idle_timeout=" + hostileIdleTimeout, "http.header_timeout=" + header}}
	if c.topology == "" || strings.HasPrefix(c.topology, "ranged") || c.topology == "stdout" || c.topology == "extract" {
		req.Connections = 1 + int(c.seed%4)
		req.Sets = append(req.Sets, "stages.split.config.piece=256KiB")
	}
	switch {
	case c.userinfo:
		req.URL = strings.Replace(req.URL, "http://", "http://user:"+hostileUserinfo+"@", 1)
	case c.auth:
		req.Header = http.Header{"Authorization": {hostileAuth}}
	}
	urls := []string{primary.URL()} // the Metalink's, without credentials
	if mirror != nil {
		urls = append(urls, mirror.URL())
	}
	if c.pieces > 0 {
		req.Metalink = hostileMetalink(t, c, urls)
	} else {
		req.Mirrors = urls[1:]
	}
	var out string
	var buf *bytes.Buffer
	switch c.output {
	case "file":
		out = filepath.Join(dir, "out.bin")
		req.Path = out
	case "extract":
		out = filepath.Join(dir, "x")
		req.Extract = out
	case "writer":
		buf = new(bytes.Buffer)
		req.Writer = buf
	}
	return req, out, buf
}

// hostileMetalink writes a .meta4 of version 0 of c's file with its
// piece hashes, declaring c.metaSize.
func hostileMetalink(t *testing.T, c *hostileCase, urls []string) string {
	data := versionOf(c, 0)
	var b strings.Builder
	sum := sha256.Sum256(data)
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n<file name=\"named.bin\">\n")
	fmt.Fprintf(&b, "<size>%d</size>\n", c.metaSize)
	if c.whole {
		fmt.Fprintf(&b, "<hash type=\"sha-256\">%s</hash>\n", hex.EncodeToString(sum[:]))
	}
	fmt.Fprintf(&b, "<pieces length=\"%d\" type=\"sha-256\">\n", c.pieces)
	for off := int64(0); off < c.metaSize; off += c.pieces {
		piece := data[min(off, int64(len(data))):min(off+c.pieces, int64(len(data)))]
		ps := sha256.Sum256(piece)
		fmt.Fprintf(&b, "<hash>%s</hash>\n", hex.EncodeToString(ps[:]))
	}
	b.WriteString("</pieces>\n")
	for i, u := range urls {
		fmt.Fprintf(&b, "<url priority=\"%d\">%s</url>\n", i+1, u)
	}
	b.WriteString("</file>\n</metalink>\n")
	if c.metaHTTP {
		return metalinkHost(t, b.String())
	}
	path := filepath.Join(t.TempDir(), "f.meta4")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// metalinkHost serves meta from a third origin and returns its URL. The
// request names that URL itself (Request.Metalink), so its origin is one
// the user named and may get the credentials, as curl sends -H to every
// URL on its command line; the hosts the Metalink lists may not (see
// checkCredentials).
func metalinkHost(t *testing.T, meta string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, meta)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/f.meta4"
}

// versionOf is the content of the k-th version the primary serves.
func versionOf(c *hostileCase, k int) []byte {
	if c.tar {
		return tarOf(c.size, c.seed+uint64(k))
	}
	data := make([]byte, c.size)
	origin.Fill(data, 0, c.seed+uint64(k))
	return data
}

// mustSucceed: only faults a download recovers from are on.
func (c *hostileCase) mustSucceed() bool {
	for _, class := range c.classes {
		if !slices.Contains([]string{"cut", "reset", "stall", "pieces-only"}, class) {
			return false
		}
	}
	return true
}

func runHostile(t *testing.T, c *hostileCase) {
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed=%d: %s\ncase: %v\nreplay: DLFLOW_HOSTILE_CASES=%q DLFLOW_HOSTILE_FAULTS=%q go test -race -run 'TestHostileRandom/seed=%d$' .",
			c.seed, fmt.Sprintf(format, args...), c, os.Getenv("DLFLOW_HOSTILE_CASES"), os.Getenv("DLFLOW_HOSTILE_FAULTS"), c.seed)
	}
	t.Logf("case: %v", c)
	primary, mirror := hostileOrigins(t, c)
	req, out, buf := hostileRequest(t, c, primary, mirror, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := newClient(t).Do(ctx, req)
	t.Logf("took %v", time.Since(start))
	if os.Getenv("DLFLOW_HOSTILE_LOG") != "" { // what the origins saw
		for _, o := range []*origin.Server{primary, mirror} {
			if o != nil {
				o.WaitIdle(10 * time.Second)
				t.Logf("%s: %+v", o.BaseURL(), o.Log())
			}
		}
	}
	if pe := new(pipeline.PanicError); errors.As(err, &pe) {
		fail("a stage panicked: %v\n%s", pe, pe.Stack)
	}
	if ctx.Err() != nil {
		fail("the download ran for 2 minutes: %v", err)
	}
	if err != nil {
		t.Logf("failed: %v", err)
		if c.mustSucceed() {
			fail("failed with only faults it recovers from: %v", err)
		}
		if out != "" {
			if _, serr := os.Lstat(out); !errors.Is(serr, os.ErrNotExist) {
				fail("failed (%v), yet %s exists (%v)", err, out, serr)
			}
		}
	} else {
		if c.metaSize != c.size {
			fail("succeeded although the Metalink says %d bytes and the servers %d", c.metaSize, c.size)
		}
		got, gerr := hostileOutput(c, out, buf)
		if gerr != nil {
			fail("succeeded, but the output: %v", gerr)
		}
		if k, ok := matchVersion(c, got); !ok {
			fail("succeeded with %d bytes that are no version the primary served (%s)", len(got), res.Checksum)
		} else if k != 0 && c.pieces > 0 {
			fail("succeeded with version %d, not the Metalink's", k)
		}
		if out != "" && c.output == "file" {
			assertMissing(t, out+".tmp")
		}
	}
	checkCredentials(t, fail, c, primary, mirror)
}

// hostileOutput reads what a successful download left: the file, the
// buffer, or the one member of the extracted directory (its data, put
// back in an archive to compare it with the versions served).
func hostileOutput(c *hostileCase, out string, buf *bytes.Buffer) ([]byte, error) {
	switch c.output {
	case "writer":
		return buf.Bytes(), nil
	case "file":
		return os.ReadFile(out)
	}
	des, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	if len(des) != 1 || des[0].Name() != "data.bin" {
		return nil, fmt.Errorf("extracted %v, want data.bin alone", des)
	}
	data, err := os.ReadFile(filepath.Join(out, "data.bin"))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != tarData(c.size) {
		return nil, fmt.Errorf("data.bin has %d bytes, want %d", len(data), tarData(c.size))
	}
	return data, nil
}

// matchVersion finds the version of the primary's file that got is (for
// an extraction, the member's data), comparing every byte.
func matchVersion(c *hostileCase, got []byte) (int, bool) {
	versions := 1
	if c.primary.ChangeETagAfter > 0 {
		versions = hostileVersions
	}
	off := 0 // where the member's data starts in got
	if c.tar && c.output != "extract" {
		off = 512
	}
	head := make([]byte, 64)
	for k := range versions {
		if len(got)-off-tarHeader >= len(head) || !c.tar && len(got) >= len(head) { // a cheap look before building the version
			origin.Fill(head, 0, c.seed+uint64(k))
			if !bytes.Equal(got[off:off+len(head)], head) {
				continue
			}
		}
		want := versionOf(c, k)
		if c.output == "extract" {
			want = memberData(c.size, c.seed+uint64(k))
		}
		if bytes.Equal(got, want) {
			return k, true
		}
	}
	return 0, false
}

// checkCredentials: the request's Authorization reached no other origin
// than the primary's, and, when it is the only source, every request to it
// (a Metalink's URL of the primary is another source, without them).
func checkCredentials(t *testing.T, fail func(string, ...any), c *hostileCase, primary, mirror *origin.Server) {
	if !c.auth {
		return
	}
	primary.WaitIdle(10 * time.Second)
	want := hostileAuth
	if c.userinfo {
		want = "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+hostileUserinfo))
	}
	for _, r := range primary.Log() {
		if r.Authorization != want && !c.mirror && c.pieces == 0 {
			fail("the primary got %s %s with Authorization %q", r.Method, r.Range, r.Authorization)
		}
	}
	if mirror == nil {
		return
	}
	mirror.WaitIdle(10 * time.Second)
	for _, r := range mirror.Log() {
		if r.Authorization != "" {
			fail("the mirror, another origin, got the credentials (%s %s)", r.Method, r.Range)
		}
	}
}
