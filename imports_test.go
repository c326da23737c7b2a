package dlflow_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
	"github.com/dlflow/dlflow/sinks/archive"
	"github.com/dlflow/dlflow/sinks/s3"
	"github.com/dlflow/dlflow/stages"
	"github.com/dlflow/dlflow/stages/decompress"
)

const module = "github.com/dlflow/dlflow"

// backendPkgs are the packages of stage types that register when imported
// and that the library leaves out (see dlflow.MissingBackendError).
var backendPkgs = []string{"sinks/s3", "sinks/archive", "stages/decompress"}

// The import rules of docs/ARCHITECTURE.md: each holds the layering that
// lets a custom stage import pipeline alone, keeps config free of stages
// and flags, and keeps the CLI a shell over the library.
func TestImportRules(t *testing.T) {
	direct := goList(t, "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	deps := goList(t, "{{.ImportPath}} {{join .Deps \" \"}}", "./...")
	type rule struct {
		from   string // package, or prefix ending in "/..."
		never  []string
		deps   bool // transitively, not only direct imports
		reason string
	}
	rules := []rule{
		{"cmd/...", []string{"stages", "sinks"}, false, "the CLI asks pipeline interfaces and the library, never a built-in stage"},
		{"cmd/...", []string{"internal/..."}, true, "test harnesses stay out of the release binary"},
		{".", []string{"cmd/...", "bench/..."}, true, "the library does not know its command line nor the bench"},
		{"config", []string{"stages", "sinks", "github.com/spf13/pflag"}, true, "stage configs reach it through the registry, settings through an interface, flags as overrides"},
		{"pipeline", []string{"..."}, true, "the core knows no stage"},
		{"httpx", []string{"stages", "sinks", "config", "cmd/..."}, true, "the HTTP layer sits below the stages"},
		{"stages", []string{"sinks"}, true, "siblings"},
		{"sinks", []string{"stages"}, true, "siblings"},
		{"cmd/run", []string{"config", "pipeline", "httpx"}, false, "the release binary's main only calls cmd.Main"},
		{".", []string{"daemon/..."}, true, "the library does not know the service built on it"},
		{"daemon/...", []string{"cmd/...", "bench/...", "internal/..."}, true, "the daemon is library code under the CLI (cmd -> daemon -> dlflow), and test harnesses stay out of the release binary"},
		{"daemon/...", []string{"stages", "sinks", "config"}, false, "the daemon runs downloads through the dlflow package, never a stage or the config layer itself"},
		{".", backendPkgs, true, "the library links no backend: a program imports those it needs"},
		{"config", backendPkgs, true, "stage configs reach it through the registry"},
		{"stages", []string{"stages/decompress"}, true, "a backend sits above the package it extends"},
		{"sinks", []string{"sinks/s3", "sinks/archive"}, true, "a backend sits above the package it extends"},
	}
	for _, b := range backendPkgs {
		others := slices.DeleteFunc(slices.Clone(backendPkgs), func(o string) bool { return o == b })
		never := append([]string{".", "config", "cmd/...", "bench/...", "internal/...", "examples/..."}, others...)
		rules = append(rules, rule{b, never, true,
			"a backend sits beside sinks and stages: it may import them, pipeline and httpx, never the library nor another backend"})
	}
	for _, r := range rules {
		graph := direct
		if r.deps {
			graph = deps
		}
		for pkg, imports := range graph {
			if !matches(pkg, r.from, graph) {
				continue
			}
			for _, imp := range imports {
				for _, never := range r.never {
					if matches(imp, never, graph) && imp != pkg {
						t.Errorf("%s imports %s: %s", pkg, imp, r.reason)
					}
				}
			}
		}
	}
}

// goList runs go list with format over pkgs and returns, per package
// (relative to the module), the packages of its line (relative where they
// are the module's).
func goList(t *testing.T, format string, pkgs ...string) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-f", format}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := rel(fields[0])
		for _, imp := range fields[1:] {
			graph[pkg] = append(graph[pkg], rel(imp))
		}
	}
	if len(graph) < 10 {
		t.Fatalf("go list found %d packages", len(graph))
	}
	return graph
}

