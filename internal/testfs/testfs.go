// Package testfs mounts real file systems for tests: a small tmpfs to fill
// up, a read-only one, an ext4 image on a loop device. Mounting needs root;
// without it the test is skipped, never faked.
package testfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Mount mounts a file system of type fstype with the mount options opts at
// a new directory, unmounted when the test ends, and returns the directory.
// source is what to mount (an image file for a loop mount); it defaults to
// fstype. The test is skipped when the mount fails (not root, no mount).
func Mount(t testing.TB, fstype, opts string, source ...string) string {
	t.Helper()
	dir := t.TempDir()
	src := fstype
	if len(source) > 0 {
		src = source[0]
	}
	out, err := exec.Command("mount", "-t", fstype, "-o", opts, src, dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a %s (%s) here, needs root: %v: %s", fstype, opts, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// MountExt4 mounts a fresh ext4 file system of size bytes (an image file on
// a loop device), or skips the test when it cannot.
func MountExt4(t testing.TB, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("cannot make an ext4 image here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return Mount(t, "ext4", "loop", img)
}
