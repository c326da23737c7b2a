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
// offset where its body must end (-1 when unknown), and whether the answer
// is the whole body from 0 to a range the server ignored (a cut in it
// cannot be resumed).
func (f *httpFetcher) check(resp *http.Response, p httpPiece, pos int64, ranged bool, ifRange string) (want int64, whole bool, err error) {
	a := answerCheck{f: f, resp: resp, p: p, pos: pos}
	mirror := !f.src.primary
	switch {
	case mirror && resp.StatusCode == http.StatusOK && ranged:
		// Only the primary's answers decide whether ranges are honoured.
		return 0, false, a.mirrorWhole(ifRange)
	case resp.StatusCode == http.StatusPartialContent && ranged:
		want, err = a.partial(mirror)
	case resp.StatusCode == http.StatusOK && !ranged:
		want, err = a.length(p.end)
	case resp.StatusCode == http.StatusOK && ranged:
		want, err = a.whole(ifRange)
		whole = err == nil
	case resp.StatusCode == http.StatusPartialContent:
		err = a.rangeErr("206 to a request without Range")
	default:
		err = httpx.NewHTTPError(resp, f.res.URL)
	}
	if err != nil {
		return 0, false, err
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return 0, false, &httpx.EncodingError{Encoding: ce, URL: f.url}
	}
	if err := f.checkVersion(resp); err != nil {
		return 0, false, err
	}
	return want, whole, nil
}

// answerCheck is one answer being checked: to a request for p from pos.
type answerCheck struct {
	f    *httpFetcher
	resp *http.Response
	p    httpPiece
	pos  int64
}

func (a answerCheck) rangeErr(reason string) error {
	return &httpx.RangeError{Range: pipeline.Range{Start: a.pos, End: a.p.end}, Status: a.resp.StatusCode,
		ContentRange: a.resp.Header.Get("Content-Range"), Reason: reason, URL: a.f.url}
}

func (a answerCheck) changed(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", httpx.ErrResourceChanged, a.f.url, fmt.Sprintf(format, args...))
}

// mirrorWhole is the error of a mirror's 200 to a range: it ignores
// ranges, or serves another file.
func (a answerCheck) mirrorWhole(ifRange string) error {
	resp, size, f := a.resp, a.f.res.Size, a.f
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
	return &SourceMismatchError{URL: f.url, Reason: reason}
}

// partial checks a 206 to a range: exactly the range asked for, of the
// probed length.
func (a answerCheck) partial(mirror bool) (int64, error) {
	p, pos, size := a.p, a.pos, a.f.res.Size
	start, last, total, err := httpx.ParseContentRange(a.resp.Header.Get("Content-Range"))
	switch {
	case err != nil:
		return 0, a.rangeErr(err.Error())
	case start != pos:
		return 0, a.rangeErr("wrong first byte")
	case mirror && total != size:
		return 0, &SourceMismatchError{URL: a.f.url, Reason: fmt.Sprintf("its size %d differs from the primary's %d", total, size)}
	case total >= 0 && size >= 0 && total != size:
		return 0, a.changed("length is now %d, was %d", total, size)
	case !p.openEnded && p.end >= 0 && last != p.end-1:
		return 0, a.rangeErr("wrong last byte")
	case p.openEnded && size >= 0 && last != size-1:
		return 0, a.rangeErr("does not run to the end of the resource")
	case p.openEnded && size < 0 && total >= 0 && last != total-1:
		return 0, a.rangeErr("does not run to the end of the resource")
	}
	want := last + 1
	if a.resp.ContentLength >= 0 && a.resp.ContentLength != want-pos {
		return 0, a.rangeErr(fmt.Sprintf("Content-Length %d does not match the range", a.resp.ContentLength))
	}
	if a.f.support.decide(false) {
		// A replica already streams the whole body from 0.
		if pos == p.start {
			return 0, errRangeCovered
		}
		return 0, a.rangeErr("the server answered 206 after ignoring ranges")
	}
	return want, nil
}

// length checks a 200's length against what was expected (end, or the
// probed size when end is -1) and returns where its body ends.
func (a answerCheck) length(end int64) (int64, error) {
	want := a.f.res.Size
	if end >= 0 {
		want = end
	}
	if cl := a.resp.ContentLength; cl >= 0 {
		if want >= 0 && cl != want {
			return 0, a.changed("length is now %d, was %d", cl, want)
		}
		want = cl
	}
	return want, nil
}

// whole checks a 200 to a range: either If-Range did not match (the file
// changed) or the server ignores Range. Its validators tell which, when it
// sends them. The whole body is acceptable only from offset 0 with nothing
// of it sent yet, and for a piece shorter than the resource only where the
// replicas agree that the server ignores ranges: then this replica streams
// all of it and the others drop their ranges.
func (a answerCheck) whole(ifRange string) (int64, error) {
	f, p, size := a.f, a.p, a.f.res.Size
	if ifRange != "" {
		got := a.resp.Header.Get("ETag")
		if ifRange != f.res.ETag {
			got = a.resp.Header.Get("Last-Modified")
		}
		if got != ifRange {
			// Validators carry their own quotes; %q would double them.
			return 0, a.changed("If-Range %s did not match (server has %s)", ifRange, got)
		}
	}
	if a.pos != 0 || p.start != 0 || !f.support.decide(true) {
		return 0, a.rangeErr("the server sent the whole body with 200")
	}
	if p.end >= 0 && p.end != size {
		f.env.Log.Warn().Str("url", f.url).
			Msg("server ignores Range requests; downloading the whole body over one connection")
	}
	return a.length(-1)
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
	if !f.src.primary {
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
