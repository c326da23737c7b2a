package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/rs/zerolog"
)

// ErrInvalidURL is wrapped by Probe's error for a URL it cannot download.
var ErrInvalidURL = errors.New("invalid url")

// ProbeOptions configure ProbeWith. The zero value means the defaults.
type ProbeOptions struct {
	// Retry is the probe's retry policy: Attempts tries of the probe,
	// Total retries at most, the same backoff and Retry-After as the
	// readers. The zero value means DefaultRetry; another value must pass
	// Validate.
	Retry RetryConfig
	// Timeout is the probe's time budget for the server's answers (see
	// ProbeWith). 0 means the client's response-header timeout
	// (http.header_timeout) when the client is one NewClient built, else
	// no budget; a negative value means no budget: each request is then
	// bounded only by the client's timeouts and ctx.
	Timeout time.Duration
	// Log receives a warning for each retry. The zero Logger logs nothing.
	Log zerolog.Logger
	// Prefetch, when not 0, makes the probe ask `GET` first, with no
	// HEAD, for the resource's first Prefetch bytes (`Range:
	// bytes=0-(Prefetch-1)`; a negative Prefetch asks `bytes=0-`, all of
	// it), and keep a usable answer open in Resource.Prefetched: a 206
	// from offset 0, or a 200 (the server ignores ranges). The download
	// reads its first bytes from it instead of asking again: one round
	// trip less, and a file smaller than Prefetch costs one request. Ask
	// for the first piece of the ranged topology that may run, so that no
	// byte sent is thrown away. An answer that says too little (a 206 that
	// does not start at 0) is closed, and the probe asks as without it.
	Prefetch int64
}

// ProbeStats says what a probe cost. It is filled on failure too.
type ProbeStats struct {
	// Requests is the number of requests sent, HEAD and GET.
	Requests int
	// Retries is the number of times the probe started again after a
	// transient failure; the fallback from HEAD to GET is not one.
	Retries int
}

// NoResponseError is a probe that got no response header in time: its time
// budget ran out, or the client's own header or idle timeout fired, while
// Method waited. It is not transient (a silent server stays silent), and
// errors.Is(err, context.DeadlineExceeded) holds, as it does for the
// transport's own header timeout; Unwrap gives the client's error.
type NoResponseError struct {
	// Host is the host:port that was asked.
	Host string
	// Method is the request that was waiting: HEAD or GET.
	Method string
	// Within is how long the server was given: the probe's budget, or the
	// request's own wait when the client's timeout fired first.
	Within time.Duration
	// Requests is the number of requests the probe had sent, this one
	// included.
	Requests int
	Err      error
}

func (e *NoResponseError) Error() string {
	if e.Requests > 1 {
		return fmt.Sprintf("no response header from %s within %v (%s, request %d of the probe)", e.Host, e.Within, e.Method, e.Requests)
	}
	return fmt.Sprintf("no response header from %s within %v (%s)", e.Host, e.Within, e.Method)
}

func (e *NoResponseError) Unwrap() error { return e.Err }

// Is makes a NoResponseError a context.DeadlineExceeded, whichever timer
// fired, so that IsTransient and callers see one kind of error.
func (e *NoResponseError) Is(target error) bool { return target == context.DeadlineExceeded }

// Probe is ProbeWith with zero options (DefaultRetry, the client's header
// timeout as the budget, no log), for callers that need neither the
// statistics nor a logger.
func Probe(ctx context.Context, client *http.Client, header http.Header, rawURL string) (*pipeline.Resource, error) {
	res, _, err := ProbeWith(ctx, client, header, rawURL, ProbeOptions{})
	return res, err
}

