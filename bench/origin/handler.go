package origin

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	defer s.leave()
	s.requests.Add(1)
	switch r.Method {
	case http.MethodGet:
		s.gets.Add(1)
	case http.MethodHead:
		s.heads.Add(1)
	}
	e := s.logStart(r)
	s.begin()
	rw := &recorder{ResponseWriter: w, s: s, length: -1}
	defer func() { rw.end(); s.logEnd(e, rw.status, rw.n) }()
	s.handle(rw, r)
}

// handle is the single dispatcher: global faults, routing, per-method
// faults, then the (possibly partial) file response.
func (s *Server) handle(w *recorder, r *http.Request) {
	fs := s.faults.Load()
	f := &fs.f
	if s.opts.Latency > 0 && !s.sleepUntil(r.Context(), time.Now().Add(s.opts.Latency)) {
		return
	}
	if f.Status != 0 {
		plainStatus(w, r, f.Status, "injected status")
		return
	}
	file, serve, location := s.route(r.URL.Path, f)
	if location != "" {
		w.Header().Set("Location", location)
		w.WriteHeader(http.StatusFound)
		return
	}
	if !serve {
		plainStatus(w, r, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plainStatus(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}

	if f.ResetRequests > 0 && take(&fs.resetLeft) {
		w.end()
		resetConn(w)
		return
	}
	var getNum int64 // 1-based GET number since SetFaults; 0 for HEAD
	var res resource
	if r.Method == http.MethodHead {
		if f.FailAnyMethod && f.FailStatus != 0 && take(&fs.failLeft) {
			injectFailure(w, r, f)
			return
		}
		if f.NoHEAD != 0 {
			plainStatus(w, r, f.NoHEAD, "HEAD not supported")
			return
		}
		res = s.resourceAfter(f, fs.gets.Load())
	} else {
		getNum = fs.gets.Add(1)
		res = s.resourceAfter(f, getNum-1)
		if f.FailStatus != 0 && getNum > int64(f.FailAfter) && take(&fs.failLeft) {
			injectFailure(w, r, f)
			return
		}
		if getNum > int64(f.SilentAfter) && getNum <= int64(f.SilentAfter+f.SilentCount) {
			s.sleepUntil(r.Context(), time.Now().Add(time.Hour)) // until the client or Close ends it
			w.end()
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close() // no answer at all, not an empty 200
			}
			return
		}
	}

	if file >= 0 {
		res = s.fileResource(file)
	}
	p := s.plan(r, f, res)
	s.fill(nil, 0, res.seed) // Options.Content's bytes, before the header: a slow Content is no slow body
	s.setDigests(w.Header(), f, res)
	if f.ContentDisposition != "" {
		w.Header().Set("Content-Disposition", f.ContentDisposition)
	}
	s.writeHeader(w, p, res)
	if r.Method == http.MethodHead {
		if f.HEADBody {
			s.sendUnsolicited(w, func(conn io.Writer) error {
				return s.writeContent(conn, p.off, p.n, res.seed)
			})
		}
		return
	}
	if p.status == http.StatusRequestedRangeNotSatisfiable {
		return
	}
	cut, stall := s.cutAt(fs, p)
	complete := s.writeBody(r.Context(), w, p, res.seed, s.rateFor(f, getNum, p.off), cut, stall)
	if !complete || f.ExtraBytes == "" || p.noLength {
		return // a chunked body ends when the handler returns
	}
	s.sendUnsolicited(w, func(conn io.Writer) error {
		_, err := io.WriteString(conn, f.ExtraBytes)
		return err
	})
}

// injectFailure answers f.FailStatus, with f.RetryAfter when set.
func injectFailure(w http.ResponseWriter, r *http.Request, f *Faults) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	plainStatus(w, r, f.FailStatus, "injected failure")
}

// sendUnsolicited ends a complete answer, then writes what write sends
// straight to the connection, past the end of the answer, and closes the
// connection (HEADBody, ExtraBytes).
func (s *Server) sendUnsolicited(w *recorder, write func(conn io.Writer) error) {
	w.end() // the client sees the answer complete with the flush
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, buf, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()
	if err := write(buf); err == nil {
		_ = buf.Flush()
	}
}

// writeContent writes n content bytes from off to dst.
func (s *Server) writeContent(dst io.Writer, off, n int64, seed uint64) error {
	bp := getBuf()
	defer putBuf(bp)
	for sent := int64(0); sent < n; {
		chunk := (*bp)[:min(int64(bufSize), n-sent)]
		s.fill(chunk, off+sent, seed)
		if _, err := dst.Write(chunk); err != nil {
			return err
		}
		sent += int64(len(chunk))
	}
	return nil
}

