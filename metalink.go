package dlflow

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dlflow/dlflow/config"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/metalink"
	"github.com/dlflow/dlflow/pipeline"
)

// DefaultMetalinkTimeout is how long the fetch of a Metalink URL may take
// when Request.MetalinkTimeout is 0: a document of a few kilobytes to a
// few megabytes takes well under a second on any working link.
const DefaultMetalinkTimeout = 30 * time.Second

// applyMetalink reads the request's Metalink file (a path, or an http(s)
// URL fetched with the configuration's HTTP settings), unless the request
// came from MetalinkRequests with it read, picks its file (MetalinkFile),
// and applies it to cfg, the download's configuration: its most preferred
// URL becomes the primary unless the request or configuration names one,
// and its checksum the checksum unless one is set. It returns the mirrors
// the request asks for: the Metalink's other URLs, then the request's. Its
// size, name and piece hashes apply after the probe (metalinkResource).
// The request itself is not changed.
func (d *Download) applyMetalink(ctx context.Context, cfg *config.Config) ([]string, error) {
	src := d.req.Metalink
	file := d.req.metalinkFile
	if file == nil {
		files, err := d.readMetalink(ctx, cfg.HTTP, src)
		if err != nil {
			return nil, err
		}
		if file, err = pickMetalinkFile(src, files, d.req.MetalinkFile); err != nil {
			return nil, err
		}
	}
	var urls []string
	for _, u := range file.URLs {
		urls = append(urls, u.URL)
	}
	if cfg.URL == "" {
		cfg.URL, urls = urls[0], urls[1:]
		d.ml.urlFrom = true
	}
	mirrors := append(urls, d.req.Mirrors...)
	if len(mirrors) > MaxSources-1 {
		d.log.Info().Int("urls", len(mirrors)+1).Msgf("the metalink lists more URLs than a download uses; the %d most preferred are used", MaxSources)
		mirrors = mirrors[:MaxSources-1]
	}
	if cfg.Checksum == "" {
		cfg.Checksum = file.Checksum()
		d.ml.checksumFrom = cfg.Checksum != ""
	}
	d.ml.file = file
	return mirrors, nil
}

// readMetalink reads and parses the Metalink src: a path, or an http(s)
// URL fetched with the HTTP settings cfg.
func (d *Download) readMetalink(ctx context.Context, cfg httpx.HTTPConfig, src string) ([]*metalink.File, error) {
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		// The user named the Metalink's URL: its origin owns the
		// credentials, also for the URLs the Metalink lists (credentialOwners).
		client, header, err := d.client.httpClient(cfg, src)
		if err != nil {
			return nil, &RequestError{Field: "Config", Err: err}
		}
		return d.fetchMetalink(ctx, client, header, src)
	}
	r, err := os.Open(src)
	if err != nil {
		return nil, &RequestError{Field: "Metalink", Err: err}
	}
	files, err := metalink.ParseAll(r)
	r.Close()
	if err != nil {
		return nil, &RequestError{Field: "Metalink", Err: err}
	}
	return files, nil
}

// pickMetalinkFile returns file index (1-based) of files; 0 takes the
// only one.
func pickMetalinkFile(src string, files []*metalink.File, index int) (*metalink.File, error) {
	switch {
	case index == 0 && len(files) > 1:
		return nil, &MetalinkFilesError{Metalink: httpx.RedactURL(src), Files: len(files)}
	case index == 0:
		return files[0], nil
	case index < 0 || index > len(files):
		return nil, requestErrorf("MetalinkFile", "the metalink lists %d files; there is no file %d", len(files), index)
	}
	return files[index-1], nil
}

// MetalinkFilesError is the error of a request whose Metalink lists
// several files and that picked none (Request.MetalinkFile).
type MetalinkFilesError struct {
	Metalink string // redacted
	Files    int
}

func (e *MetalinkFilesError) Error() string {
	return fmt.Sprintf("%s lists %d files: pick one (MetalinkFile), or download them all (Client.MetalinkRequests)", e.Metalink, e.Files)
}

// MetalinkRequests reads the Metalink src (a path, or an http or https URL
// fetched with tmpl's HTTP settings) and returns a request per file it
// lists, in document order, or per file of selected (1-based indexes, as
// aria2c's --select-file; nil for all): copies of tmpl with Metalink set
// to src, MetalinkFile to the index and Label to "file N". Give them to
// Batch; tmpl.Dir is the directory the files land in (created if
// missing), each under its name in the Metalink. tmpl's URL, Path, Mirrors
// and Checksum must be empty (each file has its own), and so must its
// Writer and Extract.
//
// The requests carry the parsed document: their downloads do not read it
// again.
func (c *Client) MetalinkRequests(ctx context.Context, src string, tmpl *Request, selected []int) ([]*Request, error) {
	switch {
	case tmpl.URL != "" || tmpl.Path != "" || len(tmpl.Mirrors) > 0 || tmpl.Checksum != "":
		return nil, requestErrorf("Metalink", "each file of a metalink has its own URLs, name and checksum: leave URL, Path, Mirrors and Checksum empty")
	case tmpl.Writer != nil || tmpl.Extract != "":
		return nil, requestErrorf("Metalink", "the files of a metalink go into Dir: Writer and Extract do not apply")
	}
	d := &Download{client: c, req: tmpl, log: c.logger(ctx)}
	t, err := tmpl.Topology.resolve()
	if err != nil {
		return nil, err
	}
	cfg, err := d.load(t)
	if err != nil {
		return nil, err
	}
	files, err := d.readMetalink(ctx, cfg.HTTP, src)
	if err != nil {
		return nil, err
	}
	if selected == nil {
		for i := range files {
			selected = append(selected, i+1)
		}
	}
	reqs := make([]*Request, 0, len(selected))
	for _, i := range selected {
		file, err := pickMetalinkFile(src, files, i)
		if err != nil {
			return nil, err
		}
		r := *tmpl
		r.Metalink, r.MetalinkFile, r.metalinkFile = src, i, file
		r.Label = fmt.Sprintf("file %d", i)
		reqs = append(reqs, &r)
	}
	return reqs, nil
}

