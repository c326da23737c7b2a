package dlflow_test

// Downloads from a real nginx, whose Range, HEAD and keep-alive handling is
// the production reference, and the faults it produces.

import (
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/nginx"
	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/httpx"
)

// nginxFileSize is not a multiple of the 4 MiB piece or of any buffer size,
// so the last piece and the last write are short.
const nginxFileSize, nginxSeed = 32<<20 + 123, 17

// startNginx serves one generated file from a real nginx and returns its URL.
func startNginx(t *testing.T, opts nginx.Options) (*nginx.Server, string) {
	t.Helper()
	root := t.TempDir()
	if err := origin.WriteFile(filepath.Join(root, "file.bin"), nginxFileSize, nginxSeed); err != nil {
		t.Fatal(err)
	}
	opts.Root = root
	srv := nginx.StartT(t, opts)
	return srv, srv.BaseURL() + "/file.bin"
}

// nginxGET is one GET line of the access log.
type nginxGET struct {
	status int
	bytes  int64
	rng    string
}

// nginxGETs parses the GET lines of the access log. nginx writes a line when
// it finishes a request, which can trail the client's last read a little,
// so it polls (bounded) until want lines are there.
func nginxGETs(t *testing.T, srv *nginx.Server, want int) []nginxGET {
	t.Helper()
	// addr:port "GET /file.bin HTTP/1.1" 206 4194304 "bytes=0-4194303" "\"etag\""
	re := regexp.MustCompile(`"GET [^"]*" (\d+) (\d+) "([^"]*)"`)
	var gets []nginxGET
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		log, err := srv.AccessLog()
		if err != nil {
			t.Fatal(err)
		}
		gets = gets[:0]
		for _, m := range re.FindAllStringSubmatch(log, -1) {
			status, _ := strconv.Atoi(m[1])
			n, _ := strconv.ParseInt(m[2], 10, 64)
			rng := m[3]
			if rng == "-" {
				rng = ""
			}
			gets = append(gets, nginxGET{status, n, rng})
		}
		if len(gets) >= want || time.Now().After(deadline) {
			return gets
		}
	}
}

// TestNginxExampleTopologies runs every shipped topology against nginx.
func TestNginxExampleTopologies(t *testing.T) {
	_, url := startNginx(t, nginx.Options{})
	for _, topo := range fltTopologies {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: url, Path: out, Topology: dlflow.Topology{Name: topo}})
			fltOK(t, res, err, out, nginxFileSize, nginxSeed)
		})
	}
}

// TestNginxIgnoringRangesFallsBackToOneStream: with max_ranges 0 nginx
// answers every Range request with 200 and the whole file (and stops
// sending Accept-Ranges). The ranged topologies must download it as one
// stream, not fetch the whole file once per piece; the default topology
// must not pick ranges. The origin's IgnoreRange fault
// (TestGetServerIgnoringRanges) covers a server that still advertises
// ranges.
func TestNginxIgnoringRangesFallsBackToOneStream(t *testing.T) {
	zero := 0
	for _, topo := range []string{"ranged", "ranged-ordered", ""} {
		name := topo
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, url := startNginx(t, nginx.Options{MaxRanges: &zero})
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: url, Path: out, Topology: dlflow.Topology{Name: topo}})
			fltOK(t, res, err, out, nginxFileSize, nginxSeed)
			if topo == "" && res.Topology != builtin("stream") {
				t.Errorf("result topology %q, want the stream for a server without ranges", res.Topology)
			}
			// One stream means one full-body 200; the probe may add a GET
			// (Range: bytes=0-0, answered 200), which a careful client
			// abandons after a few bytes.
			var full int
			for _, g := range nginxGETs(t, srv, 1) {
				if g.bytes == nginxFileSize {
					full++
				}
				if g.status != 200 {
					t.Errorf("nginx answered %d to a GET (Range %q), want 200 for every request", g.status, g.rng)
				}
			}
			if full != 1 {
				t.Errorf("the whole file was sent %d times, want exactly one stream", full)
			}
		})
	}
}

