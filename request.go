package dlflow

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/metalink"
	"github.com/dlflow/dlflow/pipeline"
)

// MaxConnections is the most connections one download may ask for. More
// would not fill a link any faster, and each costs buffers (see the memory
// bound) and a slot in the server's connection table.
const MaxConnections = 64

// Request is one download: what to fetch, where to put it, and how. Only
// URL is required. A Request must not be changed while its download runs.
type Request struct {
	// URL is the http or https URL to download. It may carry credentials
	// (https://user:pass@host/); they are never logged nor stored.
	URL string
	// Mirrors are other URLs of the same file (after the configuration's
	// url list and mirrors key). A ranged download spreads its
	// connections over URL and them, Connections to each, and moves work
	// to the sources that finish it soonest. Each mirror is checked on its
	// first answer: one whose size differs, or whose ETag or Last-Modified
	// differ while no Checksum guards the bytes, is dropped with a
	// warning. A source that fails is dropped while another serves; the
	// download fails only when the last one does. With a Checksum, bytes
	// that fail it are fetched again from URL alone.
	Mirrors []string
	// Metalink is a Metalink file (RFC 5854, .meta4): a path, or an http
	// or https URL. Its URLs are sources (by priority; the first is the
	// primary unless URL is set), its size must be the server's, its
	// strongest hash is the Checksum unless one is set, its name names the
	// output unless Path does, and its piece hashes are verified as the
	// pieces arrive: a piece that fails is fetched from another source,
	// and the source that served it is dropped. Metalink 3.0 files
	// (.metalink, as aria2c reads them) are read as well.
	Metalink string
	// MetalinkFile picks the file of a Metalink that lists several, by
	// its 1-based index in the document (as aria2c's --select-file); 0
	// takes the only one, and is an error (*MetalinkFilesError) with
	// several. Client.MetalinkRequests makes a request for each.
	MetalinkFile int
	// metalinkFile is the file MetalinkFile picks, when MetalinkRequests
	// read the Metalink already.
	metalinkFile *metalink.File
	// MetalinkTimeout bounds the fetch of a Metalink URL, answer and body
	// together: a server that trickles it a byte at a time fails the
	// download then, rather than hold it for ever (the body is also
	// capped, at metalink.MaxBytes). 0 (or less) is
	// DefaultMetalinkTimeout.
	MetalinkTimeout time.Duration
	// Path is where the file ends up. "" names it after the server's
	// Content-Disposition, else the URL's last path segment, made safe.
	// With Dir set, Path must be a relative path inside Dir. A Path that
	// is, or links to, a device, a pipe or a /proc entry (/dev/null,
	// /dev/stdout) is refused, never replaced: stream to it with Writer.
	//
	// An object URL, s3://bucket/key, uploads to an S3-compatible store
	// instead, with no local copy: the zero Topology then runs s3.yaml,
	// whose s3.sink takes its endpoint, region and credentials from the
	// process's AWS_* variables unless its config sets them. Dir does not
	// apply to it.
	Path string
	// Dir is the directory of the output. A Path inside it (or the name
	// the server suggests) may not leave it: no absolute path, no "..",
	// no symlink on the way. Dir and the missing directories under it are created (0o755).
	Dir string
	// Extract, when set, is a directory to unpack the download into, a
	// .tar, .tar.gz or .tar.zst archive, as its bytes arrive: no archive
	// is stored (a .zip, whose index comes last, is spooled to a
	// temporary file first). The format comes from the archive's first bytes, not its
	// name. Extract appears only once the whole archive is unpacked and
	// synced; a failure leaves neither it nor a partial directory, and
	// there is no resume (a rerun starts over). Archive members may not
	// write outside it (see TarExtract in package sinks/archive). It
	// excludes Path and Dir. It needs the backends sinks/archive and
	// stages/decompress: without their import, a *MissingBackendError.
	// The zero Topology then picks a built-in extract topology: ranged
	// ("extract") or one stream ("extract-stream"), as for files.
	Extract string
	// Writer, when set, gets the bytes, in file order, instead of a file:
	// Path and Dir must be empty (and SkipExisting unset), nothing is
	// written to disk, and Result.Path and Info.Path are "". There is no
	// resume (NoResume is implied): an interrupted download starts over.
	// The automatic topology is stdout.yaml (parallel ranges put back in
	// order by a reorder window, so memory stays bounded) for a server
	// that takes ranges and a file of 16 MiB or more, else
	// stdout-stream.yaml (one stream); a topology given instead needs a
	// sink that takes the writer (stdout.sink, see
	// pipeline.Settings.Writer).
	//
	// Write calls come from one goroutine, one chunk (up to a few hundred
	// KiB) each, and a chunk's bytes must not be kept after Write
	// returns. A Write error ends the download at once, and Wait returns
	// an error that wraps it (a closed pipe: errors.Is syscall.EPIPE).
	// A program that passes os.Stdout gets that error only if it called
	// signal.Notify for SIGPIPE: otherwise Go's runtime ends it with
	// SIGPIPE at that write (see os/signal), as the CLI's -o - avoids.
	// A checksum is verified as the bytes pass: on a mismatch the bytes
	// are already out when Wait returns the *ChecksumError, so a reader
	// must not trust them before the download succeeded. If the file
	// changes on the server after bytes went out, the download fails
	// (it cannot take them back) instead of starting over.
	Writer io.Writer

	// Topology is the graph of stages that downloads. The zero Topology
	// picks one from the probe: ranged when the server takes ranges and
	// the file is 16 MiB or more, else stream.
	Topology Topology
	// Connections, when positive, sets the workers of the stages that hold
	// a connection each (http.reader): at most MaxConnections. A topology
	// that cannot use more than one connection logs that at info level.
	Connections int
	// Checksum is the expected digest as algorithm:hex (sha256, sha512,
	// sha1, md5). The download fails, and keeps nothing, on a mismatch.
	Checksum string
	// NoResume starts over instead of continuing a partial download that
	// an earlier run left at Path.tmp.
	NoResume bool
	// Overwrite replaces an existing output. Without it, and without
	// SkipExisting, an existing output is an error that wraps
	// ErrOutputExists, and nothing is fetched.
	Overwrite bool
	// SkipExisting leaves an existing output alone and succeeds with
	// Result.Skipped set.
	SkipExisting bool
	// IfNewer fetches the file only if the server's copy is newer than an
	// existing output (wget -N, curl -z, aria2c --conditional-get): one
	// HEAD asks with If-Modified-Since, the output's modification time.
	// A 304, or a Last-Modified no later than that time with the output's
	// size (a server that ignores the condition), leaves the output as it
	// is and succeeds with Result.UpToDate set: no body is fetched. Else
	// the output is replaced by the download, as with Overwrite. Without
	// a Path, the output checked is the one the URL names (the server's
	// Content-Disposition is known only after the probe). Every completed
	// file gets the server's Last-Modified as its modification time, so
	// that a later IfNewer run can compare.
	IfNewer bool
	// Retry, when set, replaces the retry policy of the topology's HTTP
	// stages and of the probe (curl --retry, --retry-delay); nil keeps
	// the topology's (5 tries per range by default).
	Retry *Retry
	// MaxTime, when positive, bounds the whole download, probe included
	// (curl -m): past it the download fails with a *MaxTimeError, and
	// keeps its partial data for a later resume.
	MaxTime time.Duration
	// Header holds extra request headers, sent with every request (a
	// Header value here wins over the topology's http.headers). Range and
	// Accept-Encoding are the library's own and may not be set.
	Header http.Header
	// LimitRate, when positive, caps the whole download (all connections
	// together) at this many bytes per second.
	LimitRate int64

	// Config sets configuration keys above the topology file and the
	// environment, the way the command line's flags do. Sets are
	// "key=value" strings applied after them (--set). Both apply to the
	// topology that runs, also when it is picked after the probe.
	Config []config.Override
	Sets   []string
	// Environ lists the "KEY=value" pairs whose DLFLOW_ keys set the
	// configuration; nil reads none (the CLI passes os.Environ()).
	Environ []string

	// Label names the download in log lines (a batch's list line, say).
	Label string
	// Metrics, when set, collects per-stage counters of the run.
	Metrics *pipeline.Metrics
	// Trace, when set, records the run's requests, steals, retries and
	// the stages' busy time, for a timeline (see pipeline.Trace); its
	// times count from pipeline.NewTrace, so make it just before Start
	// for the probe's time to show as the gap before the first request.
	Trace *pipeline.Trace
	// Hooks are called as the download goes.
	Hooks Hooks
}

