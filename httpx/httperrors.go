package httpx

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// HTTPError is an answer with a status the download cannot use, such as 404
// or 503. Whether it is retried depends on Status (see RetryConfig).
type HTTPError struct {
	Status int
	// URL is the requested URL with any password redacted.
	URL string

	retryAfter    time.Duration
	hasRetryAfter bool
}

func (e *HTTPError) Error() string {
	if text := http.StatusText(e.Status); text != "" {
		return fmt.Sprintf("http %d %s from %s", e.Status, text, e.URL)
	}
	return fmt.Sprintf("http %d from %s", e.Status, e.URL)
}

// ErrNotFound is what an *HTTPError of status 404 (Not Found) or 410
// (Gone) is, for errors.Is: the resource is not there, and asking again
// will not change that.
var ErrNotFound = errors.New("not found on the server")

// Is makes a 404 or a 410 match ErrNotFound.
func (e *HTTPError) Is(target error) bool {
	return target == ErrNotFound && (e.Status == http.StatusNotFound || e.Status == http.StatusGone)
}

// NewHTTPError describes resp, keeping its Retry-After for the retry policy.
func NewHTTPError(resp *http.Response, rawURL string) *HTTPError {
	e := &HTTPError{Status: resp.StatusCode, URL: RedactURL(rawURL)}
	e.retryAfter, e.hasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// maxRetryAfter caps how long a server may make us wait per retry; a
// Retry-After of hours would look like a hang.
const maxRetryAfter = 60 * time.Second

// parseRetryAfter reads delay-seconds or an HTTP-date, capped at
// maxRetryAfter; a date in the past is a delay of 0.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfter), true
}

// ErrResourceChanged means the server now holds a different version of the
// resource than the one the download started with (If-Range did not match,
// or the length changed). Mixing bytes of two versions would produce a
// corrupt file, so the run fails; a fresh run starts over. Test with
// errors.Is.
var ErrResourceChanged = errors.New("resource changed on the server during the download")

// ErrStalled means a response delivered no bytes for the idle timeout. It is
// transient: the request is cancelled and retried from the first missing
// byte.
var ErrStalled = errors.New("transfer stalled")

// RangeError is a response that does not carry the bytes that were asked
// for: a 200 with the whole body for a range that does not start at 0, or a
// 206 whose Content-Range or length is not the requested range. Writing it
// would put bytes at the wrong offsets, so it is never retried.
type RangeError struct {
	// Range is what was requested ([Start, End); End -1 means to the end).
	Range pipeline.Range
	// Status and ContentRange are what the server answered.
	Status       int
	ContentRange string
	// Reason says what did not match.
	Reason string
	// URL is the requested URL with any password redacted.
	URL string
}

func (e *RangeError) Error() string {
	want := "bytes=" + strconv.FormatInt(e.Range.Start, 10) + "-"
	if e.Range.End >= 0 {
		want += strconv.FormatInt(e.Range.End-1, 10)
	}
	msg := fmt.Sprintf("range %s of %s not honoured: http %d", want, e.URL, e.Status)
	if e.ContentRange != "" {
		msg += fmt.Sprintf(" with Content-Range %q", e.ContentRange)
	}
	return msg + ": " + e.Reason
}

// EncodingError is a response with a Content-Encoding other than identity
// despite `Accept-Encoding: identity`: its bytes are not the resource's bytes.
type EncodingError struct {
	Encoding string
	URL      string
}

func (e *EncodingError) Error() string {
	return fmt.Sprintf("%s answered with Content-Encoding %q although identity was requested; its bytes are not the file's bytes", e.URL, e.Encoding)
}
