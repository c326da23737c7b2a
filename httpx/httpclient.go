package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/dlflow/dlflow/pipeline"
)

// HTTPConfig is the top-level `http:` section of a config: how every request
// of a run reaches the server. Start from DefaultHTTPConfig; a zero timeout
// means no limit.
type HTTPConfig struct {
	ConnectTimeout        time.Duration     `koanf:"connect_timeout" help:"time allowed to open a TCP connection"`
	TLSTimeout            time.Duration     `koanf:"tls_timeout" help:"time allowed for the TLS handshake"`
	HeaderTimeout         time.Duration     `koanf:"header_timeout" help:"time allowed between sending a request and the response header"`
	IdleTimeout           time.Duration     `koanf:"idle_timeout" help:"a body that delivers no bytes for this long is a stalled (retried) transfer"`
	MaxRedirects          int               `koanf:"max_redirects" help:"most redirects followed for one request"`
	AllowInsecureRedirect bool              `koanf:"allow_insecure_redirect" help:"follow redirects from https to plain http"`
	Insecure              bool              `koanf:"insecure" help:"skip TLS certificate verification (dangerous)"`
	CACert                string            `koanf:"ca_cert" help:"PEM file of extra CA certificates to trust"`
	UserAgent             string            `koanf:"user_agent" help:"User-Agent header of every request"`
	Headers               map[string]string `koanf:"headers" help:"extra request headers, such as Authorization"`
	BasicAuth             string            `koanf:"basic_auth" help:"user:password sent as HTTP basic auth (--user); credentials in the URL (https://user:pass@host/) work too. Never logged"`
	Proxy                 string            `koanf:"proxy" help:"proxy URL; empty uses HTTPS_PROXY/HTTP_PROXY/NO_PROXY, \"none\" disables"`
	HTTP2                 bool              `koanf:"http2" help:"allow HTTP/2 (multiplexes all readers onto one TCP connection)"`
	LimitRate             pipeline.ByteSize `koanf:"limit_rate" help:"most bytes per second for the whole download, all connections together, e.g. 10MiB (--limit-rate); 0: no limit"`
}

// DefaultHTTPConfig is the configuration a run gets for keys the user did
// not set.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{
		ConnectTimeout: 10 * time.Second,
		TLSTimeout:     10 * time.Second,
		HeaderTimeout:  30 * time.Second,
		IdleTimeout:    30 * time.Second,
		MaxRedirects:   10,
		UserAgent:      "dlflow/0.1",
	}
}

// Transport sizing. A ranged download opens one connection per reader, so
// the idle pool must keep all of them. The read buffer is small on purpose:
// the transport's bufio.Reader hands a read of at least its size straight
// to the socket, into the stage's pooled chunk, and copies only reads
// smaller than itself. With a buffer as large as a chunk, every read that
// fills the rest of a partly filled chunk went through it: one more copy
// of nearly every byte.
const (
	transportReadBuffer  = 16 << 10
	transportWriteBuffer = 64 << 10 // requests are small; bigger buys nothing
	maxIdlePerHost       = 64
)

// RedirectError is a redirect the client refused to follow. It reaches the
// caller wrapped by the request error; use errors.As.
type RedirectError struct {
	// URL is the redirect target, redacted.
	URL    string
	Reason string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("refusing redirect to %s: %s", e.URL, e.Reason)
}

// NewClient builds the HTTP client of a run from cfg and returns it with the
// header every request must carry: User-Agent, Accept-Encoding: identity and
// the configured Headers. A malformed header, an unreadable CA file or a bad
// proxy URL is an error naming the culprit.
//
// The transport speaks HTTP/1.1 only unless cfg.HTTP2 is set, so that N range
// readers really are N TCP connections. It never asks for compression: a
// compressed body would break sizes and offsets.
func NewClient(cfg HTTPConfig) (*http.Client, http.Header, error) {
	tr, err := NewTransport(cfg)
	if err != nil {
		return nil, nil, err
	}
	return NewClientOn(tr, cfg)
}