// route reports whether path serves the file (file -1) or one of
// Options.Files (its index), or else the redirect target.
func (s *Server) route(path string, f *Faults) (file int, serve bool, location string) {
	if path == s.opts.Path {
		switch {
		case f.RedirectTo != "":
			return -1, false, f.RedirectTo
		case f.Redirects > 0:
			return -1, false, "/r/1"
		}
		return -1, true, ""
	}
	if rest, ok := strings.CutPrefix(path, "/r/"); ok && f.Redirects > 0 && f.RedirectTo == "" {
		k, err := strconv.Atoi(rest)
		switch {
		case err != nil || k < 1 || k > f.Redirects || strconv.Itoa(k) != rest:
			return -1, false, ""
		case k < f.Redirects:
			return -1, false, "/r/" + strconv.Itoa(k+1)
		}
		return -1, true, ""
	}
	if i, ok := s.fileIndex(path); ok {
		return i, true, ""
	}
	return -1, false, ""
}

// resourceAfter returns the resource version visible after prior GETs.
func (s *Server) resourceAfter(f *Faults, prior int64) resource {
	if f.ChangeETagAfter <= 0 || prior < int64(f.ChangeETagAfter) {
		return s.base
	}
	k := prior / int64(f.ChangeETagAfter)
	if !f.ChangeAgain || k == 1 {
		return s.changed
	}
	etag := fmt.Sprintf(`"%x-%x"`, s.opts.Size, s.opts.Seed+uint64(k))
	if s.base.etag != fmt.Sprintf(`"%x-%x"`, s.opts.Size, s.opts.Seed) {
		etag = strings.TrimSuffix(s.base.etag, `"`) + fmt.Sprintf(`-changed-%d"`, k)
	}
	return newResource(s.opts.Seed+uint64(k), etag, s.base.lastMod.Add(time.Duration(k)*time.Hour))
}

// rateFor returns the body rate limit (bytes/sec, 0 = none) of a GET.
func (s *Server) rateFor(f *Faults, getNum, off int64) int64 {
	if f.Trickle > 0 {
		if f.TrickleRequest > 0 && getNum == int64(f.TrickleRequest) ||
			f.TrickleRequest <= 0 && off == f.TrickleOffset {
			return f.Trickle
		}
	}
	return s.opts.RateLimit
}

// cutAt returns after how many body bytes the connection is to be closed
// (DropAfter / ShortBody, StallAfter), or -1, and whether it is held
// silent first (a stall).
func (s *Server) cutAt(fs *faultState, p plan) (int64, bool) {
	f := &fs.f
	if (f.DropAfter > 0 || f.DropRequests > 0) && (f.DropRequests <= 0 || take(&fs.dropLeft)) {
		return max(f.DropAfter, 0), false
	}
	if f.ShortBody > 0 && (f.ShortBodyRequests <= 0 || take(&fs.shortLeft)) {
		return max(p.n-f.ShortBody, 0), false
	}
	// A body stalls before its last byte: held after a complete answer,
	// the connection would instead keep the client's next request on it
	// unanswered (a silent answer, another fault).
	if f.StallRequests > 0 && p.n > 0 && take(&fs.stallLeft) {
		return min(max(f.StallAfter, 0), p.n-1), true
	}
	return -1, false
}

// plan describes the response to a file request.
type plan struct {
	status       int    // 200, 206 or 416
	off, n       int64  // body range (content offsets)
	contentRange string // Content-Range header value, if any
	noLength     bool   // omit Content-Length (chunked)
	acceptRanges bool
	gzip         bool
}

func (s *Server) plan(r *http.Request, f *Faults, res resource) plan {
	size := s.opts.Size
	full := plan{status: http.StatusOK, n: size, acceptRanges: true}
	if f.NoLength || f.Gzip {
		return plan{status: http.StatusOK, n: size, noLength: true, gzip: f.Gzip}
	}
	rh := r.Header.Get("Range")
	if rh == "" || f.IgnoreRange {
		return full
	}
	if ir := r.Header.Get("If-Range"); ir != "" && !f.IgnoreIfRange && !ifRangeMatches(ir, res) {
		return full
	}
	start, end, kind := parseRange(rh, size)
	switch kind {
	case rangeIgnore:
		return full
	case rangeUnsatisfiable:
		return plan{status: http.StatusRequestedRangeNotSatisfiable, contentRange: fmt.Sprintf("bytes */%d", size), acceptRanges: true}
	}
	if f.WrongContentRange {
		start, end = shiftRange(start, end, size)
	}
	return plan{
		status:       http.StatusPartialContent,
		off:          start,
		n:            end - start + 1,
		contentRange: fmt.Sprintf("bytes %d-%d/%d", start, end, size+f.WrongTotal),
		acceptRanges: true,
	}
}

// shiftRange implements Faults.WrongContentRange.
func shiftRange(start, end, size int64) (int64, int64) {
	switch {
	case end+1 < size:
		return start + 1, end + 1
	case start > 0:
		return start - 1, end - 1
	case size > 1:
		return 1, end
	}
	return start, end
}

type rangeKind int

const (
	rangeIgnore        rangeKind = iota // invalid or multi-range: serve 200
	rangeOK                             // single satisfiable range
	rangeUnsatisfiable                  // 416
)

