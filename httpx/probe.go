package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dlflow/dlflow/pipeline"
)

// ErrInvalidURL is wrapped by Probe's error for a URL it cannot download.
var ErrInvalidURL = errors.New("invalid url")

// Probe asks the server about rawURL once, before a run, and returns the
// Resource every stage of the run shares.
//
// It sends HEAD first. Where HEAD is refused or misbehaves (403 from a
// presigned URL, 405, 501, a 5xx, a connection error, a 200 with no length),
// it asks `GET` with `Range: bytes=0-0` instead and reads the one byte, which
// also proves range support. 401, 404 and 410 (and 403 from the GET) fail at
// once with a *HTTPError; a refused redirect fails with a *RedirectError
// inside the error. The Resource's URL is the final one after redirects;
// when that is another host, the credential headers are dropped from
// Resource.Header so later requests do not leak them there.
//
// client and header usually come from NewClient; header may be nil.
func Probe(ctx context.Context, client *http.Client, header http.Header, rawURL string) (*pipeline.Resource, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("probe: nil http client")
	}
	header = header.Clone()
	if header == nil {
		header = make(http.Header)
	}
	header.Set("Accept-Encoding", "identity")

	head, err := probeRequest(ctx, client, header, u, http.MethodHead)
	if err == nil {
		if head.StatusCode == http.StatusOK && head.ContentLength >= 0 {
			return newResource(head, client, header, u, "")
		}
		if isFinalStatus(head.StatusCode) {
			return nil, NewHTTPError(head, u.String())
		}
		if head.StatusCode != http.StatusOK {
			head = nil
		}
	} else if ctx.Err() != nil || isRedirectError(err) {
		return nil, err
	}

	// HEAD did not give a usable answer: ask for the first byte.
	get := header.Clone()
	get.Set("Range", "bytes=0-0")
	resp, err := probeRequest(ctx, client, get, u, http.MethodGet)
	switch {
	case err != nil:
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		return newResource(resp, client, header, u, "bytes=0-0")
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// An empty file has no byte 0; the 416 still tells its length.
		if _, _, total, crErr := ParseContentRange(resp.Header.Get("Content-Range")); crErr == nil && total == 0 {
			return newResource(resp, client, header, u, "bytes=0-0")
		}
		err = NewHTTPError(resp, u.String())
	default:
		err = NewHTTPError(resp, u.String())
	}
	if head != nil && ctx.Err() == nil {
		// HEAD answered 200 without a length and the GET did not help:
		// the size stays unknown.
		return newResource(head, client, header, u, "")
	}
	return nil, err
}

// isFinalStatus: statuses that a GET would answer the same way.
func isFinalStatus(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

func isRedirectError(err error) bool {
	var re *RedirectError
	return errors.As(err, &re)
}

func checkURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidURL, RedactURL(rawURL), err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w %q: the scheme must be http or https", ErrInvalidURL, RedactURL(rawURL))
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%w %q: no host", ErrInvalidURL, RedactURL(rawURL))
	}
	return u, nil
}

// probeRequest sends one request; its response body is read (at most a few
// KiB, the body of a 0-0 range or an error page) and closed, so only the
// header is left to look at.
func probeRequest(ctx context.Context, client *http.Client, header http.Header, u *url.URL, method string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, RedactURL(u.String()), err)
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		// The caller says it is the probe; the method tells HEAD from the
		// ranged GET.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", method, RedactURL(u.String()), err)
	}
	// A 200 to the ranged GET would be the whole file: do not read it.
	if resp.StatusCode != http.StatusOK || method == http.MethodHead {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<10))
	}
	resp.Body.Close()
	return resp, nil
}

// newResource fills a Resource from a usable probe answer; rangeSent is the
// Range header of the request, "" for HEAD.
func newResource(resp *http.Response, client *http.Client, header http.Header, asked *url.URL, rangeSent string) (*pipeline.Resource, error) {
	final := resp.Request.URL
	h := resp.Header
	res := &pipeline.Resource{
		URL:          final.String(),
		Requested:    asked.String(),
		Size:         -1,
		ETag:         h.Get("ETag"),
		LastModified: h.Get("Last-Modified"),
		FileName:     ParseContentDisposition(h.Get("Content-Disposition")),
		ContentType:  h.Get("Content-Type"),
		Digests:      ParseDigests(h, resp.StatusCode == http.StatusOK),
		Client:       client,
		Header:       header,
		ProbedAt:     time.Now(),
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		res.Size = resp.ContentLength
		// A 200 to a Range request means the server ignores ranges,
		// whatever Accept-Ranges says.
		res.AcceptRanges = rangeSent == "" && acceptsBytes(h.Values("Accept-Ranges"))
	default: // 206, or 416 for an empty file
		start, end, total, err := ParseContentRange(h.Get("Content-Range"))
		ok := err == nil && (resp.StatusCode != http.StatusPartialContent || (start == 0 && end == 0))
		if ok {
			res.Size = total
		}
		res.AcceptRanges = ok
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		res.AcceptRanges = false // ranges of an encoded body are not ranges of the file
	}
	if final.Host != asked.Host {
		res.Header = header.Clone()
		for _, name := range sensitiveHeaders {
			res.Header.Del(name)
		}
	}
	return res, nil
}

