package sinks

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"slices"

	"github.com/dlflow/dlflow/pipeline"
)

// The resume state is a small JSON file beside PATH.tmp (PATH.tmp.state)
// that says which bytes of PATH.tmp hold the resource, and which version of
// the resource they belong to. It records byte ranges, not piece numbers, so
// a rerun with other connections, piece sizes or another topology can still
// use it.
//
// It must never claim bytes that are not on disk: the sink fdatasyncs
// PATH.tmp and only then writes the ranges it had written before that sync.
// The file is replaced atomically (write a temporary, fsync, rename), so a
// crash leaves either the old or the new state, never a torn one. A crash
// loses at most the progress since the last checkpoint.

// StateVersion is the format of the resume states this package writes,
// recorded in Identity.Version; a state of another version is not trusted.
// Version 1 kept the URL in clear, credentials included; its states are
// started over, which removes them.
const StateVersion = 2

// stateVersion is StateVersion, under the name this package's code uses.
const stateVersion = StateVersion

// maxStateSize bounds what Resume reads. This sink writes at most
// maxStateRanges ranges, a few kilobytes; a larger state, from elsewhere,
// is read and coarsened up to this size, and is unreadable beyond it.
const maxStateSize = 16 << 20

// Identity is what a resume state records of the resource its bytes
// belong to: which URL was asked for and which version of the resource
// answered. A sink that keeps its partial work elsewhere (package
// sinks/s3 keeps it in a state object beside the object) records it too,
// so that every sink resumes by the same rules: see Resumable and
// Identity.Mismatch.
//
// It holds no secret, since it outlives failures: the URL asked for
// (Resource.Requested) may carry a password in its userinfo or a
// signature in its query (a presigned URL), so it is kept only redacted,
// for people, and hashed, for comparing. Its JSON form is the fields of a
// state file; a struct that embeds it keeps them at its top level.
type Identity struct {
	// Version is the format, StateVersion when written by this package.
	Version int `json:"version"`
	// URL is the URL asked for without userinfo, query and fragment: what
	// a person needs to tell which download this was.
	URL string `json:"url"`
	// URLSum is the hex SHA-256 of the whole URL asked for, salted with
	// the state's format, which a rerun compares with its own. It does not
	// give the URL back; a URL whose only unknown is a weak password could
	// still be found by trying passwords, which is why the file is 0600.
	URLSum       string `json:"url_sha256"`
	Size         int64  `json:"size"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// IdentityOf is the identity of res as a run records it: of version
// StateVersion, of the URL asked for (before redirects), with res's size
// and validators.
func IdentityOf(res *pipeline.Resource) Identity {
	u := requested(res)
	return Identity{
		Version:      stateVersion,
		URL:          redactURL(u),
		URLSum:       urlSum(u),
		Size:         res.Size,
		ETag:         res.ETag,
		LastModified: res.LastModified,
	}
}

// resumeState is the content of a state file: the identity of the
// resource, and the ranges of PATH.tmp that hold its bytes.
type resumeState struct {
	Identity
	Ranges [][2]int64 `json:"ranges"` // [start, end) pairs, sorted, disjoint
}

// stateFor is the state of a download of res, with no ranges yet.
func stateFor(res *pipeline.Resource) resumeState {
	return resumeState{Identity: IdentityOf(res)}
}

// requested is the URL that names the download across runs: the one asked
// for, before redirects (which may sign each run anew); the final URL when
// the caller did not say.
func requested(res *pipeline.Resource) string {
	if res.Requested != "" {
		return res.Requested
	}
	return res.URL
}

// redactURL is raw without what may be secret: the userinfo (not just its
// password, unlike httpx.RedactURL for logs: a user name can be a token
// too), the query (presigned URLs carry their signature and credential
// there) and the fragment. It is "" for a URL that does not parse.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = nil
	u.RawQuery, u.ForceQuery = "", false
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// urlSum is what a state records to compare URLs by.
func urlSum(raw string) string {
	sum := sha256.Sum256([]byte("dlflow resume state 2\x00" + raw))
	return hex.EncodeToString(sum[:])
}

// What a state may claim, and so how many requests a resume can cost:
// each present range that is not at an end of the file splits a missing
// range in two, and each missing range is at least one request. A state
// of 295,000 valid four-byte ranges (5.6 MB of JSON) once made a resume
// send 30,829 requests in a minute. So, when a state is read and when it
// is written, a present range shorter than minStateRange is dropped (its
// bytes are fetched again, for about the price of the request that
// skipping it would cost), except the one at offset 0, which splits
// nothing, and of the others at most maxStateRanges, the largest, are
// kept. Dropping a range only loses progress; it never claims a byte.
const (
	minStateRange  = 64 << 10
	maxStateRanges = 256
)

// coarsen returns the ranges of rs (sorted, disjoint) that a state keeps,
// in offset order, in a new slice.
func coarsen(rs []pipeline.Range) []pipeline.Range {
	out := make([]pipeline.Range, 0, min(len(rs), maxStateRanges+1))
	var big []pipeline.Range
	for _, r := range rs {
		switch {
		case r.Start == 0:
			out = append(out, r)
		case r.Len() >= minStateRange:
			big = append(big, r)
		}
	}
	if len(big) > maxStateRanges {
		slices.SortStableFunc(big, func(a, b pipeline.Range) int { return cmp.Compare(b.Len(), a.Len()) })
		big = big[:maxStateRanges]
		slices.SortFunc(big, func(a, b pipeline.Range) int { return cmp.Compare(a.Start, b.Start) })
	}
	return append(out, big...)
}

// Resumable reports why res cannot be resumed, or "" when it can: a
// resumed download asks for the missing ranges with If-Range, which needs
// a known size, range support and a validator to detect a changed file
// with. The reason is one lowercase clause, for a log line.
func Resumable(res *pipeline.Resource) string {
	switch {
	case res == nil || !res.SizeKnown() || res.Size == 0:
		return "the server does not say how large the file is"
	case !res.AcceptRanges:
		return "the server does not accept range requests"
	case res.Validator() == "":
		return "the server sends no strong ETag nor Last-Modified to detect a changed file"
	}
	return ""
}

// Mismatch says how res differs from the version of the resource id was
// recorded for, or "" when partial data recorded with id belongs to res.
// The size must be equal; each validator is compared when both sides have
// one, and at least one must be compared. The URL and Version are not
// compared: a caller that requires the same URL compares URLSum with
// IdentityOf(res)'s, and a reader of a state checks Version. The reason
// is one lowercase clause, for a log line.
func (st Identity) Mismatch(res *pipeline.Resource) string {
	if st.Size != res.Size {
		return fmt.Sprintf("size is now %d, was %d", res.Size, st.Size)
	}
	compared := false
	if st.ETag != "" && res.ETag != "" {
		if st.ETag != res.ETag {
			return fmt.Sprintf("ETag is now %s, was %s", res.ETag, st.ETag)
		}
		compared = true
	}
	if st.LastModified != "" && res.LastModified != "" {
		if st.LastModified != res.LastModified {
			return fmt.Sprintf("Last-Modified is now %q, was %q", res.LastModified, st.LastModified)
		}
		compared = true
	}
	if !compared {
		return "no validator (ETag, Last-Modified) in common to prove it is the same file"
	}
	return ""
}

// ranges returns the state's ranges, checked against its size.
func (st *resumeState) ranges() ([]pipeline.Range, error) {
	out := make([]pipeline.Range, 0, len(st.Ranges))
	prev := int64(-1)
	for _, r := range st.Ranges {
		if r[0] < 0 || r[1] <= r[0] || r[1] > st.Size || r[0] <= prev {
			return nil, fmt.Errorf("bad range [%d, %d) of %d bytes", r[0], r[1], st.Size)
		}
		prev = r[1]
		out = append(out, pipeline.Range{Start: r[0], End: r[1]})
	}
	return out, nil
}

func (st *resumeState) setRanges(rs []pipeline.Range) {
	st.Ranges = st.Ranges[:0]
	for _, r := range rs {
		st.Ranges = append(st.Ranges, [2]int64{r.Start, r.End})
	}
}

// errNoState is readState's error when there is no state file.
var errNoState = errors.New("no resume state")

// readState reads and checks the state file at path. It opens only a
// regular file, without following a symlink or blocking (see openRegular).
func readState(path string) (*resumeState, error) {
	f, err := openRegular(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoState
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxStateSize {
		return nil, fmt.Errorf("%s is larger than %v", path, pipeline.ByteSize(maxStateSize))
	}
	var st resumeState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: format version %d, want %d", path, st.Version, stateVersion)
	}
	if _, err := st.ranges(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// writeState replaces the state file at path atomically: the new content
// goes to path.new, made afresh with mode 0600 (only its owner may read
// even what is left of the URL), is fsynced, and is renamed over path. The
// directory is not synced: a rename lost in a crash leaves the previous
// state, which claims less but nothing untrue.
func writeState(path string, st *resumeState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + newSuffix
	// A leftover keeps its mode and links through O_TRUNC; a new file
	// has only the mode asked for.
	if _, err := removeRegular(tmp); err != nil {
		return fmt.Errorf("write resume state: %w", err)
	}
	f, err := openRegular(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write resume state: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write resume state: %w", err)
	}
	return nil
}

// removeState deletes the state file and any leftover of writeState,
// reporting whether there was a state file. It removes regular files
// only: anything else there is not the sink's, and is an error.
func removeState(path string) (bool, error) {
	if _, err := removeRegular(path + newSuffix); err != nil {
		return false, err
	}
	return removeRegular(path)
}

// removeRegular removes path when it is a regular file, reporting whether
// it was there; anything else there is a *notRegularError.
func removeRegular(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, &notRegularError{Path: path, Mode: fi.Mode()}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}
