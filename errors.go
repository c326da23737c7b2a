package dlflow

import (
	"fmt"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/stages"
)

// The errors a caller tells apart, all reachable from this package: a
// program needs no other import to branch on why a download failed.
//
//	var he *dlflow.HTTPError      // errors.As: a status the download cannot use (he.Status)
//	errors.Is(err, dlflow.ErrNotFound) // a 404 or 410: asking again will not help
//	var ce *dlflow.ChecksumError  // errors.As: the bytes fail the expected digest
//	errors.Is(err, dlflow.ErrCorrupt)  // the bytes are known wrong (a checksum or piece hash)
//	errors.Is(err, dlflow.ErrDiskFull) // the output's file system is full
type (
	// HTTPError is an answer whose status the download cannot use.
	HTTPError = httpx.HTTPError
	// ChecksumError is a digest that does not match: Algorithm, Want,
	// Got, and where Want came from (Source).
	ChecksumError = stages.ChecksumError
)

var (
	// ErrNotFound is what a 404 (Not Found) or 410 (Gone) answer is, for
	// errors.Is.
	ErrNotFound = httpx.ErrNotFound
	// ErrCorrupt is what an error wraps when the downloaded bytes are
	// known to be wrong (a *ChecksumError, a piece that fails its hash):
	// the partial file was thrown away, and a retry starts over.
	ErrCorrupt = pipeline.ErrCorrupt
)

// ErrOutputExists is what a download's error wraps when its output is
// already there and the request asked neither to overwrite it nor to skip
// it. Test for it with errors.Is.
var ErrOutputExists = sinks.ErrOutputExists

// ErrForeignTmp is what a download's error wraps when the partial file
// beside its output (Path.tmp) holds bytes that dlflow did not leave there
// (no resume state beside it) and the request did not ask to overwrite:
// starting over would destroy them. Test for it with errors.Is.
var ErrForeignTmp = sinks.ErrForeignTmp

// ErrNoBucket is what a download's error wraps when the bucket of its
// s3:// output does not exist. Test for it with errors.Is.
var ErrNoBucket = sinks.ErrNoBucket

// ErrBusy is what a download's error wraps when another download (in this
// process or another) is writing the same output: its Path.tmp is locked.
// Nothing of the other download is touched. Test for it with errors.Is.
var ErrBusy = sinks.ErrBusy

// RequestError is a request refused before any I/O: one of its fields has a
// value the library cannot use. The CLI reports it as a usage error.
type RequestError struct {
	// Field names the Request field at fault: "URL", "Path", "Dir",
	// "Connections", "Header", "Overwrite", "Topology", "Writer", "Extract".
	Field string
	Err   error
}

func (e *RequestError) Error() string { return e.Err.Error() }
func (e *RequestError) Unwrap() error { return e.Err }

func requestErrorf(field, format string, args ...any) error {
	return &RequestError{Field: field, Err: fmt.Errorf(format, args...)}
}

// OutputClaimedError is the error of a download of a batch whose output
// is already the output of another download of the same batch: two
// downloads writing one file would corrupt it.
type OutputClaimedError struct {
	Path string
	// By is the request that claimed Path first.
	By *Request
}

func (e *OutputClaimedError) Error() string {
	return fmt.Sprintf("%s is already the output of another download of the batch", e.Path)
}

// ProbeError is the error of a download whose probe (the first request,
// which learns the size, range support and validators) failed; Err says
// why.
type ProbeError struct {
	URL string // redacted
	Err error
}

func (e *ProbeError) Error() string { return "probe: " + e.Err.Error() }
func (e *ProbeError) Unwrap() error { return e.Err }
