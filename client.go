package dlflow

import (
	"context"
	"net/http"
	"sync"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// Client downloads. It holds what downloads share: the HTTP transports
// (so keep-alive connections and TLS sessions are reused from one download
// to the next), the per-host connection limit, the stage registry and the
// logger. A Client is safe for concurrent use; make one and reuse it.
//
// Its idle connections stay open for reuse until CloseIdleConnections;
// call it when done, as with http.Client.
type Client struct {
	log        zerolog.Logger
	reg        *pipeline.Registry
	maxPerHost int
	hosts      *hostLimiter // nil without a limit

	mu         sync.Mutex
	transports map[httpx.TransportKey]*http.Transport
	// wirings remembers what checking a request's configuration found,
	// by wiringKey: every download of a batch has the same.
	wirings sync.Map
}

// Option configures a Client.
type Option func(*Client)

// WithLogger sends the client's log lines to log; without it the client
// logs nothing. A logger attached to a download's context
// (zerolog.Logger.WithContext) is used for that download instead.
func WithLogger(log zerolog.Logger) Option { return func(c *Client) { c.log = log } }

// WithRegistry builds topologies from reg instead of
// pipeline.DefaultRegistry, where the built-in stages and any stage package
// a program imports register: the backends (sinks/s3, sinks/archive,
// stages/decompress) among them, in their init functions. A registry of
// one's own gets them from their Register functions; a request that needs
// one reg lacks fails with a *MissingBackendError.
func WithRegistry(reg *pipeline.Registry) Option { return func(c *Client) { c.reg = reg } }

// WithMaxPerHost caps the connections open to one host (host and port) at
// n, over all downloads of the client: a download that asks for more gets
// fewer, and one that finds them taken waits. 0, the default, sets no cap.
func WithMaxPerHost(n int) Option { return func(c *Client) { c.maxPerHost = max(n, 0) } }

// NewClient returns a client with the given options.
func NewClient(opts ...Option) *Client {
	c := &Client{log: zerolog.Nop(), reg: pipeline.DefaultRegistry, transports: map[httpx.TransportKey]*http.Transport{}}
	for _, o := range opts {
		o(c)
	}
	if c.maxPerHost > 0 {
		c.hosts = newHostLimiter(c.maxPerHost)
	}
	return c
}

// Do downloads req and waits for the end; see Download.Wait.
func (c *Client) Do(ctx context.Context, req *Request) (*Result, error) {
	return c.Start(ctx, req).Wait()
}

// CloseIdleConnections closes the connections the client keeps open for
// reuse. Downloads still running keep theirs.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
}

// httpClient returns the client of one download: on the transport shared by
// every download with the same transport settings, with the download's own
// header, redirect policy and rate limit, and the credentials of the header
// for the origins of owners alone (httpx.NewClientOn).
func (c *Client) httpClient(cfg httpx.HTTPConfig, owners ...string) (*http.Client, http.Header, error) {
	key := cfg.TransportKey()
	c.mu.Lock()
	tr, ok := c.transports[key]
	c.mu.Unlock()
	if !ok {
		built, err := httpx.NewTransport(cfg)
		if err != nil {
			return nil, nil, err
		}
		c.mu.Lock()
		if tr, ok = c.transports[key]; !ok {
			tr = built
			c.transports[key] = tr
		}
		c.mu.Unlock()
	}
	return httpx.NewClientOn(tr, cfg, owners...)
}

// logger is the logger of one download: the one ctx carries, else the
// client's.
func (c *Client) logger(ctx context.Context) zerolog.Logger {
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		return *l
	}
	return c.log
}

// Check finds what is wrong with req without any network or disk I/O: the
// request's fields, its URL (when it has one), its configuration (the
// topology file, the environment, Config and Sets) and the wiring of its
// graph (for an automatic topology, each stage key must fit one of the
// built-in topologies the probe may pick). A batch checks its common
// request once this way before the first download. Errors are those Do
// would return before any I/O.
func (c *Client) Check(req *Request) error {
	d := &Download{client: c, req: req, log: c.log}
	if err := d.resolveExtends(); err != nil {
		return err
	}
	_, err := d.prepare(false)
	return err
}
