package cmd

import (
	"regexp"
	"testing"
)

// TestBenchMaxRSS: --max-rss fails the bench (exit 1) and names the cell
// when a dlflow cell's peak RSS is above it, and lets it pass when not; a
// size it cannot parse is a usage error.
func TestBenchMaxRSS(t *testing.T) {
	benchEnv(t)
	args := []string{"bench", "--size", "1MiB", "--runs", "1", "-c", benchExample("stream.yaml")}
	res := runCLI(t, append(args, "--max-rss", "1MiB")...)
	line := regexp.MustCompile(`(?m)^bench: plain: stream: peak RSS ~?[0-9.]+MiB, above --max-rss 1MiB$`)
	if res.code != exitFailed || !line.MatchString(res.stderr) {
		t.Errorf("--max-rss 1MiB: exit %d, want %d; stderr:\n%s", res.code, exitFailed, res.stderr)
	}
	res = runCLI(t, append(args, "--max-rss", "4GiB")...)
	if res.code != exitOK {
		t.Errorf("--max-rss 4GiB: exit %d, want %d; stderr:\n%s", res.code, exitOK, res.stderr)
	}
	res = runCLI(t, append(args, "--max-rss", "lots")...)
	if res.code != exitUsage {
		t.Errorf("--max-rss lots: exit %d, want %d; stderr:\n%s", res.code, exitUsage, res.stderr)
	}
}
