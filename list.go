package dlflow

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// MaxListLine is the longest line ReadList accepts, URL and name.
const MaxListLine = 1 << 20

// ListEntry is one download of a list: a line "URL [NAME]".
type ListEntry struct {
	// Line is the entry's line number in the list, from 1.
	Line int
	// URL is the URL as written.
	URL string
	// Name is the output name as written (the rest of the line after the
	// URL and the blanks that follow it, so it may hold spaces), or "" to
	// name it after the server's answer. It is untrusted: give it to a
	// Request as Path with Dir set, which keeps it inside Dir.
	Name string
}

// Shard picks every Count-th entry of a list, from the Index-th (counting
// entries, not lines, from 0), so that Count machines given the same list
// and the indexes 0 to Count-1 download each entry exactly once. The zero
// Shard is the whole list.
type Shard struct {
	Index, Count int
}

// ParseShard reads "K/N" (entries K, K+N, K+2N...: 0 <= K < N), or "N"
// alone, which takes K from $JOB_COMPLETION_INDEX, the index a Kubernetes
// Indexed Job gives each of its pods.
func ParseShard(s string) (Shard, error) {
	k, n, both := strings.Cut(strings.TrimSpace(s), "/")
	if !both {
		k, n = os.Getenv("JOB_COMPLETION_INDEX"), k
		if k == "" {
			return Shard{}, fmt.Errorf("shard %q: want K/N, or N with $JOB_COMPLETION_INDEX set (a Kubernetes Indexed Job)", s)
		}
	}
	index, ierr := strconv.Atoi(strings.TrimSpace(k))
	count, cerr := strconv.Atoi(strings.TrimSpace(n))
	switch {
	case ierr != nil || cerr != nil:
		return Shard{}, fmt.Errorf("shard %q: want K/N with whole numbers, such as 0/4", s)
	case count < 1 || index < 0 || index >= count:
		return Shard{}, fmt.Errorf("shard %q: want 0 <= K < N", s)
	}
	return Shard{Index: index, Count: count}, nil
}

// takes reports whether the entry numbered n (from 0) is the shard's.
func (s Shard) takes(n int) bool { return s.Count <= 1 || n%s.Count == s.Index }

// ErrListLineTooLong is what ReadList's error wraps for a line longer than
// MaxListLine.
var ErrListLineTooLong = errors.New("list line too long")

// ReadList reads a list of downloads from r, one "URL [NAME]" a line; blank
// lines, lines starting with # and a leading byte order mark are skipped.
// It calls fn for each entry of the shard, in order, until r ends or fn
// returns false, and holds no more than one line at a time: a list of any
// length streams through.
func ReadList(r io.Reader, shard Shard, fn func(ListEntry) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxListLine)
	entry := 0
	for n := 1; sc.Scan(); n++ {
		e, ok := parseListLine(n, sc.Text())
		if !ok {
			continue
		}
		entry++
		if shard.takes(entry-1) && !fn(e) {
			return nil
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("%w (more than %d bytes)", ErrListLineTooLong, MaxListLine)
	}
	return sc.Err()
}

// parseListLine reads "URL [NAME]"; ok is false for a blank line or a
// comment.
func parseListLine(n int, line string) (e ListEntry, ok bool) {
	line = strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
	if line == "" || strings.HasPrefix(line, "#") {
		return ListEntry{}, false
	}
	e = ListEntry{Line: n, URL: line}
	if i := strings.IndexFunc(line, unicode.IsSpace); i >= 0 {
		e.URL, e.Name = line[:i], strings.TrimSpace(line[i:])
	}
	return e, true
}