// parseRange parses a single byte range "bytes=a-b", "bytes=a-" or
// "bytes=-n" against size, returning the inclusive range.
func parseRange(h string, size int64) (start, end int64, kind rangeKind) {
	const prefix = "bytes="
	h = strings.TrimSpace(h)
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return 0, 0, rangeIgnore
	}
	spec := strings.TrimSpace(h[len(prefix):])
	if strings.Contains(spec, ",") {
		return 0, 0, rangeIgnore
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, rangeIgnore
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" { // suffix range
		n, ok := parseDigits(last)
		switch {
		case !ok:
			return 0, 0, rangeIgnore
		case n == 0 || size == 0:
			return 0, 0, rangeUnsatisfiable
		}
		n = min(n, size)
		return size - n, size - 1, rangeOK
	}
	a, ok := parseDigits(first)
	if !ok {
		return 0, 0, rangeIgnore
	}
	b := size - 1
	if last != "" {
		if b, ok = parseDigits(last); !ok || b < a {
			return 0, 0, rangeIgnore
		}
	}
	if a >= size {
		return 0, 0, rangeUnsatisfiable
	}
	return a, min(b, size-1), rangeOK
}

func parseDigits(s string) (int64, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// ifRangeMatches evaluates an If-Range header against res: a strong ETag
// comparison, or an exact Last-Modified date match.
func ifRangeMatches(ir string, res resource) bool {
	ir = strings.TrimSpace(ir)
	switch {
	case strings.HasPrefix(ir, "W/"):
		return false
	case strings.HasPrefix(ir, `"`):
		return ir == res.etag
	}
	t, err := http.ParseTime(ir)
	return err == nil && t.Equal(res.lastMod)
}

func (s *Server) writeHeader(w *recorder, p plan, res resource) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", res.etag)
	h.Set("Last-Modified", res.lastModStr)
	if p.acceptRanges {
		h.Set("Accept-Ranges", "bytes")
	}
	if p.contentRange != "" {
		h.Set("Content-Range", p.contentRange)
	}
	if p.gzip {
		h.Set("Content-Encoding", "gzip")
	}
	if !p.noLength {
		h.Set("Content-Length", strconv.FormatInt(p.n, 10))
	}
	w.WriteHeader(p.status)
	if p.noLength {
		// Flushing before any body byte forces chunked encoding even for
		// small bodies (net/http would otherwise compute a length).
		_ = http.NewResponseController(w).Flush()
	}
}

// writeBody writes p's body from pooled buffers, pacing writes to rate
// (bytes/sec, 0 = unlimited). If cut >= 0, the connection is closed after
// cut content bytes, once the client or Close ends the request if stall
// is set. It reports whether the whole body was written.
func (s *Server) writeBody(ctx context.Context, w *recorder, p plan, seed uint64, rate, cut int64, stall bool) bool {
	total := p.n
	if cut >= 0 {
		total = min(total, cut)
	}
	var dst io.Writer = w
	var gz *gzip.Writer
	if p.gzip {
		gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		dst = gz
	}
	bp := getBuf()
	defer putBuf(bp)
	chunk := int64(bufSize)
	var flush func()
	if rate > 0 {
		// Small slices (~1/32 s each) keep the pace smooth, and each is
		// flushed, the header first, as a paced server sends as it goes: a
		// slow body is a slow body, not a missing header.
		chunk = min(max(rate/32, 1), 16<<10)
		rc := http.NewResponseController(w)
		flush = func() {
			if gz != nil {
				_ = gz.Flush()
			}
			_ = rc.Flush()
		}
		flush()
	}
	start := time.Now()
	for sent := int64(0); sent < total; {
		if rate > 0 && sent > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if !s.sleepUntil(ctx, due) {
				return false
			}
		} else if ctx.Err() != nil {
			return false
		}
		n := min(chunk, total-sent)
		buf := (*bp)[:n]
		s.fill(buf, p.off+sent, seed)
		if _, err := dst.Write(buf); err != nil {
			return false
		}
		if flush != nil {
			flush()
		}
		sent += n
	}
	if cut >= 0 {
		if gz != nil {
			_ = gz.Flush()
		}
		if stall {
			_ = http.NewResponseController(w).Flush()
			s.sleepUntil(ctx, time.Now().Add(time.Hour))
		}
		w.end() // the client sees the close before the handler returns
		abortConn(w)
		return false
	}
	if gz != nil {
		_ = gz.Close()
	}
	return true
}

// abortConn flushes what was written and closes the connection without
// completing the response.
func abortConn(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// resetConn closes the connection of w with a TCP RST, before any answer.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	// A *net.TCPConn, or a capped connection over one (ConnRateLimit).
	if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0) // close sends RST, not FIN
	}
	_ = conn.Close()
}

// plainStatus answers code with a short text body (omitted for HEAD).
func plainStatus(w http.ResponseWriter, r *http.Request, code int, msg string) {
	msg += "\n"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, msg)
	}
}
