package stages

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// This file holds how an HTTP reader checks each response before taking a
// byte of it: status, Content-Range, validators and, for mirrors, that a
// source serves the file the primary does (see httpx/contentrange.go for why the
// checks are strict).

// check validates the response to a request for p from pos and returns the
// offset where its body must end (-1 when unknown).
func (f *httpFetcher) check(resp *http.Response, p httpPiece, pos int64, ranged bool, ifRange string) (int64, error) {
	size := f.res.Size
	rng := pipeline.Range{Start: pos, End: p.end}
	rangeErr := func(reason string) error {
		return &httpx.RangeError{Range: rng, Status: resp.StatusCode, ContentRange: resp.Header.Get("Content-Range"), Reason: reason, URL: f.url}
	}
	changed := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", httpx.ErrResourceChanged, f.url, fmt.Sprintf(format, args...))
	}

	mirror := f.src != nil && !f.src.primary
	if mirror && resp.StatusCode == http.StatusOK && ranged {
		// Only the primary's answers decide whether ranges are honoured.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		reason := "it answered a range request with 200: it ignores ranges"
		switch etag := resp.Header.Get("ETag"); {
		case resp.ContentLength >= 0 && resp.ContentLength != size:
			reason = fmt.Sprintf("its size %d differs from the primary's %d", resp.ContentLength, size)
		case ifRange != "" && etag != "" && f.res.ETag != "" && etag != f.res.ETag:
			reason = fmt.Sprintf("ETag %s differs from the primary's %s and no checksum guards the bytes", etag, f.res.ETag)
		case ifRange != "":
			reason = "it answered If-Range " + ifRange + " with 200: its validators differ from the primary's and no checksum guards the bytes"
		}
		return 0, &SourceMismatchError{URL: f.url, Reason: reason}
	}
	var want int64
	switch {
	case resp.StatusCode == http.StatusPartialContent && ranged:
		cr := resp.Header.Get("Content-Range")
		start, last, total, err := httpx.ParseContentRange(cr)
		switch {
		case err != nil:
			return 0, rangeErr(err.Error())
		case start != pos:
			return 0, rangeErr("wrong first byte")
		case mirror && total != size:
			return 0, &SourceMismatchError{URL: f.url, Reason: fmt.Sprintf("its size %d differs from the primary's %d", total, size)}
		case total >= 0 && size >= 0 && total != size:
			return 0, changed("length is now %d, was %d", total, size)
		case !p.openEnded && p.end >= 0 && last != p.end-1:
			return 0, rangeErr("wrong last byte")
		case p.openEnded && size >= 0 && last != size-1:
			return 0, rangeErr("does not run to the end of the resource")
		case p.openEnded && size < 0 && total >= 0 && last != total-1:
			return 0, rangeErr("does not run to the end of the resource")
		}
		want = last + 1
		if resp.ContentLength >= 0 && resp.ContentLength != want-pos {
			return 0, rangeErr(fmt.Sprintf("Content-Length %d does not match the range", resp.ContentLength))
		}
		if f.support != nil && f.support.decide(false) {
			// A replica already streams the whole body from 0.
			if pos == p.start {
				return 0, errRangeCovered
			}
			return 0, rangeErr("the server answered 206 after ignoring ranges")
		}

	case resp.StatusCode == http.StatusOK && !ranged:
		want = size
		if p.end >= 0 {
			want = p.end
		}
		if resp.ContentLength >= 0 {
			if want >= 0 && resp.ContentLength != want {
				return 0, changed("length is now %d, was %d", resp.ContentLength, want)
			}
			want = resp.ContentLength
		}

	case resp.StatusCode == http.StatusOK && ranged:
		// Either If-Range did not match (the file changed) or the server
		// ignores Range. Its validators tell which, when it sends them.
		if ifRange != "" {
			got := resp.Header.Get("ETag")
			if ifRange != f.res.ETag {
				got = resp.Header.Get("Last-Modified")
			}
			if got != ifRange {
				// Validators carry their own quotes; %q would double them.
				return 0, changed("If-Range %s did not match (server has %s)", ifRange, got)
			}
		}
		// The whole body is acceptable only from offset 0 with nothing of
		// it sent yet, and for a piece shorter than the resource only where
		// the replicas agree that the server ignores ranges: then this
		// replica streams all of it and the others drop their ranges.
		if pos != 0 || p.start != 0 {
			return 0, rangeErr("the server sent the whole body with 200")
		}
		whole := p.end < 0 || size < 0 || p.end == size
		if f.support != nil {
			whole = f.support.decide(true)
		}
		if !whole {
			return 0, rangeErr("the server sent the whole body with 200")
		}
		if p.end >= 0 && p.end != size {
			f.env.Log.Warn().Str("url", f.url).
				Msg("server ignores Range requests; downloading the whole body over one connection")
		}
		f.whole = true
		want = size
		if resp.ContentLength >= 0 {
			if want >= 0 && resp.ContentLength != want {
				return 0, changed("length is now %d, was %d", resp.ContentLength, want)
			}
			want = resp.ContentLength
		}

	case resp.StatusCode == http.StatusPartialContent:
		return 0, rangeErr("206 to a request without Range")

	default:
		return 0, httpx.NewHTTPError(resp, f.res.URL)
	}

	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return 0, &httpx.EncodingError{Encoding: ce, URL: f.url}
	}
	if err := f.checkVersion(resp); err != nil {
		return 0, err
	}
	return want, nil
}

// checkVersion checks that an answer with the file's bytes is of the
// version the download is of. If-Range is not enough: many servers and
// caches ignore it and answer 206 from a newer file, and a 200 to a plain
// GET has no If-Range at all. So every answer of the primary must carry
// the probe's validators, the ETag, else Last-Modified, when the probe had
// them (a resumed run's probe has those of its partial data, see
// sinks.FileSink): one that does not means the file changed, which is an
// httpx.ErrResourceChanged, as a 200 to If-Range is. A mirror's answers are
// checked against its own first answer and the primary's (see
// sources.checkAnswer); a mirror never restarts the download.
func (f *httpFetcher) checkVersion(resp *http.Response) error {
	if f.src != nil && !f.src.primary {
		return f.srcs.checkAnswer(f.src, resp)
	}
	name, was, got := "ETag", f.res.ETag, resp.Header.Get("ETag")
	if was == "" {
		name, was, got = "Last-Modified", f.res.LastModified, resp.Header.Get("Last-Modified")
	}
	if was == "" || got == was {
		return nil
	}
	if got == "" {
		got = "none"
	}
	// Validators carry their own quotes; %q would double them.
	return fmt.Errorf("%w: %s: %s is now %s, was %s", httpx.ErrResourceChanged, f.url, name, got, was)
}
