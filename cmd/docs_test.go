package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	// A stage type that is not built in, registered in the default
	// registry of this test binary as a custom binary would register it:
	// the reference must not list it.
	_ "github.com/dlflow/dlflow/examples/customstage"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/sinks/archive"
	"github.com/dlflow/dlflow/sinks/s3"
	"github.com/dlflow/dlflow/stages"
	"github.com/dlflow/dlflow/stages/decompress"
)

// builtinRegistry holds the built-in stage types alone: those the release
// binary ships (the backends it imports included) and docs/CONFIG.md
// documents.
func builtinRegistry(t *testing.T) *pipeline.Registry {
	t.Helper()
	reg := pipeline.NewRegistry()
	for _, register := range []func(*pipeline.Registry) error{stages.Register, sinks.Register, decompress.Register, s3.Register, archive.Register} {
		if err := register(reg); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// docs/CONFIG.md is generated from the built-in stage types and the
// config's declarations; this test fails when it no longer matches them.
// Stage types that a binary adds (this one adds throttle.tap) are not
// part of it.
func TestConfigReferenceUpToDate(t *testing.T) {
	if !slices.Contains(pipeline.DefaultRegistry.Types(), "throttle.tap") {
		t.Fatal("the default registry lacks throttle.tap: this test no longer proves that extra stage types leave the reference alone")
	}
	path := filepath.Join("..", "docs", "CONFIG.md")
	const regenerate = "regenerate it with: go run ./cmd/run stages --markdown > docs/CONFIG.md"
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; %s", err, regenerate)
	}
	var stdout, stderr bytes.Buffer
	if code := stagesWith(builtinRegistry(t), []string{"--markdown"}, &stdout, &stderr); code != exitOK || stderr.Len() != 0 {
		t.Fatalf("dlflow stages --markdown: exit %d, stderr %q", code, stderr.String())
	}
	got := stdout.String()
	if got == string(want) {
		return
	}
	gotLines, wantLines := strings.Split(got, "\n"), strings.Split(string(want), "\n")
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