// ProbeWith asks the server about rawURL before a run and returns the
// Resource every stage of the run shares, and what asking cost.
//
// A try sends HEAD first. Where HEAD is refused or misbehaves (403 from a
// presigned URL, 405, 501, a 5xx, a connection error, a 200 with no
// length), it asks `GET` with `Range: bytes=0-0` instead and reads the one
// byte, which also proves range support. The Resource's URL is the final one
// after redirects; its Header is header, credentials included: the client
// of NewClient sends them only to their own origin (credentials.go), on
// the probe's redirects as on the readers' later requests to the final
// URL.
//
// Retries. A try whose last answer is a transient failure (IsTransient: a
// connection reset or refused, a cut answer, 408, 429, 500, 502, 503, 504)
// is tried again under opts.Retry, as a reader retries a range: each
// failed try counts against Attempts and against the probe's own Total
// (one retry budget per probe), and the wait is the backoff with full
// jitter, or the server's Retry-After (the longer of the HEAD's and the
// GET's when both sent one). Each retry is logged at warn
// level on opts.Log and counted in ProbeStats.Retries. A HEAD refused with
// a status that will not change (403, 405, 501, ...) is not asked again in
// later tries. These fail at once, with no retry: 401, 404 and 410 (a
// *HTTPError, from HEAD or GET), 403 or another permanent status from the
// GET, a refused redirect (a *RedirectError inside the error), an invalid
// URL (ErrInvalidURL, before any request), a done ctx, and any timeout: no
// response header in time (a *NoResponseError), no TLS handshake, no
// connection. A server that let both HEAD and GET time out is not asked a
// third time: the probe would multiply the wait the timeouts already
// bound.
//
// Time budget. opts.Timeout bounds the time the probe waits for the server,
// summed over all its requests and tries: from sending each request
// (connect and TLS included) to its response header and the few bytes of
// body it reads. The waits between tries are not in it: the retry policy
// bounds those (Attempts, MaxBackoff, Retry-After capped at 60s). When the
// budget runs out while a request waits, the probe fails with a
// *NoResponseError naming the host, the budget and the method; when it is
// spent by answers that failed, with the last failure. A HEAD that timed
// out is followed by the GET only while the budget has time left: with the
// budget equal to the client's header timeout (the default) a silent server
// costs one header timeout and one request, not two (issue #10.10); with a
// larger budget, or none, a server that ignores only HEAD still gets its
// GET.
//
// client and header usually come from NewClient; header may be nil. The
// returned error does not say "probe": the caller adds that.
func ProbeWith(ctx context.Context, client *http.Client, header http.Header, rawURL string, opts ProbeOptions) (*pipeline.Resource, ProbeStats, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, ProbeStats{}, err
	}
	if client == nil {
		return nil, ProbeStats{}, errors.New("nil http client")
	}
	policy := opts.Retry
	if policy == (RetryConfig{}) {
		policy = DefaultRetry
	} else if err := policy.Validate(); err != nil {
		return nil, ProbeStats{}, fmt.Errorf("probe retry policy: %w", err)
	}
	header = header.Clone()
	if header == nil {
		header = make(http.Header)
	}
	header.Set("Accept-Encoding", "identity")
	p := &prober{client: client, header: header, url: u, budget: opts.Timeout, prefetch: opts.Prefetch}
	if p.budget == 0 {
		p.budget = clientHeaderTimeout(client)
	}

	r := Retrier{Config: policy, Owner: "probe"}
	for {
		res, err := p.try(ctx)
		if err == nil {
			return res, p.stats, nil
		}
		if ctx.Err() != nil || !IsTransient(err) || isTimeout(err) {
			return nil, p.stats, err
		}
		if p.budget > 0 && p.spent >= p.budget {
			return nil, p.stats, fmt.Errorf("giving up: the probe's %v time budget is spent: %w", p.budget, err)
		}
		wait, giveUp := r.Next(ctx, err, false)
		if giveUp != nil {
			return nil, p.stats, giveUp
		}
		wait = max(wait, p.headRetryAfter)
		p.stats.Retries++
		opts.Log.Warn().Err(err).Str("url", RedactURL(u.String())).Int("attempt", r.Attempt()).
			Float64("backoff_s", wait.Seconds()).Msg("retrying the probe")
		if err := Sleep(ctx, wait); err != nil {
			return nil, p.stats, err
		}
	}
}

// prober is the state of one probe across its tries.
type prober struct {
	client *http.Client
	header http.Header
	url    *url.URL
	budget time.Duration // <= 0: none
	spent  time.Duration // waiting for the server, all requests so far
	stats  ProbeStats

	skipHEAD       bool          // HEAD gave an answer that will not change
	headRetryAfter time.Duration // the Retry-After of this try's transient HEAD answer
	prefetch       int64         // ask GET for the first bytes and keep its answer (ProbeOptions.Prefetch); 0: no
}