// rel names a package of the module relative to it ("." for the root);
// other packages keep their path.
func rel(pkg string) string {
	if pkg == module {
		return "."
	}
	if r, ok := strings.CutPrefix(pkg, module+"/"); ok {
		return r
	}
	return pkg
}

// matches reports whether pkg is pattern, or under it when pattern ends in
// "/...". A pattern whose first element has no dot names packages of the
// module (those graph lists; "..." alone is all of them); others are
// import paths ("github.com/spf13/pflag").
func matches(pkg, pattern string, graph map[string][]string) bool {
	_, ours := graph[pkg]
	if pattern == "..." {
		return ours
	}
	if first, _, _ := strings.Cut(pattern, "/"); !strings.Contains(first, ".") && !ours {
		return false // a pattern of the module's packages; pkg is not one
	}
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
	}
	return pkg == pattern
}

// TestPackageDocsListEveryStage: the package documentation of stages and
// sinks names every stage type the package registers, so that a reader of
// `go doc` finds them all (it listed half of them once).
func TestPackageDocsListEveryStage(t *testing.T) {
	for _, pkg := range []struct {
		dir      string
		register func(*pipeline.Registry) error
	}{{"stages", stages.Register}, {"sinks", sinks.Register}, {"sinks/s3", s3.Register}, {"sinks/archive", archive.Register}, {"stages/decompress", decompress.Register}} {
		reg := pipeline.NewRegistry()
		if err := pkg.register(reg); err != nil {
			t.Fatal(err)
		}
		doc, err := os.ReadFile(filepath.Join(pkg.dir, "doc.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(reg.Types()) == 0 {
			t.Fatalf("%s registers no stage type", pkg.dir)
		}
		for _, typ := range reg.Types() {
			if !strings.Contains(string(doc), "`"+typ+"`") {
				t.Errorf("%s/doc.go does not list the stage type %s", pkg.dir, typ)
			}
		}
	}
}

// TestOneCallLinksNoBackend: the one-call program (examples/get, which
// calls dlflow.Get and nothing else) links neither the S3 client nor the
// decompressors, nor the backend packages that hold them: importing the
// library costs a program only what downloading a file needs. It once
// linked minio-go and klauspost/compress, 33 modules for a 14 MB binary.
func TestOneCallLinksNoBackend(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./examples/get").Output()
	if err != nil {
		t.Fatalf("go list -deps ./examples/get: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module) || !slices.Contains(deps, module+"/sinks") {
		t.Fatalf("go list -deps ./examples/get lists no dlflow nor sinks: %q", deps)
	}
	forbidden := []string{"github.com/minio/", "github.com/klauspost/"}
	for _, b := range backendPkgs {
		forbidden = append(forbidden, module+"/"+b)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("the one-call program links %s", dep)
			}
		}
	}
}

// TestCLILinksNoProtobuf: the CLI (cmd/run), which serves the daemon's
// /metrics and runs every plain download, links neither client_golang nor
// protobuf. Their package inits (protobuf's descriptor registry, the
// registry's default collectors) run in every invocation, daemon or not:
// they cost each download about 2 MiB of peak RSS (issue 20, whose goal
// is 20 MiB for a 1 GiB stream download). daemon/metrics writes the text
// format itself; its tests may still parse it with prometheus/common.
func TestCLILinksNoProtobuf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/run").Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/run: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/daemon/metrics") {
		t.Fatalf("go list -deps ./cmd/run lists no daemon/metrics: %q", deps)
	}
	for _, dep := range deps {
		for _, f := range []string{"google.golang.org/protobuf", "github.com/prometheus/", "github.com/golang/protobuf"} {
			if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("the CLI links %s", dep)
			}
		}
	}
}
