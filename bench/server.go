package bench

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"

	"github.com/dlflow/dlflow/bench/nginx"
	"github.com/dlflow/dlflow/bench/origin"
)

// seed picks the generated content; any value works.
const seed = 0xd1f10

// server is what the cells of one scenario download from.
type server struct {
	url   string
	sha   string      // "": unknown, outputs are unverified
	files []batchFile // the small scenario's batch, instead of url
	// mirror and dead are the mirrors scenario's other URLs: a live
	// mirror of url, and one where nothing listens.
	mirror, dead string
	// object, env and endpoint are the s3 scenarios' (see job); store
	// holds the object, nil in the other scenarios.
	object, endpoint string
	env              []string
	store            objectStore
	desc             string
	// archives are the extract scenario's URLs, by format, of the archives
	// of tree, what each must unpack to.
	archives map[string]string
	tree     manifest
	reset    func() // before every run: fault counters back to zero
	// stats are the origin's counters since reset; nil where the origin
	// does not count (nginx, an external URL).
	stats func() origin.Stats
	close func()
}

// batchFile is one file of the small scenario's batch.
type batchFile struct {
	url  string
	name string // its output's name in the run's directory
	sha  string
}

// startServer starts the origin of a scenario.
func startServer(o Options, scenario Scenario, dir string) (*server, error) {
	if t, ok := o.target(scenario); ok {
		return &server{url: t.URL, sha: t.SHA256, desc: t.URL, reset: func() {}, close: func() {}}, nil
	}
	size := int64(o.Size)
	switch scenario {
	case ScenarioSmall:
		return startBatchOrigin(o)
	case ScenarioMirrors:
		return startMirrors(o)
	case ScenarioExtract:
		return startExtractServer(o, dir)
	case ScenarioS3, ScenarioS3Cap:
		return startS3(o, scenario, dir)
	}
	sha := origin.SHA256Hex(size, seed)
	if o.Origin == OriginNginx {
		root := filepath.Join(dir, "www")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if err := origin.WriteFile(filepath.Join(root, "file.bin"), size, seed); err != nil {
			return nil, err
		}
		opts := nginx.Options{Root: root}
		desc := fmt.Sprintf("nginx on 127.0.0.1, %v file", o.Size)
		if scenario == ScenarioRateLimit || scenario == ScenarioCap {
			opts.LimitRate = fmt.Sprint(int64(o.Rate))
			desc += fmt.Sprintf(", limit_rate %v/s per request", o.Rate)
		}
		ngx, err := nginx.Start(opts)
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		return &server{
			url: ngx.BaseURL() + "/file.bin", sha: sha, desc: desc, reset: func() {},
			close: func() { ngx.Close(); os.RemoveAll(root) },
		}, nil
	}
	opts := origin.Options{Size: size, Seed: seed}
	var faults origin.Faults
	desc := fmt.Sprintf("built-in origin on 127.0.0.1, %v generated", o.Size)
	switch scenario {
	case ScenarioWAN:
		opts.ConnRateLimit, opts.Latency = int64(o.ConnRate), o.latency(scenario)
		desc += fmt.Sprintf(", %v/s per TCP connection, %v before each response", o.ConnRate, opts.Latency)

	case ScenarioRateLimit:
		opts.RateLimit = int64(o.Rate)
		desc += fmt.Sprintf(", %v/s per connection", o.Rate)
	case ScenarioCap:
		// RateLimit paces each response from its first byte, as nginx's
		// limit_rate does each request.
		opts.RateLimit = int64(o.Rate)
		desc += fmt.Sprintf(", %v/s per request (as nginx's limit_rate)", o.Rate)
	case ScenarioLatency:
		opts.Latency = o.latency(scenario)
		desc += fmt.Sprintf(", %v before each response", opts.Latency)
	case ScenarioSlowConn:
		faults = origin.Faults{Trickle: int64(o.Trickle), TrickleRequest: o.SlowRequest}
		desc += fmt.Sprintf(", GET #%d trickles at %v/s", o.SlowRequest, o.Trickle)
	}
	srv, err := origin.Start(opts)
	if err != nil {
		return nil, err
	}
	return &server{
		url: srv.URL(), sha: sha, desc: desc,
		reset: func() { srv.ResetStats(); srv.SetFaults(faults) },
		stats: srv.Stats,
		close: func() { srv.Close() },
	}, nil
}

// startBatchOrigin starts the origin of the small scenario: Files files
// of FileSize, each of content of its own, so that an output written
// under another file's name fails its check.
func startBatchOrigin(o Options) (*server, error) {
	opts := origin.Options{Size: int64(o.FileSize), Seed: seed, Files: o.Files, Latency: o.latency(ScenarioSmall)}
	srv, err := origin.Start(opts)
	if err != nil {
		return nil, err
	}
	s := &server{
		desc:  fmt.Sprintf("built-in origin on 127.0.0.1, %d files of %v generated, %v before each response, %d at once", o.Files, o.FileSize, opts.Latency, o.Jobs),
		reset: srv.ResetStats,
		stats: srv.Stats,
		close: func() { srv.Close() },
	}
	for i := range opts.Files {
		s.files = append(s.files, batchFile{
			url:  srv.FileURL(i),
			name: path.Base(origin.FilePath(i)),
			sha:  origin.SHA256Hex(opts.Size, origin.FileSeed(seed, i)),
		})
	}
	return s, nil
}

// startMirrors starts the origins of the mirrors scenario: the primary
// and its mirror (the same file and validators, each TCP connection
// capped), and finds a port where nothing listens.
func startMirrors(o Options) (*server, error) {
	size := int64(o.Size)
	primary, err := origin.Start(origin.Options{Size: size, Seed: seed, ConnRateLimit: int64(o.ConnRate), Latency: o.latency(ScenarioMirrors)})
	if err != nil {
		return nil, err
	}
	mirror, err := origin.Start(origin.Options{Size: size, Seed: seed, ConnRateLimit: int64(o.MirrorRate)})
	if err != nil {
		primary.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		primary.Close()
		mirror.Close()
		return nil, err
	}
	dead := "http://" + ln.Addr().String() + "/file.bin"
	ln.Close()
	return &server{
		url: primary.URL(), mirror: mirror.URL(), dead: dead, sha: origin.SHA256Hex(size, seed),
		desc: fmt.Sprintf("built-in origins on 127.0.0.1, %v generated: A %v/s per TCP connection, %v before each response; B (mirror) %v/s per TCP connection; DEAD: nothing listens",
			o.Size, o.ConnRate, o.latency(ScenarioMirrors), o.MirrorRate),
		reset: func() { primary.ResetStats(); mirror.ResetStats() },
		close: func() { primary.Close(); mirror.Close() },
	}, nil
}