func acceptsBytes(values []string) bool {
	for _, v := range values {
		for unit := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(unit), "bytes") {
				return true
			}
		}
	}
	return false
}

// maxFileName is the common file system limit on a name, in bytes.
const maxFileName = 255

// ParseContentDisposition returns the file name that a Content-Disposition
// header value (RFC 6266) suggests, reduced to a safe base name, or "" when
// there is none or it is unusable. filename* (RFC 8187, UTF-8 or
// ISO-8859-1) wins over filename.
//
// The value is untrusted input that becomes a path on disk, so the result is
// never a path: only the part after the last / or \ is kept; control and
// bidirectional-override characters and the characters Windows forbids
// become "_"; leading dots and trailing dots and spaces are dropped (no
// hidden files, no "..", no "."); invalid UTF-8 is rejected; it is cut to
// 255 bytes, keeping a short extension.
func ParseContentDisposition(v string) (filename string) {
	var plain, ext string
	var haveExt bool
	rest := v
	// Skip the disposition type; parameters follow the first ';'.
	if i := strings.IndexByte(rest, ';'); i >= 0 {
		rest = rest[i+1:]
	} else {
		return ""
	}
	for rest != "" {
		var name, value string
		name, value, rest = nextDispositionParam(rest)
		switch strings.ToLower(name) {
		case "filename":
			if plain == "" {
				plain = value
			}
		case "filename*":
			if decoded, ok := decodeExtValue(value); ok && !haveExt {
				ext, haveExt = decoded, true
			}
		}
	}
	if haveExt {
		if name := SafeFileName(ext); name != "" {
			return name
		}
	}
	return SafeFileName(plain)
}

// nextDispositionParam splits the first `name=value` off s (which starts
// after a ';'), unquoting a quoted-string value. It is lenient the way
// browsers are: an unquoted value runs to the next ';', spaces included.
func nextDispositionParam(s string) (name, value, rest string) {
	s = strings.TrimLeft(s, " \t")
	eq := strings.IndexAny(s, "=;")
	if eq < 0 {
		return strings.TrimSpace(s), "", ""
	}
	if s[eq] == ';' {
		return strings.TrimSpace(s[:eq]), "", s[eq+1:]
	}
	name = strings.TrimSpace(s[:eq])
	s = strings.TrimLeft(s[eq+1:], " \t")
	if !strings.HasPrefix(s, `"`) {
		value, rest, _ = strings.Cut(s, ";")
		return name, strings.TrimRight(value, " \t"), rest
	}
	var b strings.Builder
	i := 1
	for ; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
			continue
		}
		if c == '"' {
			i++
			break
		}
		b.WriteByte(c)
	}
	rest = s[i:]
	if j := strings.IndexByte(rest, ';'); j >= 0 {
		rest = rest[j+1:]
	} else {
		rest = ""
	}
	return name, b.String(), rest
}

// decodeExtValue decodes an RFC 8187 ext-value: charset'language'pct-encoded.
func decodeExtValue(v string) (string, bool) {
	v = strings.Trim(v, `"`) // some servers quote it, against the grammar
	charset, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", false
	}
	_, encoded, ok := strings.Cut(rest, "'")
	if !ok {
		return "", false
	}
	raw, err := url.PathUnescape(encoded)
	if err != nil {
		return "", false
	}
	switch strings.ToLower(charset) {
	case "utf-8":
		return raw, utf8.ValidString(raw)
	case "iso-8859-1":
		var b strings.Builder
		for i := 0; i < len(raw); i++ {
			b.WriteRune(rune(raw[i]))
		}
		return b.String(), true
	}
	return "", false
}

// SafeFileName reduces an untrusted name to a base name safe to create in
// the current directory, or "".
func SafeFileName(name string) string {
	if !utf8.ValidString(name) {
		return ""
	}
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), r == unicode.ReplacementChar,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
			return '_'
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(name, ". ")
	name = strings.TrimRight(name, ". ")
	if name == "" {
		return ""
	}
	if len(name) > maxFileName {
		name = truncateName(name, maxFileName)
	}
	stem, _, _ := strings.Cut(name, ".")
	switch strings.ToUpper(strings.TrimSpace(stem)) {
	case "CON", "PRN", "AUX", "NUL",
		"COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
		"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
		name = "_" + name
		if len(name) > maxFileName {
			name = truncateName(name, maxFileName)
		}
	}
	return name
}

// truncateName cuts name to limit bytes on a rune boundary, keeping an
// extension of up to 16 bytes.
func truncateName(name string, limit int) string {
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
		ext = name[i:]
	}
	stem := name[:len(name)-len(ext)]
	limit -= len(ext)
	for limit > 0 && !utf8.RuneStart(stem[limit]) {
		limit--
	}
	stem = strings.TrimRight(stem[:limit], ". ")
	if stem == "" {
		return ""
	}
	return stem + ext
}