// try asks HEAD, then the ranged GET where HEAD did not do; with Prefetch
// it asks the GET for the first bytes and keeps it. Its error is the one
// that decides whether to try again.
func (p *prober) try(ctx context.Context) (*pipeline.Resource, error) {
	if p.prefetch != 0 {
		if res, err, done := p.tryPrefetch(ctx); done {
			return res, err
		}
		p.prefetch = 0 // an answer that said too little: ask without it
	}
	p.headRetryAfter = 0
	var head *http.Response // a 200 without a usable length
	if !p.skipHEAD {
		resp, err := p.request(ctx, p.header, http.MethodHead, false)
		switch {
		case err != nil:
			if ctx.Err() != nil || isRedirectError(err) || isTimeout(err) && p.budgetLeft() <= 0 {
				return nil, err
			}
		case resp.StatusCode == http.StatusOK && resp.ContentLength >= 0:
			return newResource(resp, p.client, p.header, p.url, "")
		case resp.StatusCode == http.StatusOK:
			head = resp
		case isFinalStatus(resp.StatusCode):
			return nil, NewHTTPError(resp, p.url.String())
		default:
			he := NewHTTPError(resp, p.url.String())
			if !IsTransient(he) {
				p.skipHEAD = true
			} else if he.hasRetryAfter {
				p.headRetryAfter = he.retryAfter
			}
		}
	}

	get := p.header.Clone()
	get.Set("Range", "bytes=0-0")
	resp, err := p.request(ctx, get, http.MethodGet, false)
	switch {
	case err != nil:
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		return newResource(resp, p.client, p.header, p.url, "bytes=0-0")
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// An empty file has no byte 0; the 416 still tells its length.
		if _, _, total, crErr := ParseContentRange(resp.Header.Get("Content-Range")); crErr == nil && total == 0 {
			return newResource(resp, p.client, p.header, p.url, "bytes=0-0")
		}
		err = NewHTTPError(resp, p.url.String())
	default:
		err = NewHTTPError(resp, p.url.String())
	}
	if head != nil && ctx.Err() == nil {
		// HEAD answered 200 without a length and the GET did not help:
		// the size stays unknown.
		return newResource(head, p.client, p.header, p.url, "")
	}
	return nil, err
}

