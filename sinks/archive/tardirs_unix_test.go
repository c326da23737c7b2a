//go:build unix

package archive_test

import (
	"archive/tar"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dlflow/dlflow/internal/testtar"
)

// Directories get their members' modes, with rwx kept for the owner (a
// directory given twice the last one's), whatever the umask, and files
// still go into a directory whose mode denies its owner write; one made
// for a member below it without a member of its own is 0755 less the
// umask, as mkdir -p makes it; DIR gets "./"'s.
func TestTarExtractDirModes(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	data := testtar.Tar(t, []testtar.Entry{
		{Name: "./", Type: tar.TypeDir, Mode: 0o751},
		{Name: "a/", Type: tar.TypeDir, Mode: 0o750},
		{Name: "a/ro/", Type: tar.TypeDir, Mode: 0o555},
		{Name: "a/ro/f", Mode: 0o644, Body: []byte("in a read-only directory")},
		{Name: "c/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "c/f", Mode: 0o644, Body: []byte("c")},
		{Name: "c/", Type: tar.TypeDir, Mode: 0o710},
		{Name: "x/y/f", Mode: 0o644, Body: []byte("below implicit directories")},
	})
	dir := filepath.Join(t.TempDir(), "out")
	if err := extractRun(t, t.Context(), data, 512, extractCfg(dir)); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o751, "a": 0o750, "a/ro": 0o755, "c": 0o710, "x": 0o700, "x/y": 0o700} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !st.IsDir() || st.Mode().Perm() != want {
			t.Errorf("%s: %v (err %v), want a directory %v", name, st.Mode(), err, want)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "a/ro/f")); err != nil || string(got) != "in a read-only directory" {
		t.Errorf("a/ro/f: %q, %v", got, err)
	}
}
