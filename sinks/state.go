package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

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

// stateVersion is the format of the state file; a file of another version
// is not trusted.
const stateVersion = 1

// maxStateSize bounds what Start reads: a state lists at most a few
// thousand ranges, so anything larger is not ours.
const maxStateSize = 16 << 20

// resumeState is the content of a state file.
type resumeState struct {
	Version      int        `json:"version"`
	URL          string     `json:"url"`
	Size         int64      `json:"size"`
	ETag         string     `json:"etag,omitempty"`
	LastModified string     `json:"last_modified,omitempty"`
	Ranges       [][2]int64 `json:"ranges"` // [start, end) pairs, sorted, disjoint
}

// stateFor is the state of a download of res, with no ranges yet.
func stateFor(res *pipeline.Resource) resumeState {
	return resumeState{
		Version:      stateVersion,
		URL:          res.URL,
		Size:         res.Size,
		ETag:         res.ETag,
		LastModified: res.LastModified,
	}
}

// resumable reports why res cannot be resumed, or "" when it can: a resumed
// download asks for the missing ranges with If-Range, which needs a known
// size, range support and a validator to detect a changed file with.
func resumable(res *pipeline.Resource) string {
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

// mismatch says how the resource differs from the one the state was
// written for, or "" when the partial data belongs to it. The size must be
// equal; each validator is compared when both sides have one, and at least
// one must be compared.
func (st *resumeState) mismatch(res *pipeline.Resource) string {
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

// readState reads and checks the state file at path. It does not follow a
// symlink.
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
// goes to path.new, is fsynced, and is renamed over path. The directory is
// not synced: a rename lost in a crash leaves the previous state, which
// claims less but nothing untrue.
func writeState(path string, st *resumeState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".new"
	f, err := openRegular(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
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
// reporting whether there was a state file.
func removeState(path string) (bool, error) {
	_ = os.Remove(path + ".new")
	err := os.Remove(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}
