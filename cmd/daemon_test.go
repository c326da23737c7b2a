package cmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDaemonUsage: dlflow daemon refuses what it cannot run, with the
// usage exit code and a line that says why, before opening anything.
func TestDaemonUsage(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--secret", "s"}, "--dir DIR is required"},
		{[]string{"--dir", dir}, "a secret is required"},
		{[]string{"--dir", dir, "--secret", "s", "--jobs", "-1"}, "--jobs must be 0 or more"},
		{[]string{"--dir", dir, "--secret", "s", "--max-per-host", "0"}, "--max-per-host must be at least 1"},
		{[]string{"--dir", dir, "--secret", "s", "--secret-file", empty}, "give one"},
		{[]string{"--dir", dir, "--secret-file", empty}, "is empty"},
		{[]string{"--dir", dir, "--secret", "s", "--allow-origin", "*"}, "--allow-origin"},
		{[]string{"--dir", dir, "--secret", "s", "extra"}, "takes no arguments"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"daemon"}, tc.args...), strings.NewReader(""), &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, %q; want %d and %q", tc.args, code, errb.String(), exitUsage, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".dlflow")); err == nil {
		t.Error("a refused daemon made its state directory")
	}
}
