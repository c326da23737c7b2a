package dlflow_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// timeWords name fields whose value is a span of time.
var timeWords = []string{"elapsed", "backoff", "eta", "ttfb", "wait", "delay", "timeout", "duration", "latency", "age", "took"}

// Every log field of the module (outside tests) that holds a span of time
// says its unit in its name, and uses one unit per kind: seconds, as a
// number, in a field named *_s (elapsed_s, backoff_s, eta_s, ttfb_s). A
// field whose value is a duration's text (Str, Stringer: "1.5s") carries
// its unit in the value. zerolog's Dur is not used: its unit is a global
// setting (milliseconds by default), which left "elapsed" in seconds on
// one line and in milliseconds on the next.
func TestLogFieldUnits(t *testing.T) {
	fset := token.NewFileSet()
	var problems []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if p := fieldProblem(n); p != "" {
				problems = append(problems, fset.Position(n.Pos()).String()+": "+p)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// fieldProblem checks a call that adds a field to a zerolog event (or
// context): Method("key", value).
func fieldProblem(n ast.Node) string {
	call, ok := n.(*ast.CallExpr)
	if !ok || len(call.Args) != 2 {
		return ""
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	key, _ := strconv.Unquote(lit.Value)
	method := sel.Sel.Name
	switch method {
	case "Dur", "Durs", "TimeDiff":
		return method + "(" + lit.Value + "): a duration's unit is zerolog's global setting; log Float64(\"..._s\", d.Seconds())"
	case "Float64", "Float32", "Int", "Int64", "Uint64", "Any", "Interface":
	default:
		return "" // Str, Stringer, Bool...: a text carries its unit
	}
	seconds, millis := calls(call.Args[1], "Seconds"), calls(call.Args[1], "Milliseconds")
	if b, ok := call.Args[1].(*ast.BinaryExpr); ok && b.Op == token.QUO {
		seconds, millis = false, false // per second: a rate, not a span
	}
	switch {
	case seconds && !strings.HasSuffix(key, "_s"):
		return method + "(" + lit.Value + ", ...Seconds()): name it ..._s"
	case millis:
		return method + "(" + lit.Value + ", ...Milliseconds()): durations are logged in seconds, ..._s"
	}
	for _, part := range strings.Split(key, "_") {
		if slices.Contains(timeWords, part) && !strings.HasSuffix(key, "_s") {
			return method + "(" + lit.Value + "): a span of time is a number of seconds named ..._s"
		}
	}
	return ""
}

// calls reports whether e calls a method named name.
func calls(e ast.Expr, name string) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == name {
				found = true
			}
		}
		return !found
	})
	return found
}
