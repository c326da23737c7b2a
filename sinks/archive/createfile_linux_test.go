package archive

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCreateFileLinux: the descriptor path gives a file its bytes, the
// mode asked under a umask that would strip it, and its mtime; it never
// replaces a file nor follows a symlink (a dangling one is not created
// through).
func TestCreateFileLinux(t *testing.T) {
	_, dirs := openDirs(t, "a")
	d := dirs["a"]
	if d.fd == nil {
		t.Fatal("no descriptor: the Linux path is not taken")
	}
	dir := filepath.Join(d.root.Name())
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	data := make([]byte, 100<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := createFile(d, "f", 0o755, data, mtime); err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(filepath.Join(dir, "f"))
	if err != nil || st.Mode() != 0o755 || !st.ModTime().Equal(mtime) || st.Size() != int64(len(data)) {
		t.Fatalf("f: %v (err %v), want -rwxr-xr-x, %d bytes, %v", st, err, len(data), mtime)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(got) != string(data) {
		t.Fatalf("f: other bytes (err %v)", err)
	}
	if err := createFile(d, "f", 0o644, []byte("x"), mtime); !errors.Is(err, fs.ErrExist) {
		t.Errorf("f again: %v, want it existing", err)
	}
	if err := os.Symlink("target", filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	if err := createFile(d, "s", 0o644, []byte("x"), mtime); !errors.Is(err, fs.ErrExist) {
		t.Errorf("through a symlink: %v, want it existing", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "target")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the symlink's target was created: %v", err)
	}
	if err := createFile(d, "empty", 0o600, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(filepath.Join(dir, "empty")); err != nil || st.Mode() != 0o600 || st.Size() != 0 {
		t.Errorf("empty: %v (err %v)", st, err)
	}
}