// tryPrefetch asks GET for the first bytes and keeps a usable answer open.
// done is false when the answer says too little and the probe should ask
// without Prefetch.
func (p *prober) tryPrefetch(ctx context.Context) (res *pipeline.Resource, err error, done bool) {
	rangeSent := "bytes=0-"
	if p.prefetch > 0 {
		rangeSent += strconv.FormatInt(p.prefetch-1, 10)
	}
	get := p.header.Clone()
	get.Set("Range", rangeSent)
	resp, err := p.request(ctx, get, http.MethodGet, true)
	if err != nil {
		return nil, err, true
	}
	switch resp.StatusCode {
	case http.StatusOK:
		// The server ignores ranges: the whole body, from offset 0.
	case http.StatusPartialContent:
		start, end, total, crErr := ParseContentRange(resp.Header.Get("Content-Range"))
		last := total - 1
		if p.prefetch > 0 {
			last = min(last, p.prefetch-1)
		}
		if crErr != nil || start != 0 || total < 0 || end != last || resp.ContentLength >= 0 && resp.ContentLength != end+1 {
			resp.Body.Close()
			return nil, nil, false
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// An empty file has no byte 0; the 416 still tells its length.
		if _, _, total, crErr := ParseContentRange(resp.Header.Get("Content-Range")); crErr == nil && total == 0 {
			res, err := newResource(resp, p.client, p.header, p.url, rangeSent)
			return res, err, true
		}
		return nil, NewHTTPError(resp, p.url.String()), true
	default:
		return nil, NewHTTPError(resp, p.url.String()), true
	}
	res, err = newResource(resp, p.client, p.header, p.url, rangeSent)
	if err != nil {
		resp.Body.Close()
		return nil, err, true
	}
	res.Prefetched = NewPrefetched(resp)
	return res, nil, true
}

// budgetLeft is the time the probe may still wait for the server; with no
// budget, an hour stands for no limit.
func (p *prober) budgetLeft() time.Duration {
	if p.budget <= 0 {
		return time.Hour
	}
	return p.budget - p.spent
}

// request sends one request within what is left of the budget and counts
// the time it waited. A request that got no response header in time fails
// with a *NoResponseError. With keep, a 200 or 206 answer comes back with
// its body open (the budget no longer bounds it); closing the body ends
// the request.
func (p *prober) request(ctx context.Context, header http.Header, method string, keep bool) (*http.Response, error) {
	reqCtx, cancel := context.WithCancel(ctx)
	var budgetOver atomic.Bool
	if p.budget > 0 {
		timer := time.AfterFunc(p.budgetLeft(), func() { budgetOver.Store(true); cancel() })
		defer timer.Stop()
	}
	p.stats.Requests++
	start := time.Now()
	resp, err := probeRequest(reqCtx, p.client, header, p.url, method, keep)
	waited := time.Since(start)
	p.spent += waited
	if err == nil && resp.Body != http.NoBody && reqCtx.Err() == nil {
		// The body is open: its request lives until it is closed.
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
	defer cancel()
	if budgetOver.Load() {
		// The budget's timer cancelled the request (its error says
		// "canceled"), or ran out just as the answer came: a timeout.
		if err == nil {
			resp.Body.Close()
		}
		err = context.DeadlineExceeded
	}
	if err == nil || ctx.Err() != nil {
		return resp, err
	}
	awaited := !isDialError(err) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded))
	// The client's header timeout, when it equals what was left of the
	// budget, fires just after the budget's own deadline: both mean the
	// budget ran out.
	budgetOut := budgetOver.Load() || awaited && p.budget > 0 && p.spent >= p.budget
	if !budgetOut && !awaited {
		return nil, err
	}
	nr := &NoResponseError{Host: p.url.Host, Method: method, Within: roundWait(waited), Requests: p.stats.Requests, Err: err}
	if budgetOut {
		nr.Within = p.budget
		p.spent = p.budget
	}
	return nil, nr
}

// isTimeout: a timer of the client or of the probe fired before an answer.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isDialError: the connection was never made, so no request was sent.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// roundWait keeps a measured wait readable in a message.
func roundWait(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// clientHeaderTimeout is the response-header timeout of a client NewClient
// built (or of any client on an *http.Transport), else 0.
func clientHeaderTimeout(client *http.Client) time.Duration {
	switch tr := client.Transport.(type) {
	case *http.Transport:
		return tr.ResponseHeaderTimeout
	case *limitedTransport:
		return tr.base.ResponseHeaderTimeout
	case *credentialTransport:
		return clientHeaderTimeout(&http.Client{Transport: tr.base})
	}
	return 0
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
// header is left to look at; with keep, the body of a 200 or 206 is left
// open for the caller.
func probeRequest(ctx context.Context, client *http.Client, header http.Header, u *url.URL, method string, keep bool) (*http.Response, error) {
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
	if keep && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) {
		return resp, nil
	}
	// A 200 to the ranged GET would be the whole file: do not read it.
	if resp.StatusCode != http.StatusOK || method == http.MethodHead {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<10))
	}
	resp.Body.Close()
	resp.Body = http.NoBody
	return resp, nil
}

// cancelOnClose ends an open answer's request when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
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
		HTTP:         Requester{Client: client, Header: header},
		ProbedAt:     time.Now(),
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		res.Size = resp.ContentLength
		// A 200 to a Range request means the server ignores ranges,
		// whatever Accept-Ranges says.
		res.AcceptRanges = rangeSent == "" && acceptsBytes(h.Values("Accept-Ranges"))
	default: // 206, or 416 for an empty file
		// A 206 from offset 0 proves range support: the one byte of
		// bytes=0-0, or the first bytes a prefetching probe asked for.
		start, _, total, err := ParseContentRange(h.Get("Content-Range"))
		ok := err == nil && (resp.StatusCode != http.StatusPartialContent || start == 0)
		if ok {
			res.Size = total
		}
		res.AcceptRanges = ok
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		res.AcceptRanges = false // ranges of an encoded body are not ranges of the file
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