// NewClientOn builds a client like NewClient on tr, a transport that
// NewTransport made from a config with the same TransportKey; downloads that
// share it reuse its connections and TLS sessions. The client adds what is
// the download's own: the redirect policy, the rate limit, the header, and
// the origins that own its credentials.
//
// Credentials (Authorization, cookies and the other secret headers, see
// IsSecretHeader) go only to the origins of owners, the URLs the user
// named, and never from https to http: the client drops them from every
// request elsewhere, redirects and mirrors included (credentials.go).
// With no owners, the origin of the client's first request owns them.
func NewClientOn(tr *http.Transport, cfg HTTPConfig, owners ...string) (*http.Client, http.Header, error) {
	header, err := requestHeader(cfg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.MaxRedirects < 0 {
		return nil, nil, fmt.Errorf("http.max_redirects must be 0 or more, got %d", cfg.MaxRedirects)
	}
	var base http.RoundTripper = tr
	if cfg.LimitRate > 0 {
		base = newLimitedTransport(tr, int64(cfg.LimitRate))
	}
	return &http.Client{Transport: newCredentialTransport(base, owners), CheckRedirect: redirectPolicy(cfg)}, header, nil
}

// TransportKey holds the settings of an HTTPConfig that its transport is
// built from: two configs with equal keys can share one transport.
type TransportKey struct {
	ConnectTimeout, TLSTimeout, HeaderTimeout, IdleTimeout time.Duration
	Insecure, HTTP2                                        bool
	CACert, Proxy                                          string
}

// TransportKey returns the settings of c that NewTransport uses.
func (c HTTPConfig) TransportKey() TransportKey {
	return TransportKey{
		ConnectTimeout: c.ConnectTimeout, TLSTimeout: c.TLSTimeout, HeaderTimeout: c.HeaderTimeout, IdleTimeout: c.IdleTimeout,
		Insecure: c.Insecure, HTTP2: c.HTTP2, CACert: c.CACert, Proxy: c.Proxy,
	}
}

// NewTransport builds the transport of cfg: timeouts, TLS, proxy, and
// HTTP/1.1 only unless cfg.HTTP2 is set. An unreadable CA file or a bad
// proxy URL is an error naming the key.
func NewTransport(cfg HTTPConfig) (*http.Transport, error) {
	proxy := http.ProxyFromEnvironment
	switch p := strings.TrimSpace(cfg.Proxy); {
	case p == "":
	case strings.EqualFold(p, "none"):
		proxy = nil
	default:
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("http.proxy %q: want a URL such as http://proxy:3128", RedactURL(p))
		}
		switch u.Scheme {
		case "http", "https", "socks5", "socks5h":
		default:
			return nil, fmt.Errorf("http.proxy %q: unsupported scheme %q", RedactURL(p), u.Scheme)
		}
		proxy = http.ProxyURL(u)
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure} //nolint:gosec // opt-in
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("http.ca_cert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http.ca_cert %s: no PEM certificate found", cfg.CACert)
		}
		tlsConf.RootCAs = pool
	}

	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"connect_timeout", cfg.ConnectTimeout}, {"tls_timeout", cfg.TLSTimeout}, {"header_timeout", cfg.HeaderTimeout}, {"idle_timeout", cfg.IdleTimeout}} {
		if d.v < 0 {
			return nil, fmt.Errorf("http.%s must not be negative (0 means no limit), got %v", d.key, d.v)
		}
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	if idle := cfg.IdleTimeout; idle > 0 {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: idle}, nil
		}
	}
	tr := &http.Transport{
		Proxy:                  proxy,
		DialContext:            dial,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    cfg.TLSTimeout,
		ResponseHeaderTimeout:  cfg.HeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxIdleConns:           4 * maxIdlePerHost,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        90 * time.Second,
		ReadBufferSize:         transportReadBuffer,
		WriteBufferSize:        transportWriteBuffer,
		MaxResponseHeaderBytes: 1 << 20,
		ForceAttemptHTTP2:      cfg.HTTP2,
	}
	if !cfg.HTTP2 {
		// A non-nil empty map turns off the transport's automatic HTTP/2.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return tr, nil
}

// limitedTransport shares one token bucket among the bodies of every
// response it returns, so that http.limit_rate bounds the whole download:
// all connections and all stages of a run together, without any stage
// knowing. A body read takes at most a burst of bytes and then waits for
// the tokens they cost.
type limitedTransport struct {
	base *http.Transport
	lim  *rate.Limiter
	// mu orders the reservations: rate.Limiter takes the time of a
	// reservation from its caller and sets its clock to it, so two bodies
	// that read time.Now() and then reserve in the other order would turn
	// its clock back, and the bucket would count the time between twice.
	mu sync.Mutex
}

// limitBurst is the bucket size for a rate: a sixteenth of a second's worth,
// at least 1 KiB and at most 1 MiB, so that reads stay large at high rates
// and the pauses short at low ones.
func limitBurst(bytesPerSec int64) int {
	return int(min(max(bytesPerSec/16, 1<<10), 1<<20))
}

func newLimitedTransport(base *http.Transport, bytesPerSec int64) *limitedTransport {
	return &limitedTransport{base: base, lim: rate.NewLimiter(rate.Limit(bytesPerSec), limitBurst(bytesPerSec))}
}

