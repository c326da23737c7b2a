// Package httpx holds what dlflow knows about HTTP, for the library that
// probes a URL and for the stages that fetch it: the client a run uses
// (timeouts, TLS, proxy, redirect policy, rate limit), the probe that turns
// a URL into a pipeline.Resource, the retry policy, the typed errors of a
// response (*HTTPError, *RangeError, *EncodingError, *RedirectError), and
// strict parsers of the untrusted headers a download depends on:
// Content-Range, Content-Disposition, Repr-Digest and Digest, Retry-After.
//
// It imports only pipeline, so that config can decode an http: section
// without importing any stage.
package httpx
