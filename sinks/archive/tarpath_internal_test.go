package archive

import (
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// inside reports whether rel, joined to a directory, stays in it.
func inside(base, rel string) bool {
	full := filepath.Join(base, filepath.FromSlash(rel))
	r, err := filepath.Rel(base, full)
	return err == nil && filepath.IsLocal(r) || r == "."
}

// FuzzMemberPath: whatever the archive names and links to, an accepted
// member path and an accepted symlink target, resolved from the member's
// directory, stay inside the extraction directory, hold ".." only at the
// start of a target, and are never absolute.
func FuzzMemberPath(f *testing.F) {
	for _, seed := range [][2]string{
		{"a/b", "../c"}, {"../../pwned.txt", "x"}, {"/tmp/x", "/etc"}, {"evil", "../../"},
		{"./", "."}, {"a/../b", "b/../../c"}, {"a//b/./c", "./d"}, {`a\..\..\x`, `..\..`},
		{"C:/x", "C:x"}, {"a/b/c", "../../.."}, {"..", ".."}, {"a\x00b", "c"},
	} {
		f.Add(seed[0], seed[1])
	}
	const base = "/extract/dir"
	f.Fuzz(func(t *testing.T, name, target string) {
		member, err := memberPath(name)
		if err != nil {
			return
		}
		if path.IsAbs(member) || strings.HasPrefix(member, "../") || member == ".." || !inside(base, member) {
			t.Fatalf("memberPath(%q) = %q, which leaves the directory", name, member)
		}
		if member == "." {
			return
		}
		link, err := symlinkTarget(member, target)
		if err != nil {
			return
		}
		resolved := path.Join(path.Dir(member), link)
		if path.IsAbs(link) || !inside(base, resolved) {
			t.Fatalf("symlinkTarget(%q, %q) = %q, which resolves to %q, outside", member, target, link, resolved)
		}
		named := false
		for _, part := range strings.Split(link, "/") {
			if part == ".." && named {
				t.Fatalf("symlinkTarget(%q, %q) = %q: a .. after a name", member, target, link)
			}
			named = named || part != ".."
		}
	})
}

func TestMemberPath(t *testing.T) {
	for name, want := range map[string]string{
		"./": ".", "a/../b": "b", "./a//b/": "a/b", "../x": "", "/x": "", "a/../../x": "", "": "",
	} {
		got, err := memberPath(name)
		if (err != nil) != (want == "") || got != want && want != "" {
			t.Errorf("memberPath(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, tc := range []struct{ member, target, want string }{
		{"a/l", "../b", "../b"}, {"a/l", "./x/../y", "y"}, {"a/l", "../../b", ""}, {"l", "/etc", ""}, {"l", ".", "."},
		{"a/b/l", "c/../../../d", "../../d"},
	} {
		got, err := symlinkTarget(tc.member, tc.target)
		if (err != nil) != (tc.want == "") || got != tc.want && tc.want != "" {
			t.Errorf("symlinkTarget(%q, %q) = %q, %v; want %q", tc.member, tc.target, got, err, tc.want)
		}
	}
}
