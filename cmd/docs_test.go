package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docs/CONFIG.md is generated from the registered stage types and the
// config's declarations; this test fails when it no longer matches them.
func TestConfigReferenceUpToDate(t *testing.T) {
	path := filepath.Join("..", "docs", "CONFIG.md")
	const regenerate = "regenerate it with: go run ./cmd/run stages --markdown > docs/CONFIG.md"
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; %s", err, regenerate)
	}
	res := runCLI(t, "stages", "--markdown")
	if res.code != exitOK || res.stderr != "" {
		t.Fatalf("dlflow stages --markdown: exit %d, stderr %q", res.code, res.stderr)
	}
	if res.stdout == string(want) {
		return
	}
	gotLines, wantLines := strings.Split(res.stdout, "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		var g, w string
		if i < len(gotLines) {
			g = gotLines[i]
		}
		if i < len(wantLines) {
			w = wantLines[i]
		}
		if g != w {
			t.Fatalf("docs/CONFIG.md is stale; %s\nfirst difference at line %d:\n  file:      %q\n  generated: %q", regenerate, i+1, w, g)
		}
	}
}