// TestFaultNginx: the faults a real nginx produces: max_ranges 0 (Range
// ignored, no Accept-Ranges), limit_rate (slow, many connections), and a
// missing file.
func TestFaultNginx(t *testing.T) {
	const size, seed = 6<<20 + 77, 23
	root := t.TempDir()
	if err := origin.WriteFile(filepath.Join(root, "file.bin"), size, seed); err != nil {
		t.Fatal(err)
	}
	zero := 0
	cases := []struct {
		name string
		opts nginx.Options
	}{
		{"max_ranges 0", nginx.Options{Root: root, MaxRanges: &zero}},
		{"limit_rate", nginx.Options{Root: root, LimitRate: "4m"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := nginx.StartT(t, tc.opts)
			for _, topo := range fltTopologies {
				t.Run(topo, func(t *testing.T) {
					t.Parallel()
					out := fltOut(t)
					res, err := do(t, fltRequest(topo, srv.BaseURL()+"/file.bin", out))
					fltOK(t, res, err, out, size, seed)
				})
			}
			t.Run("404", func(t *testing.T) {
				t.Parallel()
				out := fltOut(t)
				res, err := do(t, fltRequest("ranged", srv.BaseURL()+"/missing.bin", out))
				fltFailed(t, res, err, out, "http 404")
				var he *httpx.HTTPError
				if !errors.As(err, &he) || he.Status != 404 {
					t.Errorf("err = %v, want an *httpx.HTTPError, 404", err)
				}
			})
		})
	}
}

// TestNginxBatchOneRequestPerFile: a batch of small files from nginx costs
// one request per file on connections the batch shares: at most 1.05
// requests per file (a probe that is also the GET; a retry at most now and
// then) over at most 3 x jobs TCP connections, each told apart by its
// client port in the access log.
func TestNginxBatchOneRequestPerFile(t *testing.T) {
	const files, jobs, size = 60, 8, 16 << 10
	root := t.TempDir()
	for i := range files {
		if err := origin.WriteFile(filepath.Join(root, "f"+strconv.Itoa(i)), size+int64(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	srv := nginx.StartT(t, nginx.Options{Root: root})
	dir := t.TempDir()
	reqs := make(chan *dlflow.Request)
	go func() {
		defer close(reqs)
		for i := range files {
			name := "f" + strconv.Itoa(i)
			reqs <- &dlflow.Request{URL: srv.BaseURL() + "/" + name, Path: name, Dir: dir}
		}
	}()
	done := 0
	for r := range newClient(t).Batch(t.Context(), jobs, reqs) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Request.Path, r.Err)
		}
		i, _ := strconv.Atoi(r.Request.Path[1:])
		assertComplete(t, r.Result.Path, size+int64(i), uint64(i))
		done++
	}
	if done != files {
		t.Fatalf("%d results, want %d", done, files)
	}

	// 127.0.0.1:40312 "GET /f7 HTTP/1.1" 206 16391 "bytes=0-" "-"
	line := regexp.MustCompile(`(?m)^(\S+) "(GET|HEAD) /f\d+ `)
	var requests int
	conns := map[string]bool{}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		log, err := srv.AccessLog()
		if err != nil {
			t.Fatal(err)
		}
		ms := line.FindAllStringSubmatch(log, -1)
		requests = len(ms)
		clear(conns)
		for _, m := range ms {
			conns[m[1]] = true
		}
		if requests >= files || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d files: %d requests over %d connections", files, requests, len(conns))
	if requests < files || requests*100 > files*105 || len(conns) > 3*jobs {
		t.Errorf("%d files took %d requests over %d connections; want at most %d requests over at most %d connections",
			files, requests, len(conns), files*105/100, 3*jobs)
	}
}

// TestNginxFirstShareOneRequest: where the readers ask for their whole
// share in one request, the probe asks nginx for all of the file
// (`bytes=0-`) and the reader at offset 0 reads its share from that answer:
// no second request from offset 0 or for the first piece. On a server that
// caps each request (limit_rate), a second request started the cap over and
// that connection ended last (issue 20). The ordered topology, whose reorder
// window makes each request one piece, still asks for the first piece.
func TestNginxFirstShareOneRequest(t *testing.T) {
	for _, tc := range []struct {
		topo, want string
	}{
		{"", "bytes=0-"},
		{"ranged", "bytes=0-"},
		{"ranged-ordered", "bytes=0-4194303"},
	} {
		name := tc.topo
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, url := startNginx(t, nginx.Options{})
			out := fltOut(t)
			res, err := do(t, &dlflow.Request{URL: url, Path: out, Topology: dlflow.Topology{Name: tc.topo}, Connections: 4})
			fltOK(t, res, err, out, nginxFileSize, nginxSeed)
			var atZero []string
			for _, g := range nginxGETs(t, srv, 4) {
				if g.rng == "" || regexp.MustCompile(`^bytes=0-`).MatchString(g.rng) {
					atZero = append(atZero, g.rng)
				}
			}
			if len(atZero) != 1 || atZero[0] != tc.want {
				t.Errorf("GETs from offset 0: %q, want one: %q", atZero, tc.want)
			}
		})
	}
}