// Hooks are called from the download's goroutine; they must return
// promptly.
type Hooks struct {
	// Started is called once the probe answered and the output, the
	// topology and the connections are known, before the first byte is
	// fetched; d.Info() describes them. It is called again if the file
	// changed on the server and the download starts over.
	Started func(d *Download)
}

// Topology says which graph of stages a download runs. Set at most one
// field; the zero Topology picks a built-in one after the probe.
type Topology struct {
	// Name is a built-in topology: "stream", "buffered", "ranged" or
	// "ranged-ordered" (with or without ".yaml").
	Name string
	// File is a YAML topology file (see examples/).
	File string
	// Data is a YAML topology itself; File, when set, names it in errors.
	Data []byte
	// Nodes is a graph built in code. Their configs take the request's
	// settings (output, overwrite, resume, checksum) where they implement
	// pipeline.SettingsTaker, and Connections sets the workers of the
	// stages that connect.
	Nodes []pipeline.Node
	// Insert adds stages to the topology (a name, a file, or the one the
	// automatic choice picks, which each insert must then fit), each
	// spliced after or before one of its stages (see config.Insert); a
	// file may insert its own (`extends:` and `insert:`, and a file that
	// extends auto keeps the automatic choice). Not with Nodes.
	Insert []config.Insert

	// extendsAuto: File or Data says `extends: auto` (resolveExtends);
	// once picked, Name is the built-in it lies over. fileInserts are the
	// ids of the stages it inserts.
	extendsAuto bool
	fileInserts []string
}

