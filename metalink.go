package dlflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/metalink"
	"github.com/dlflow/dlflow/pipeline"
)

// applyMetalink reads the request's Metalink file (a path, or an http(s)
// URL fetched with the configuration's HTTP settings), unless the request
// came from MetalinkRequests with it read, picks its file (MetalinkFile),
// and makes the download a copy of the request with its URLs (the most
// preferred one the primary unless the request names one), its checksum
// (unless the request has one); its size, name and piece hashes apply
// after the probe (metalinkResource).
func (d *Download) applyMetalink(ctx context.Context) error {
	src := d.req.Metalink
	if src == "" {
		return nil
	}
	cfg, err := d.load(d.req.Topology, allStageKeys)
	if err != nil {
		return err
	}
	file := d.req.metalinkFile
	if file == nil {
		files, err := d.readMetalink(ctx, cfg.HTTP, src)
		if err != nil {
			return err
		}
		if file, err = pickMetalinkFile(src, files, d.req.MetalinkFile); err != nil {
			return err
		}
	}
	req := *d.req
	var urls []string
	for _, u := range file.URLs {
		urls = append(urls, u.URL)
	}
	if req.URL == "" && cfg.URL == "" {
		req.URL, urls = urls[0], urls[1:]
		d.urlFromMetalink = true
	}
	req.Mirrors = append(urls, req.Mirrors...)
	if len(req.Mirrors) > MaxSources-1 {
		d.log.Info().Int("urls", len(req.Mirrors)+1).Msgf("the metalink lists more URLs than a download uses; the %d most preferred are used", MaxSources)
		req.Mirrors = req.Mirrors[:MaxSources-1]
	}
	if req.Checksum == "" && cfg.Checksum == "" {
		req.Checksum = file.Checksum()
		d.checksumFromMetalink = req.Checksum != ""
	}
	d.req, d.metalink = &req, file
	return nil
}

// readMetalink reads and parses the Metalink src: a path, or an http(s)
// URL fetched with the HTTP settings cfg.
func (d *Download) readMetalink(ctx context.Context, cfg httpx.HTTPConfig, src string) ([]*metalink.File, error) {
	var r io.ReadCloser
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		// The user named the Metalink's URL: its origin owns the
		// credentials, also for the URLs the Metalink lists (credentialOwners).
		client, header, err := d.client.httpClient(cfg, src)
		if err != nil {
			return nil, &RequestError{Field: "Config", Err: err}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, &RequestError{Field: "Metalink", Err: err}
		}
		req.Header = header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("metalink %s: %w", httpx.RedactURL(src), err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("metalink: %w", httpx.NewHTTPError(resp, src))
		}
		r = resp.Body
	} else {
		f, err := os.Open(src)
		if err != nil {
			return nil, &RequestError{Field: "Metalink", Err: err}
		}
		r = f
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
	cfg, err := d.load(tmpl.Topology, allStageKeys)
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
	if d.checksumFromMetalink && errors.As(err, &ce) && ce.Source == "checksum" {
		ce.Source = "the metalink"
	}
}

// metalinkResource applies the Metalink file's size, name and piece
// hashes to the probed resource.
func (d *Download) metalinkResource(res *pipeline.Resource) error {
	f := d.metalink
	if f == nil {
		return nil
	}
	if f.Size >= 0 && res.Size >= 0 && f.Size != res.Size {
		return fmt.Errorf("%s has %d bytes; the metalink says %d: %w", httpx.RedactURL(res.URL), res.Size, f.Size, httpx.ErrResourceChanged)
	}
	if f.Name != "" {
		res.FileName = f.Name
	}
	if p := f.Pieces; p != nil && res.Size == f.Size {
		if p.Length > maxVerifiedPiece {
			d.log.Warn().Int64("piece", p.Length).Msg("the metalink's pieces are too long to verify one by one; the file's checksum still is verified")
		} else {
			res.Pieces = &pipeline.PieceHashes{Length: p.Length, Algorithm: p.Algorithm, Sums: p.Hashes}
			res.Guarded = true
		}
	}
	return nil
}

// maxVerifiedPiece is the longest piece verified as it arrives: a reader
// holds a whole piece until it is (the stages' own bound).
const maxVerifiedPiece = 16 << 20

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
	if d.urlFromMetalink {
		return []string{src}
	}
	return []string{src, rawURL}
}
