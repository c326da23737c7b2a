package httpx

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// This file holds the one rule of where credentials go. The credentials
// of a download (basic auth from http.basic_auth, and every secret header
// of http.headers, see IsSecretHeader) belong to the origins the user
// named: the download's URL, or the Metalink's URL. The client's
// transport applies the rule to every request it sends, the probe's, the
// readers', the mirrors', the Metalink's and each hop of a redirect, so
// that no code that builds a request needs to know it:
//
//   - a request whose origin (scheme, host, port) is not an owner's goes
//     without them; so does one that a redirect chain brought back to an
//     owner after it had left (the chain's origins must all be owners);
//   - https and http are two origins: nothing the user gave for https
//     ever goes out in clear text, also on the same host;
//   - a URL's own userinfo (https://user:pass@mirror/) is that URL's
//     credential: it goes to its own origin, and not after a redirect
//     leaves it.

// Origin is the scheme, host and port of a URL (RFC 6454): what owns
// credentials. The zero Origin is no origin.
type Origin struct {
	Scheme, Host, Port string
}

// OriginOf returns the origin of u: scheme and host lowercased, the
// default port of http (80) and https (443) made explicit, so that
// https://h/ and https://h:443/ are one origin.
func OriginOf(u *url.URL) Origin {
	o := Origin{Scheme: strings.ToLower(u.Scheme), Host: strings.ToLower(u.Hostname()), Port: u.Port()}
	if o.Port == "" {
		switch o.Scheme {
		case "http":
			o.Port = "80"
		case "https":
			o.Port = "443"
		}
	}
	return o
}

func (o Origin) String() string {
	host := o.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return o.Scheme + "://" + host + ":" + o.Port
}

// secretWords make a header secret when its name contains one of them,
// case-insensitive: X-Api-Key, X-Auth-Token, X-Session-Id, X-Secret...
var secretWords = []string{"key", "token", "secret", "auth", "session"}

// IsSecretHeader reports whether a request header carries a credential,
// which only the origins that own the credentials may see: Authorization,
// Proxy-Authorization, Cookie, Cookie2, and any header whose name contains
// key, token, secret, auth or session (case-insensitive). Other headers
// (User-Agent, X-Trace, ...) go with every request.
func IsSecretHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Authorization", "Proxy-Authorization", "Cookie", "Cookie2":
		return true
	}
	lower := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// credentialTransport applies the credential rule (see the top of this
// file) to every request, hops of redirects included, before base sends
// it. It never adds a credential the request did not hold, except
// Authorization from the URL's own userinfo, which net/http would have
// sent had the configured Authorization not been there.
type credentialTransport struct {
	base http.RoundTripper

	mu sync.Mutex
	// owners are the origins that own the credentials; until bound, the
	// first request's origin is bound as the owner.
	owners []Origin
	bound  bool
}

// newCredentialTransport returns base behind the credential rule for the
// origins of owners, URLs; with none, the origin of the first request the
// client sends owns them. An owner that is not a URL with a host owns
// nothing: the request to it fails on its own (the probe names the URL).
func newCredentialTransport(base http.RoundTripper, owners []string) *credentialTransport {
	t := &credentialTransport{base: base, bound: len(owners) > 0}
	for _, raw := range owners {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			continue
		}
		if o := OriginOf(u); !slices.Contains(t.owners, o) {
			t.owners = append(t.owners, o)
		}
	}
	return t
}

func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	chain := redirectChain(req)
	t.mu.Lock()
	if !t.bound {
		t.owners, t.bound = []Origin{chain[len(chain)-1]}, true
	}
	owners := t.owners
	t.mu.Unlock()
	if out := withoutCredentials(req, chain, owners); out != nil {
		req = out
	}
	return t.base.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (t *credentialTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// redirectChain returns the origins of req and of the requests whose
// redirects led to it, req's first. Its length is bounded by
// http.max_redirects.
func redirectChain(req *http.Request) []Origin {
	chain := []Origin{OriginOf(req.URL)}
	for r := req; r.Response != nil && r.Response.Request != nil; {
		r = r.Response.Request
		chain = append(chain, OriginOf(r.URL))
	}
	return chain
}

// withoutCredentials returns a copy of req without its secret headers
// when a request of the chain is not at an owner's origin, with the
// Authorization of its URL's own userinfo when the chain never left that
// URL's origin; nil when req may go as it is.
func withoutCredentials(req *http.Request, chain, owners []Origin) *http.Request {
	owned := true
	for _, o := range chain {
		owned = owned && slices.Contains(owners, o)
	}
	if owned {
		return nil
	}
	var h http.Header
	for name := range req.Header {
		if IsSecretHeader(name) {
			if h == nil {
				h = req.Header.Clone()
			}
			h.Del(name)
		}
	}
	if u := req.URL.User; u != nil && !slices.ContainsFunc(chain, func(o Origin) bool { return o != chain[0] }) {
		if h == nil {
			h = req.Header.Clone()
		}
		pass, _ := u.Password()
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	if h == nil {
		return nil
	}
	out := new(http.Request)
	*out = *req // a shallow copy, as http.Request.WithContext makes: a RoundTripper must not change req
	out.Header = h
	return out
}
