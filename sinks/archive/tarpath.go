package archive

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// ErrUnsafeMember is what an archive member that would write outside the
// extraction directory, or make something there that is not a file, a
// directory or a link inside it, wraps.
var ErrUnsafeMember = errors.New("unsafe archive member")

// MemberError names the archive member an extraction failed on.
type MemberError struct {
	Member string // the member's name as the archive has it
	Err    error
}

// Error names the member shortened (see shortName), and shortens a long
// message too: a system error quotes the path it failed on, which may be
// the member's whole name.
func (e *MemberError) Error() string {
	msg := e.Err.Error()
	if len(msg) > 2*maxShown {
		msg = shorten(msg, maxShown, maxShown)
	}
	return fmt.Sprintf("archive member %q: %s", shortName(e.Member), msg)
}
func (e *MemberError) Unwrap() error { return e.Err }

// maxShown bounds what a message shows of a name.
const maxShown = 150

// shortName is a member's name as a message shows it: whole up to
// maxShown bytes, else its first 100 and last 50 bytes around an
// ellipsis. An archive may hold a name of a megabyte (a member 100,000
// directories deep), which would make a log line of that size.
func shortName(name string) string {
	if len(name) <= maxShown {
		return name
	}
	return shorten(name, 100, 50)
}

// shorten keeps about the first head and last tail bytes of s, cut at
// UTF-8 character boundaries, around an ellipsis.
func shorten(s string, head, tail int) string {
	if len(s) <= head+tail {
		return s
	}
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	end := len(s) - tail
	for end < len(s) && !utf8.RuneStart(s[end]) {
		end++
	}
	return s[:head] + "…" + s[end:]
}

// unsafeError is an ErrUnsafeMember with its reason.
type unsafeError struct{ reason string }

func (e *unsafeError) Error() string        { return ErrUnsafeMember.Error() + ": " + e.reason }
func (e *unsafeError) Is(target error) bool { return target == ErrUnsafeMember }

func unsafeMember(format string, args ...any) error {
	return &unsafeError{reason: fmt.Sprintf(format, args...)}
}

// linkError words err, a problem with a hard link's target, for the link.
func linkError(target string, err error) error {
	var ue *unsafeError
	if errors.As(err, &ue) {
		return unsafeMember("hard link to %q: %s", target, ue.reason)
	}
	return fmt.Errorf("hard link to %q: %w", target, err)
}

// memberPath turns an archive member's name, untrusted input, into the
// slash-separated path relative to the extraction directory that the
// member is written at, or "." for the directory itself ("./" in an
// archive made with tar -C dir .). It refuses an absolute name, one that
// climbs out with "..", and one that is not a local path on this system
// (a volume name or a reserved name on Windows). The name is cleaned
// lexically ("a/../b" is "b"), and the cleaned name is what is created:
// the system never resolves the archive's "..".
func memberPath(name string) (string, error) {
	switch {
	case name == "":
		return "", unsafeMember("empty name")
	case strings.IndexByte(name, 0) >= 0:
		return "", unsafeMember("the name holds a NUL byte")
	case path.IsAbs(name) || filepath.IsAbs(filepath.FromSlash(name)) || filepath.VolumeName(filepath.FromSlash(name)) != "":
		return "", unsafeMember("absolute path")
	}
	clean := path.Clean(name)
	switch {
	case clean == ".":
		return ".", nil
	case clean == ".." || strings.HasPrefix(clean, "../"):
		return "", unsafeMember("the path leaves the directory (..)")
	case !filepath.IsLocal(filepath.FromSlash(clean)):
		return "", unsafeMember("not a local path on this system")
	}
	return clean, nil
}

// symlinkTarget checks the target of a symlink member at member (a path
// from memberPath) and returns the target to create: cleaned, so that it
// holds ".." only at its start. It refuses an absolute target and one
// that, resolved from the member's directory, leaves the extraction
// directory.
//
// Cleaning is what makes the lexical check the system's answer too. The
// leading ".." climb from the member's directory through real directories
// (the extraction never writes through a symlink, nor replaces a
// directory with one), and what follows only descends, through names
// that are directories or symlinks checked the same way. The raw target
// could hold "s/.." where s is a symlink, which the system resolves from
// s's target, not from the member's directory.
func symlinkTarget(member, target string) (string, error) {
	switch {
	case target == "":
		return "", unsafeMember("symlink with an empty target")
	case strings.IndexByte(target, 0) >= 0:
		return "", unsafeMember("the symlink target holds a NUL byte")
	case path.IsAbs(target) || filepath.IsAbs(filepath.FromSlash(target)) || filepath.VolumeName(filepath.FromSlash(target)) != "":
		return "", unsafeMember("symlink to an absolute path %q", target)
	}
	clean := path.Clean(target)
	resolved := path.Join(path.Dir(member), clean)
	switch {
	case resolved == ".." || strings.HasPrefix(resolved, "../"):
		return "", unsafeMember("symlink to %q leaves the directory", target)
	case resolved != "." && !filepath.IsLocal(filepath.FromSlash(resolved)):
		return "", unsafeMember("symlink to %q is not a local path on this system", target)
	}
	return clean, nil
}