// reserve takes n <= burst tokens, so it is always OK.
func (t *limitedTransport) reserve(n int) *rate.Reservation {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lim.ReserveN(time.Now(), n)
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, t: t, ctx: req.Context()}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (t *limitedTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

type limitedBody struct {
	io.ReadCloser
	t   *limitedTransport
	ctx context.Context
}

// Read hands out bytes only once their tokens are due: it reads at most a
// burst, reserves its tokens, and waits for them, also when the request is
// cancelled meanwhile. Handing a cancelled request's bytes out early (a
// range stolen by another reader keeps what it read) ended downloads
// faster than the limit at their tail; dropping them wasted what they cost
// and made the readers fetch them again (2 MiB at 4 MiB/s took up to 1.3 s
// instead of 0.45). The wait is at most the reservations queued ahead, a
// sixteenth of a second per connection (limitBurst).
func (b *limitedBody) Read(p []byte) (int, error) {
	if burst := b.t.lim.Burst(); len(p) > burst {
		p = p[:burst]
	}
	n, err := b.ReadCloser.Read(p)
	if n == 0 {
		return n, err
	}
	if d := b.t.reserve(n).Delay(); d > 0 {
		time.Sleep(d)
	}
	if err == nil {
		err = b.ctx.Err()
	}
	return n, err
}

// idleConn makes every read fail with a timeout when the peer sends nothing
// for idle: the transport-level http.idle_timeout. It also catches a silent
// server that no stage-level idle timer watches (the probe, a TLS
// handshake's reads). A pooled connection that idles longer is closed by the
// transport, which then dials anew: cheap next to a hung download.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// redirectPolicy refuses a redirect past http.max_redirects, to a scheme
// other than http and https, and from https to http unless
// http.allow_insecure_redirect. Which credentials a hop carries is the
// client's transport's rule (credentials.go), for redirects as for every
// other request.
func redirectPolicy(cfg HTTPConfig) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		target := RedactURL(req.URL.String())
		if len(via) > cfg.MaxRedirects {
			return &RedirectError{URL: target, Reason: fmt.Sprintf("stopped after %d redirects (http.max_redirects)", cfg.MaxRedirects)}
		}
		if s := req.URL.Scheme; s != "http" && s != "https" {
			return &RedirectError{URL: target, Reason: fmt.Sprintf("unsupported scheme %q", s)}
		}
		prev := via[len(via)-1]
		if prev.URL.Scheme == "https" && req.URL.Scheme == "http" && !cfg.AllowInsecureRedirect {
			return &RedirectError{URL: target, Reason: "it downgrades https to http (set http.allow_insecure_redirect to allow)"}
		}
		return nil
	}
}

func requestHeader(cfg HTTPConfig) (http.Header, error) {
	h := make(http.Header, len(cfg.Headers)+2)
	if cfg.UserAgent != "" {
		if err := checkHeader("User-Agent", cfg.UserAgent); err != nil {
			return nil, fmt.Errorf("http.user_agent: %w", err)
		}
		h.Set("User-Agent", cfg.UserAgent)
	}
	h.Set("Accept-Encoding", "identity")
	if cfg.BasicAuth != "" {
		user, pass, ok := strings.Cut(cfg.BasicAuth, ":")
		if !ok || user == "" {
			return nil, errors.New("http.basic_auth: want user:password")
		}
		if strings.ContainsAny(cfg.BasicAuth, "\r\n\x00") {
			return nil, errors.New("http.basic_auth: contains CR, LF or NUL")
		}
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	for name, value := range cfg.Headers {
		if err := checkHeader(name, value); err != nil {
			return nil, fmt.Errorf("http.headers: %w", err)
		}
		if strings.EqualFold(name, "Accept-Encoding") && !strings.EqualFold(strings.TrimSpace(value), "identity") {
			return nil, fmt.Errorf("http.headers: Accept-Encoding must stay identity: a compressed body breaks sizes and offsets")
		}
		h.Set(name, value)
	}
	return h, nil
}

// ParseHeader splits a header given as "Name: value", the form of curl's
// -H, and checks it as NewClient would. The value may be empty.
func ParseHeader(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("%q: want \"Name: value\"", s)
	}
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if err := checkHeader(name, value); err != nil {
		return "", "", err
	}
	return name, value, nil
}

// checkHeader rejects what would corrupt or smuggle a request: a name that
// is not an RFC 9110 token, a value with a control character other than
// tab (CR, LF and NUL included), which net/http would refuse only when the
// request is sent.
func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("header name %q: %q is not allowed in a header name", name, name[i])
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("header %q: value contains the control character %q", name, c)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// RedactURL returns raw with the password of its userinfo replaced by
// "xxxxx", for error messages and logs. Every message that shows a URL goes
// through it. A string that does not parse as a URL is redacted
// conservatively: everything between "://" and "@" is hidden.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			return u.Redacted()
		}
		return raw
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority := rest
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		authority = authority[:i]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		return scheme + "://xxxxx@" + rest[at+1:]
	}
	return raw
}
