package pipeline

import (
	"io"
	"net/http"
	"time"
)

// Resource is what the probe learned about the download, established once
// before the run and shared by every stage. Stages must not modify it.
type Resource struct {
	// URL is the final URL after redirects; every request of the run goes
	// there.
	URL string
	// Mirrors are other URLs of the same bytes (the --mirror flag, a
	// Metalink file's URLs), in order of preference. A stage that fetches
	// ranges may spread its requests over URL and them (see Sources); each
	// mirror is checked on its first answer against Size and, unless
	// Guarded, the validators. It may hold credentials, like Requested.
	Mirrors []string
	// Guarded says the bytes are verified before the output is kept (a
	// checksum, piece hashes), so a mirror whose ETag or Last-Modified
	// differ from the primary's may still serve them: wrong bytes fail the
	// verification instead of reaching the output.
	Guarded bool
	// Pieces, when set, are digests of the resource's consecutive pieces
	// (a Metalink file's). A stage that fetches ranges verifies each
	// piece before it sends its bytes on, and takes a piece that fails
	// from another source; a PieceVerifier (hash.tap) verifies every
	// piece of the bytes it sees, whichever stage fetched them.
	Pieces *PieceHashes
	// Requested is the URL the download was asked for, before redirects:
	// the one that names it across runs (a redirect may carry a new
	// signature each time). It may hold credentials: never store or log
	// it unredacted.
	Requested string
	// Size is the length in bytes (the server's, or a Metalink's when the
	// server did not say), or -1 when unknown.
	Size int64
	// ETag and LastModified are the validators of the version being
	// downloaded; ranged requests send them in If-Range so that a changed
	// file is detected instead of mixed.
	ETag         string
	LastModified string
	// AcceptRanges is true when the server answers Range requests.
	AcceptRanges bool
	// FileName is the server's suggested name (Content-Disposition), already
	// reduced to a safe base name, or "".
	FileName string
	// ContentType is the media type the server reported.
	ContentType string
	// Digests are the server's digests of the whole representation, keyed
	// by lowercase algorithm ("sha-256", "sha-512"), hex encoded: from
	// Repr-Digest (RFC 9530) on any answer, or from Digest (RFC 3230) on a
	// full 200 or HEAD only, since on a 206 it may describe the part sent.
	// A hash stage verifies the download against them. Nil when none.
	Digests map[string]string

	// HTTP is how a stage reaches the resource: it sends a request of
	// the run through the run's client (transport, timeouts, redirect
	// policy, credentials kept at their origin) with the headers every
	// request carries (user agent, credentials) added where the request
	// has none of that name. httpx.Probe sets it; nil without a probe.
	HTTP Doer

	// ProbedAt is when the probe answered.
	ProbedAt time.Time

	// Prefetched, when not nil, is the probe's answer still open, whose
	// body holds the resource's bytes from offset 0 (an *httpx.Prefetched:
	// the stage that would ask for offset 0 takes it with
	// httpx.TakePrefetched instead, which saves a round trip). The runner
	// closes it, once, when no stage took it.
	Prefetched io.Closer
}

// Doer sends an HTTP request and returns the answer, as
// [net/http.Client.Do] does. It is safe for concurrent use.
type Doer interface {
	Do(req *http.Request) (*http.Response, error)
}

// SizeKnown reports whether the size of the resource is known.
func (r *Resource) SizeKnown() bool { return r != nil && r.Size >= 0 }

// Validator is the value for If-Range: the ETag when it is strong, otherwise
// Last-Modified, otherwise "" (no safe way to detect a change).
func (r *Resource) Validator() string {
	if r.ETag != "" && !isWeakETag(r.ETag) {
		return r.ETag
	}
	return r.LastModified
}

func isWeakETag(etag string) bool { return len(etag) >= 2 && etag[:2] == "W/" }