func (t Topology) auto() bool {
	return t.Name == "" && t.Nodes == nil && (t.File == "" && t.Data == nil || t.extendsAuto)
}

// describe names the topology for results and logs: the file, or
// "(built-in) NAME.yaml", or "(code)".
func (t Topology) describe() string {
	if s, ok := t.describeExtended(); ok {
		return s
	}
	switch {
	case t.File != "":
		return t.File
	case t.Name != "":
		return "(built-in) " + builtinName(t.Name)
	case t.Nodes != nil:
		return "(code)"
	case t.Data != nil:
		return "(data)"
	}
	return ""
}

func builtinName(name string) string {
	if strings.HasSuffix(name, ".yaml") {
		return name
	}
	return name + ".yaml"
}

// check refuses what the request says that the library cannot do, before
// any I/O.
func (r *Request) check() error {
	set := 0
	for _, ok := range []bool{r.Topology.Name != "", r.Topology.File != "" || r.Topology.Data != nil, r.Topology.Nodes != nil} {
		if ok {
			set++
		}
	}
	switch {
	case r.Connections < 0 || r.Connections > MaxConnections:
		return requestErrorf("Connections", "connections must be between 1 and %d, got %d", MaxConnections, r.Connections)
	case r.Overwrite && r.SkipExisting:
		return requestErrorf("Overwrite", "overwrite and skip-existing contradict each other")
	case set > 1:
		return requestErrorf("Topology", "a topology is a name, a file or data, or nodes: set one")
	case r.Topology.Nodes != nil && len(r.Topology.Insert) > 0:
		return requestErrorf("Topology", "stages are inserted into a topology of a name or a file: build Nodes with the stage in them")
	case r.LimitRate < 0:
		return requestErrorf("LimitRate", "the rate limit must not be negative, got %d", r.LimitRate)
	case r.MaxTime < 0:
		return requestErrorf("MaxTime", "the time limit must not be negative, got %v", r.MaxTime)
	case r.Retry != nil && r.Retry.Retries < -1:
		return requestErrorf("Retry", "retries must be 0 or more (or -1: the topology's), got %d", r.Retry.Retries)
	case r.Retry != nil && r.Retry.Delay < 0:
		return requestErrorf("Retry", "the retry delay must not be negative, got %v", r.Retry.Delay)
	case r.IfNewer && (r.Overwrite || r.SkipExisting):
		return requestErrorf("IfNewer", "if-newer decides itself whether to replace the output: it excludes Overwrite and SkipExisting")
	case r.IfNewer && (r.Writer != nil || r.Extract != ""):
		return requestErrorf("IfNewer", "if-newer compares with an output file: it does not apply to a Writer or Extract")
	}
	for name, values := range r.Header {
		switch {
		case strings.EqualFold(name, "Range"):
			return requestErrorf("Header", "the Range header is the download's own: the stages ask for the ranges they need")
		case strings.EqualFold(name, "Accept-Encoding"):
			return requestErrorf("Header", "the Accept-Encoding header is the download's own: a compressed body breaks sizes and offsets")
		}
		for _, v := range values {
			if _, _, err := httpx.ParseHeader(name + ": " + v); err != nil {
				return &RequestError{Field: "Header", Err: err}
			}
		}
	}
	if r.Writer != nil {
		switch {
		case r.Path != "" || r.Dir != "":
			return requestErrorf("Writer", "a download to a writer has no path: set Writer, or Path and Dir, not both")
		case r.SkipExisting:
			return requestErrorf("Writer", "a download to a writer has no output that could exist: SkipExisting does not apply")
		}
	}
	if r.Extract != "" && (r.Path != "" || r.Dir != "" || r.Writer != nil) {
		return requestErrorf("Extract", "an extraction directory excludes Path, Dir and Writer: the archive is unpacked into Extract, and no file is written")
	}
	if r.Path != "" && r.Dir != "" && !filepath.IsLocal(r.Path) {
		return requestErrorf("Path", "%q is not a relative path inside %s", r.Path, r.Dir)
	}
	return nil
}

// errNoStagesOpenConnections says a topology given by the user cannot take
// Connections.
var errNoStagesOpenConnections = errors.New("has no stage that opens several connections (such as http.reader)")

func connectionsError(topology string) error {
	return &RequestError{Field: "Connections", Err: fmt.Errorf("%s %w", topology, errNoStagesOpenConnections)}
}