// ParseFileSelection reads a selection of files as aria2c's --select-file
// takes it: 1-based indexes and ranges, "1,3-4". It returns the indexes
// in increasing order, each once.
func ParseFileSelection(spec string) ([]int, error) {
	seen := map[int]bool{}
	for part := range strings.SplitSeq(spec, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 1 || b < a || b > metalink.MaxFiles {
			return nil, fmt.Errorf("select-file %q: want 1-based indexes and ranges up to %d, such as 1,3-4", part, metalink.MaxFiles)
		}
		for i := a; i <= b; i++ {
			seen[i] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// explainChecksum names the Metalink as where the expected digest of a
// *ChecksumError came from, when it did: the hash stage only knows it was
// configured.
func (d *Download) explainChecksum(err error) {
	var ce *ChecksumError
	if d.ml.checksumFrom && errors.As(err, &ce) && ce.Source == "checksum" {
		ce.Source = "the metalink"
	}
}

// fetchMetalink gets and parses the Metalink document at src, within
// Request.MetalinkTimeout (DefaultMetalinkTimeout) for the answer and the
// body together.
func (d *Download) fetchMetalink(ctx context.Context, client *http.Client, header http.Header, src string) ([]*metalink.File, error) {
	limit := d.req.MetalinkTimeout
	if limit <= 0 {
		limit = DefaultMetalinkTimeout
	}
	late := fmt.Errorf("metalink %s: not read within %v", httpx.RedactURL(src), limit)
	ctx, cancel := context.WithTimeoutCause(ctx, limit, late)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, &RequestError{Field: "Metalink", Err: err}
	}
	req.Header = header.Clone()
	resp, err := client.Do(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("metalink: %w", httpx.NewHTTPError(resp, src))
	}
	var files []*metalink.File
	if err == nil {
		files, err = metalink.ParseAll(resp.Body)
		resp.Body.Close()
		if err != nil && ctx.Err() == nil {
			return nil, &RequestError{Field: "Metalink", Err: err}
		}
	}
	switch {
	case err == nil:
		return files, nil
	case context.Cause(ctx) == late:
		return nil, late
	}
	return nil, fmt.Errorf("metalink %s: %w", httpx.RedactURL(src), err)
}

// metalinkResource applies the Metalink file's size, name and piece
// hashes to the probed resource. A server that does not say the size must
// send the Metalink's: the resource takes it, so that the stages refuse
// more bytes and fewer. The piece hashes are verified by the graph's
// hash.tap in every topology (piecesNeed), and by an http.reader as it
// fetches, which can take a bad piece from another source.
func (d *Download) metalinkResource(res *pipeline.Resource) error {
	f := d.ml.file
	if f == nil {
		return nil
	}
	if f.Size >= 0 && res.Size >= 0 && f.Size != res.Size {
		return fmt.Errorf("%s has %d bytes; the metalink says %d: %w", httpx.RedactURL(res.URL), res.Size, f.Size, httpx.ErrResourceChanged)
	}
	if f.Size >= 0 && res.Size < 0 {
		d.log.Info().Int64("size", f.Size).Msg("the server does not say the size; the metalink's is enforced")
		res.Size, d.ml.sizeFrom = f.Size, true
	}
	if f.Name != "" {
		res.FileName = f.Name
	}
	if p := f.Pieces; p != nil {
		res.Pieces = &pipeline.PieceHashes{Length: p.Length, Algorithm: p.Algorithm, Sums: p.Hashes}
		res.Guarded = true
	}
	return nil
}

// credentialOwners are the URLs whose origins own the download's
// credentials (httpx.NewClientOn): the ones the user named. That is the
// download's URL, except that of a Metalink fetched over http(s), which is
// the Metalink's own URL, joined by the download's URL only when the
// request or configuration names it. The URLs such a Metalink lists get
// the credentials only on its origin. A local Metalink file is the user's
// own: its most preferred URL, the download's, owns them.
func (d *Download) credentialOwners(rawURL string) []string {
	src := d.req.Metalink
	if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
		return []string{rawURL}
	}
	if d.ml.urlFrom {
		return []string{src}
	}
	return []string{src, rawURL}
}

// piecesNeed refuses graph, of topology, when the download has piece
// hashes and no stage of graph can verify them all: a
// pipeline.PieceVerifier that sees the resource's bytes.
func (d *Download) piecesNeed(topology Topology, g *pipeline.Graph) error {
	if d.ml.file == nil || d.ml.file.Pieces == nil {
		return nil
	}
	for _, st := range g.Stages() {
		if st.Reshaped {
			continue
		}
		if s, ok := g.Stage(st.ID); ok {
			if v, ok := s.(pipeline.PieceVerifier); ok && v.VerifiesPieces() {
				return nil
			}
		}
	}
	return &RequestError{Field: "Topology", Err: &NeedError{Need: pipeline.ProvidesPieces, Topology: topology.describe(),
		Hint: "the metalink has piece hashes and no stage verifies them all; add a stage of type hash.tap before the sink (see examples/)"}}
}
