package origin

import "sync/atomic"

// Faults describes injected misbehaviour. The zero value means no fault.
// Install with Server.SetFaults; every call resets the request counters and
// per-fault budgets below.
//
// "GET number" means the 1-based sequence number of GET requests that reached
// the file (after redirects, including FailStatus answers) since the last
// SetFaults. Budgeted faults (ResetRequests, FailCount, DropRequests,
// ShortBodyRequests) are consumed independently in that order of
// precedence: with FailCount=1 and DropRequests=1 the first GET fails, the
// second is dropped, the third succeeds; with ResetRequests=1 and
// FailCount=1 the first request is reset and the second fails.
type Faults struct {
	// Status, when nonzero, answers every request (any path, any method)
	// with this status and a short text body (e.g. 401, 404, 410).
	Status int

	// Redirects makes the file path answer a chain of this many 302
	// redirects: Path -> /r/1 -> /r/2 -> ... -> /r/N, and /r/N serves the
	// file. /r/* paths answer 404 when Redirects is 0.
	Redirects int
	// RedirectTo, when set, makes the file path answer 302 with this
	// absolute URL as Location (cross-host or https->http tests). It takes
	// precedence over Redirects.
	RedirectTo string

	// NoHEAD, when nonzero, is the status answered to HEAD requests
	// (403, 405 or 501 are typical).
	NoHEAD int

	// FailStatus and FailCount: the first FailCount GET requests answer
	// FailStatus (e.g. 503) with a small text body. FailAfter GETs are
	// served first (FailAfter 1 spares a download's probe and fails its
	// first GET after it).
	FailStatus int
	FailCount  int
	FailAfter  int
	// FailAnyMethod makes FailStatus and FailCount count requests of the
	// file of any method, HEAD included, not GETs only: FailCount=2 fails a
	// HEAD and the GET after it (a server that is down for both).
	FailAnyMethod bool
	// RetryAfter, when set, is sent as the Retry-After header on FailStatus
	// answers (e.g. "1" or an HTTP date).
	RetryAfter string

	// ResetRequests: the first ResetRequests requests of the file, of any
	// method, are reset: once the request is read, the connection is
	// closed with a TCP RST (SO_LINGER 0) before any byte of an answer, so
	// the client sees "connection reset by peer" (or EOF) instead of a
	// response. A reset GET does not count as a GET number.
	ResetRequests int

	// IgnoreRange answers any Range request with 200 and the whole body
	// (Accept-Ranges: bytes is still advertised).
	IgnoreRange bool
	// WrongContentRange answers 206 for a range a-b but with the range
	// shifted by one byte (a+1..b+1, or a-1..b-1 when b is the last byte)
	// declared in Content-Range, and the body of that shifted range. A range
	// covering the whole file is declared as 1-(size-1).
	WrongContentRange bool

	// IgnoreIfRange answers a Range request with 206 and the current
	// version's bytes even when its If-Range names another version (a
	// server, or a cache, that does not implement If-Range). With
	// ChangeETagAfter, a client that does not compare the validators of
	// each 206 with those it started with mixes versions.
	IgnoreIfRange bool
	// WrongTotal, when nonzero, is added to the total that every 206's
	// Content-Range declares ("bytes a-b/SIZE+WrongTotal"); the range and
	// body are right. A server that lies about the file's length.
	WrongTotal int64

	// SilentAfter and SilentCount: GETs number SilentAfter+1 to
	// SilentAfter+SilentCount get no answer at all: the request is read
	// and the connection held open, silent, until the client gives up or
	// the server closes (a stuck backend behind a proxy).
	SilentAfter int
	SilentCount int

	// StallAfter and StallRequests: on the first StallRequests GETs
	// (budgeted, after DropRequests and ShortBodyRequests) the body stops
	// after StallAfter bytes (at most all but the last), and the
	// connection is held open, silent, until the client gives up or the
	// server closes. An empty body does not stall.
	StallAfter    int64
	StallRequests int

	// NoLength sends no Content-Length (chunked transfer encoding) and no
	// Accept-Ranges, and ignores Range: always 200 with the whole body.
	NoLength bool
	// Gzip answers with Content-Encoding: gzip regardless of
	// Accept-Encoding: 200, the whole file gzip-compressed, chunked (no
	// Content-Length), no Accept-Ranges, Range ignored (like nginx with
	// gzip on).
	Gzip bool

	// ShortBody, when > 0, declares the normal Content-Length on GET 200/206
	// answers but closes the connection after sending ShortBody fewer body
	// bytes. It applies to the first ShortBodyRequests such GETs (0 = all).
	ShortBody         int64
	ShortBodyRequests int

	// DropAfter and DropRequests: on the first DropRequests GET requests
	// (0 = all, when DropAfter > 0), send DropAfter body bytes then close the
	// connection abruptly (hijack + close), so the client sees an unexpected
	// EOF. DropRequests > 0 with DropAfter 0 drops right after the header.
	DropAfter    int64
	DropRequests int

	// ChangeETagAfter, when > 0: once this many GETs have been served, the
	// resource changes: new ETag, Last-Modified one hour later and content
	// generated from Seed+1 (Size unchanged), so If-Range stops matching.
	// HEAD reports the changed resource from then on too.
	ChangeETagAfter int
	// ChangeAgain, with ChangeETagAfter, makes the resource change again
	// after every further ChangeETagAfter GETs: version k (content Seed+k,
	// a new ETag, Last-Modified k hours later) is served once
	// k*ChangeETagAfter GETs have been. It models a file rewritten all the
	// time, which a download must give up on rather than mix.
	ChangeAgain bool

	// ContentDisposition, when set, is sent as the Content-Disposition
	// header of every file response (HEAD, 200 and 206), e.g.
	// `attachment; filename="../../etc/passwd"`: untrusted input a client
	// must reduce to a safe base name.
	ContentDisposition string

	// HEADBody makes every HEAD answer of the file carry a body anyway:
	// after the header, the Content-Length bytes a GET would send, then
	// the connection is closed. A Go client has already taken the answer
	// and put the connection in its idle pool, so it finds bytes nobody
	// asked for and logs "Unsolicited response received on idle HTTP
	// channel" through the standard log package.
	HEADBody bool
	// ExtraBytes, when set, is sent after every complete GET body of the
	// file (200 or 206), beyond its Content-Length, and then the
	// connection is closed: a server that miscounts its length. A Go client
	// sees the same unsolicited bytes as with HEADBody.
	ExtraBytes string

	// Trickle, when > 0, is a bytes/sec rate (replacing RateLimit) applied
	// to one kind of request: the TrickleRequest-th GET when TrickleRequest
	// > 0, otherwise every GET whose body starts at offset TrickleOffset.
	Trickle        int64
	TrickleOffset  int64
	TrickleRequest int

	// ReprDigest, when "sha-256" or "sha-512", sends Repr-Digest (RFC 9530)
	// with that digest of the whole resource on every file answer (200,
	// 206 and HEAD). Digest does the same with the older Digest header
	// (RFC 3230). WrongDigest makes both declare the digest of other
	// content (the resource generated from Seed+1).
	ReprDigest  string
	Digest      string
	WrongDigest bool
}

// faultState is a Faults value plus its counters; replaced atomically by
// SetFaults.
type faultState struct {
	f         Faults
	gets      atomic.Int64
	failLeft  atomic.Int64
	dropLeft  atomic.Int64
	shortLeft atomic.Int64
	resetLeft atomic.Int64
	stallLeft atomic.Int64
}

func newFaultState(f Faults) *faultState {
	fs := &faultState{f: f}
	fs.failLeft.Store(int64(f.FailCount))
	fs.dropLeft.Store(int64(f.DropRequests))
	fs.shortLeft.Store(int64(f.ShortBodyRequests))
	fs.resetLeft.Store(int64(f.ResetRequests))
	fs.stallLeft.Store(int64(f.StallRequests))
	return fs
}

// take consumes one unit of a budget, reporting whether one was available.
func take(budget *atomic.Int64) bool { return budget.Add(-1) >= 0 }
