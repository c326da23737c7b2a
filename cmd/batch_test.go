package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/bench/origin"
)

// writeList writes the lines of a URL list into the test's directory.
func writeList(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCLIStdin is runCLI with stdin.
func runCLIStdin(t *testing.T, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, stdin, &stdout, &stderr)
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// stderrLines are the lines of stderr that match re.
func stderrLines(r cliResult, re string) []string {
	var out []string
	for line := range strings.Lines(r.stderr) {
		if regexp.MustCompile(re).MatchString(line) {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	return out
}

// dirNames lists the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// TestBatchSeveralHosts: six URLs on three origins, one of which answers
// 404, three at a time: five complete files, one failure line naming the
// URL and the status, the summary, exit 1, and no goroutine left behind.
func TestBatchSeveralHosts(t *testing.T) {
	before := goleak.IgnoreCurrent()
	a := startOrigin(t, origin.Options{Size: 1<<20 + 7, Seed: 1, Path: "/a.bin"})
	b := startOrigin(t, origin.Options{Size: 3<<20 + 1, Seed: 2, Path: "/b.bin"})
	c := startOrigin(t, origin.Options{Size: 1000, Seed: 3, Path: "/c.bin"})
	c.SetFaults(origin.Faults{Status: 404})
	shaA, shaB := origin.SHA256Hex(1<<20+7, 1), origin.SHA256Hex(3<<20+1, 2)

	list := writeList(t,
		"# mirrors of a and b",
		a.URL(),
		"",
		b.URL()+"\tb-copy.bin",
		"   # an indented comment",
		c.URL(),
		a.URL()+"   a copy.bin  ",
		b.URL(),
		"\t",
		a.URL()+" a-third.bin",
	)
	out := filepath.Join(t.TempDir(), "out")
	r := runCLI(t, "-i", list, "--jobs", "3", "--dir", out,
		"-c", examplePath("ranged"), "--connections", "3", "--set", "stages.split.config.piece=256KiB")
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitFailed {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	want := map[string]string{"a.bin": shaA, "a copy.bin": shaA, "a-third.bin": shaA, "b.bin": shaB, "b-copy.bin": shaB}
	for name, sha := range want {
		if got := fileSHA256(t, filepath.Join(out, name)); got != sha {
			t.Errorf("%s: sha256 %s, want %s", name, got, sha)
		}
	}
	if names := dirNames(t, out); len(names) != len(want) {
		t.Errorf("%s holds %q, want the %d downloads only", out, names, len(want))
	}
	failures := stderrLines(r, `^dlflow: http`)
	if len(failures) != 1 || !strings.HasPrefix(failures[0], "dlflow: "+c.URL()+": ") || !strings.Contains(failures[0], "404") {
		t.Errorf("failure lines %q, want one naming %s and 404", failures, c.URL())
	}
	if saved := stderrLines(r, `^dlflow: saved `); len(saved) != 5 {
		t.Errorf("%d saved lines, want 5:\n%s", len(saved), r.stderr)
	}
	if !strings.HasSuffix(r.stderr, "dlflow: 5 downloaded, 1 failed\n") {
		t.Errorf("stderr does not end with the summary:\n%s", r.stderr)
	}

	for _, srv := range []*origin.Server{a, b, c} {
		srv.Close()
	}
	goleak.VerifyNone(t, before)
}

// TestBatchMaxPerHost: --max-per-host 2 holds every origin to two requests
// at once, over four downloads that each want four connections; those get
// two, and say so.
func TestBatchMaxPerHost(t *testing.T) {
	const size = 1 << 20
	// Throttled, so that downloads overlap and compete for the host.
	a := startOrigin(t, origin.Options{Size: size, Seed: 4, Path: "/a.bin", RateLimit: 8 << 20})
	b := startOrigin(t, origin.Options{Size: size, Seed: 5, Path: "/b.bin", RateLimit: 8 << 20})
	list := writeList(t,
		a.URL()+" a1", a.URL()+" a2", b.URL()+" b1", a.URL()+" a3", b.URL()+" b2", a.URL()+" a4",
	)
	out := t.TempDir()
	r := runCLI(t, "-i", list, "--jobs", "4", "--max-per-host", "2", "-d", out, "--json", "--log-level", "info",
		"-c", examplePath("ranged"), "--connections", "4", "--set", "stages.split.config.piece=128KiB")
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	for _, name := range []string{"a1", "a2", "a3", "a4", "b1", "b2"} {
		want := origin.SHA256Hex(size, 4)
		if name[0] == 'b' {
			want = origin.SHA256Hex(size, 5)
		}
		if got := fileSHA256(t, filepath.Join(out, name)); got != want {
			t.Errorf("%s: sha256 %s, want %s", name, got, want)
		}
	}
	for _, srv := range []*origin.Server{a, b} {
		if !srv.WaitIdle(time.Minute) {
			t.Fatal("origin still busy")
		}
		// A request that work stealing cut short frees its slot when the
		// client closes its connection, which the server sees a moment
		// later: each may overlap one more request.
		cut := cutShort(srv.Log(), size)
		if got := srv.Stats().MaxInFlight; got < 1 || got > int64(2+cut) {
			t.Errorf("%s: %d requests in flight at once (%d cut short), want at most %d (--max-per-host 2)", srv.BaseURL(), got, cut, 2+cut)
		}
	}
	if n := strings.Count(r.stderr, "fewer connections for this download"); n != 6 {
		t.Errorf("%d logs of fewer connections, want 6:\n%s", n, r.stderr)
	}
	// --json: one object per download, with the connections it used.
	var objects int
	for line := range strings.Lines(r.stdout) {
		var s summary
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		if s.Connections != 2 || s.Error != "" {
			t.Errorf("summary %+v: want 2 connections and no error", s)
		}
		objects++
	}
	if objects != 6 {
		t.Errorf("%d JSON objects on stdout, want 6", objects)
	}
	if !strings.HasSuffix(r.stderr, "dlflow: 6 downloaded, 0 failed\n") {
		t.Errorf("stderr does not end with the summary:\n%s", r.stderr)
	}
}

// TestBatchOnePerHost: with the default topology (one stream per small
// file), --max-per-host 1 runs the downloads of one host one at a time,
// however many --jobs.
func TestBatchOnePerHost(t *testing.T) {
	a := startOrigin(t, origin.Options{Size: 300 << 10, Seed: 6, RateLimit: 4 << 20})
	var lines []string
	for _, name := range []string{"1", "2", "3", "4", "5"} {
		lines = append(lines, a.URL()+" "+name+".bin")
	}
	out := t.TempDir()
	r := runCLIStdin(t, strings.NewReader(strings.Join(lines, "\n")), "-i", "-", "--jobs", "5", "--max-per-host", "1", "--dir", out, "-q")
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("exit %d, want 0 and nothing on stderr (-q); stderr:\n%s", r.code, r.stderr)
	}
	for _, name := range []string{"1", "2", "3", "4", "5"} {
		if got := fileSHA256(t, filepath.Join(out, name+".bin")); got != origin.SHA256Hex(300<<10, 6) {
			t.Errorf("%s.bin: wrong sha256 %s", name, got)
		}
	}
	if !a.WaitIdle(time.Minute) {
		t.Fatal("origin still busy")
	}
	if st := a.Stats(); st.MaxInFlight != 1 || st.GETs != 5 {
		t.Errorf("origin stats %+v: want 5 GETs, at most one in flight", st)
	}
}

// TestBatchBadLines: a line that is not a URL fails alone, and so does a
// second line with an output already taken; the others complete.
func TestBatchBadLines(t *testing.T) {
	a := startOrigin(t, origin.Options{Size: 200 << 10, Seed: 7})
	list := writeList(t,
		"not-a-url x.bin",
		a.URL()+" good.bin",
		"ftp://example.com/f.bin",
		"http:// nohost.bin",
		a.URL()+" other.bin",
	)
	out := t.TempDir()
	r := runCLI(t, "-i", list, "--jobs", "2", "--dir", out)
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitFailed {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	for _, bad := range []string{"not-a-url", "ftp://example.com/f.bin", "http://"} {
		if lines := stderrLines(r, `^dlflow: `+regexp.QuoteMeta(bad)+`: `); len(lines) != 1 {
			t.Errorf("want one failure line for %q, got %q; stderr:\n%s", bad, lines, r.stderr)
		}
	}
	for _, name := range []string{"good.bin", "other.bin"} {
		if got := fileSHA256(t, filepath.Join(out, name)); got != origin.SHA256Hex(200<<10, 7) {
			t.Errorf("%s: wrong sha256 %s", name, got)
		}
	}
	if names := dirNames(t, out); !slices.Equal(names, []string{"good.bin", "other.bin"}) {
		t.Errorf("out holds %q", names)
	}
	if !strings.HasSuffix(r.stderr, "dlflow: 2 downloaded, 3 failed\n") {
		t.Errorf("stderr does not end with the summary:\n%s", r.stderr)
	}
}

// TestBatchSameOutput: two lines naming one output cannot both write it.
func TestBatchSameOutput(t *testing.T) {
	a := startOrigin(t, origin.Options{Size: 100 << 10, Seed: 8})
	b := startOrigin(t, origin.Options{Size: 100 << 10, Seed: 9})
	list := writeList(t, a.URL(), b.URL()) // both /file.bin
	out := t.TempDir()
	r := runCLI(t, "-i", list, "--dir", out)
	if r.code != exitFailed {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	// The later line finds the earlier one's download running, or ended
	// (its file is there).
	if lines := stderrLines(r, `already the output of line [12] of the list|file.bin exists; pass --overwrite`); len(lines) != 1 {
		t.Errorf("want one line saying file.bin is taken; stderr:\n%s", r.stderr)
	}
	got := fileSHA256(t, filepath.Join(out, "file.bin"))
	if got != origin.SHA256Hex(100<<10, 8) && got != origin.SHA256Hex(100<<10, 9) {
		t.Errorf("file.bin is neither file: %s", got)
	}
	if !strings.HasSuffix(r.stderr, "dlflow: 1 downloaded, 1 failed\n") {
		t.Errorf("stderr does not end with the summary:\n%s", r.stderr)
	}
}

// TestBatchUsage: what cannot go with -i is a usage error (exit 2, one
// line) before any request.
func TestBatchUsage(t *testing.T) {
	a := startOrigin(t, origin.Options{Size: 1000, Seed: 1})
	list := writeList(t, a.URL())
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-i", list, "-o", filepath.Join(dir, "x")}, "-o names one output"},
		{[]string{"-i", list, a.URL()}, "the URLs come from the list"},
		{[]string{"-i", list, "--url", a.URL()}, "the URLs come from the list"},
		{[]string{"-i", list, "--jobs", "0"}, "--jobs must be at least 1"},
		{[]string{"-i", list, "--max-per-host", "0"}, "--max-per-host must be at least 1"},
		{[]string{a.URL(), "--jobs", "2"}, "go with -i"},
		{[]string{"-i", filepath.Join(dir, "missing.txt")}, "missing.txt"},
		{[]string{"-i", list, "--connections", "0"}, "--connections must be at least 1"},
		{[]string{"-i", list, "-c", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{[]string{"-i", list, "--set", "stages.fetch.workrs=2"}, "workrs"},
		{[]string{"-i", list, "-H", "no colon"}, "header"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if st := a.Stats(); st.Requests != 0 {
		t.Errorf("%d requests reached the origin", st.Requests)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("usage errors wrote %q", names)
	}
}

// TestBatchInterrupt: an interrupt cancels the running downloads (their
// .tmp kept), starts no more, and exits 130.
func TestBatchInterrupt(t *testing.T) {
	const size = 1 << 20
	// Slow enough that no download can finish before the interrupt.
	a := startOrigin(t, origin.Options{Size: size, Seed: 10, RateLimit: 64 << 10})
	list, w := io.Pipe()
	defer list.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	out := t.TempDir()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-i", "-", "--jobs", "2", "--dir", out}, list, io.Discard, &stderr)
	}()
	for _, name := range []string{"1", "2", "3"} {
		if _, err := io.WriteString(w, a.URL()+" "+name+".bin\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Wait (bounded) until both jobs are fetching their file (each sends a
	// HEAD, the probe, then the GET of its graph) and the first wrote some
	// of it (a checkpoint made its state): a .tmp that nothing was written
	// into is not kept.
	for i := 0; a.Stats().GETs < 2 || !fltExists(filepath.Join(out, "1.bin.tmp.state")); i++ {
		if i > 60_000 {
			t.Fatal("the downloads did not start")
		}
		time.Sleep(time.Millisecond)
	}
	cancel(&interrupted{sig: os.Interrupt})
	code := <-done
	w.Close() // what a closing terminal would do; the reader goroutine ends
	if code != exitInterrupted {
		t.Fatalf("exit %d, want 130; stderr:\n%s", code, stderr.String())
	}
	names := dirNames(t, out)
	for _, n := range names {
		if !strings.HasSuffix(n, ".tmp") && !strings.HasSuffix(n, ".state") {
			t.Errorf("%s: a complete output after an interrupt", n)
		}
	}
	if !slices.Contains(names, "1.bin.tmp") || slices.Contains(names, "3.bin.tmp") {
		t.Errorf("out holds %q: want the .tmp of the started downloads only", names)
	}
	s := stderr.String()
	if !strings.Contains(s, "interrupted by SIGINT; partial data kept in "+filepath.Join(out, "1.bin.tmp")) ||
		!strings.Contains(s, "dlflow: 0 downloaded, 0 failed, 2 interrupted\n") ||
		!strings.HasSuffix(s, "dlflow: interrupted by SIGINT\n") {
		t.Errorf("stderr:\n%s", s)
	}
}

// TestSkipExisting: rerunning a list with --skip-existing leaves the files
// that are there alone, without a request for those named in the list, and
// downloads the rest; alone, a download of an existing output succeeds
// without touching it. --overwrite contradicts it.
func TestSkipExisting(t *testing.T) {
	const size, seed = 300 << 10, 11
	a := startOrigin(t, origin.Options{Size: size, Seed: seed})
	out := t.TempDir()
	kept := filepath.Join(out, "kept.bin")
	if err := os.WriteFile(kept, []byte("already here"), 0o644); err != nil {
		t.Fatal(err)
	}
	list := writeList(t, a.URL()+" kept.bin", a.URL()+" new.bin")
	r := runCLI(t, "-i", list, "--dir", out, "--skip-existing")
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0", r.code)
	}
	if got, _ := os.ReadFile(kept); string(got) != "already here" {
		t.Errorf("kept.bin was changed: %q", got)
	}
	assertComplete(t, filepath.Join(out, "new.bin"), size, seed)
	if lines := stderrLines(r, `^dlflow: skipped .*kept\.bin: it exists \(--skip-existing\)\n`); len(lines) != 1 {
		t.Errorf("want one skip line, got %q", lines)
	}
	if !strings.HasSuffix(r.stderr, "dlflow: 1 downloaded, 1 skipped (they exist), 0 failed\n") {
		t.Errorf("stderr does not end with the summary")
	}
	if got := a.Stats(); got.Requests != 1 { // the probe's GET of new.bin, which is the file
		t.Errorf("%d requests, want 1: none for the skipped file", got.Requests)
	}

	// One download.
	r = runCLI(t, a.URL(), "-o", kept, "--skip-existing")
	if r.code != exitOK || r.stderr != "dlflow: skipped "+kept+": it exists (--skip-existing)\n" {
		t.Errorf("exit %d, stderr %q; want 0 and the skip line", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(kept); string(got) != "already here" {
		t.Errorf("kept.bin was changed: %q", got)
	}
	r = runCLI(t, a.URL(), "-o", kept, "--skip-existing", "--json", "-q")
	if s := uxJSON(t, r.stdout); r.code != exitOK || r.stderr != "" || !s.Skipped || s.Output != kept || s.Error != "" {
		t.Errorf("exit %d, stderr %q, summary %+v; want 0, nothing, skipped", r.code, r.stderr, s)
	}
	for _, args := range [][]string{
		{a.URL(), "-o", kept, "--skip-existing", "--overwrite"},
		{"-i", list, "--dir", out, "--skip-existing", "--overwrite"},
	} {
		if r := runCLI(t, args...); r.code != exitUsage || !strings.Contains(r.stderr, "contradict") {
			t.Errorf("%q: exit %d, stderr %q; want 2", args, r.code, r.stderr)
		}
	}
}

// TestBatchProgressOnTerminal runs a batch in a real terminal (script(1)
// gives it a pty): each running download draws a line of the shared
// progress display, its summary line prints above it when it ends, and the
// batch's summary comes last.
func TestBatchProgressOnTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to give the CLI a terminal")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	benchEnv(t)
	const size, seed = 2 << 20, 31
	// Slow enough for the display to draw several frames.
	a := startOrigin(t, origin.Options{Size: size, Seed: seed, RateLimit: 4 << 20})
	out := t.TempDir()
	list := writeList(t, a.URL()+" first.bin", a.URL()+" second.bin")
	shell := fmt.Sprintf("stty cols 120 rows 40; %q -i %q --dir %q --jobs 2", exe, list, out)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-qec", shell, "/dev/null")
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	drawn, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v:\n%s", err, drawn)
	}
	text := string(drawn)
	for _, name := range []string{"first.bin", "second.bin"} {
		assertComplete(t, filepath.Join(out, name), size, seed)
		if !regexp.MustCompile(regexp.QuoteMeta(name) + `\s+\[[=>-]+\]\s+[0-9.]+ [KM]iB / 2\.0 MiB`).MatchString(text) {
			t.Errorf("no progress line for %s:\n%q", name, text)
		}
		if !strings.Contains(text, "dlflow: saved "+filepath.Join(out, name)) {
			t.Errorf("no summary line for %s:\n%q", name, text)
		}
	}
	if !regexp.MustCompile(`dlflow: 2 downloaded, 0 failed\r?\n$`).MatchString(text) {
		t.Errorf("the batch summary is not the last line:\n%q", text)
	}
}

// TestBatchNamesStayInDir: names from a list are relative paths inside
// --dir; one that would leave it (.., an absolute path) is refused on one
// line of its own, and the others download. Nothing is written outside
// --dir, and even --overwrite cannot reach a file there.
func TestBatchNamesStayInDir(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 4096, Seed: 6})
	top := t.TempDir()
	victim := filepath.Join(top, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(top, "out")
	list := writeList(t,
		srv.URL()+" ../victim",
		srv.URL()+" "+victim,
		srv.URL()+" d/../../victim",
		srv.URL()+" good.bin",
	)
	r := runCLI(t, "-i", list, "--dir", dir, "--overwrite")
	if r.code != exitFailed {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	refused := stderrLines(r, `is not a relative path inside `)
	if len(refused) != 3 {
		t.Errorf("%d refusals, want 3:\n%s", len(refused), r.stderr)
	}
	for _, line := range refused {
		if !strings.HasPrefix(line, "dlflow: "+srv.URL()+": ") {
			t.Errorf("refusal %q does not name the URL", line)
		}
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("the file outside --dir changed (%d bytes)", len(data))
	}
	if got := fileSHA256(t, filepath.Join(dir, "good.bin")); got != origin.SHA256Hex(4096, 6) {
		t.Errorf("good.bin: sha256 %s", got)
	}
	if names := dirNames(t, top); !slices.Equal(names, []string{"out", "victim"}) {
		t.Errorf("%s holds %q", top, names)
	}
	if !strings.HasSuffix(r.stderr, "dlflow: 1 downloaded, 3 failed\n") {
		t.Errorf("stderr does not end with the summary:\n%s", r.stderr)
	}
}

// TestBatchJSONReportsRealOutputs: with --dir, an output named from the URL
// is reported with the path and size of the file written in --dir, not of
// a file of the same name in the working directory.
func TestBatchJSONReportsRealOutputs(t *testing.T) {
	srv := startOrigin(t, origin.Options{Size: 16384, Seed: 2, Path: "/f5.bin"})
	wd := t.TempDir()
	t.Chdir(wd)
	if err := os.WriteFile("f5.bin", []byte("other!"), 0o644); err != nil {
		t.Fatal(err)
	}
	list := writeList(t, srv.URL())
	r := runCLI(t, "-i", list, "--dir", "out", "--json")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var sum summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("%v: %q", err, r.stdout)
	}
	if sum.Output != filepath.Join("out", "f5.bin") || sum.Bytes != 16384 {
		t.Errorf("reported %q, %d bytes; want out/f5.bin, 16384", sum.Output, sum.Bytes)
	}
	if !strings.Contains(r.stderr, "dlflow: saved out/f5.bin: 16.0 KiB") {
		t.Errorf("stderr: %s", r.stderr)
	}
	if data, _ := os.ReadFile("f5.bin"); string(data) != "other!" {
		t.Errorf("the working directory's f5.bin changed")
	}
}

// TestBatchShardOfAMillionLines: --shard K/N downloads every Nth entry of
// a list from the Kth, and the list streams: over a 1,000,000-line list
// (about 45 MB) of which shard 7/100000 downloads ten entries, the heap
// never grows by more than a few MiB.
func TestBatchShardOfAMillionLines(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 45 MB list")
	}
	srv := startOrigin(t, origin.Options{Size: 512, Seed: 4})
	dir := t.TempDir()
	listPath := filepath.Join(dir, "list.txt")
	f, err := os.Create(listPath)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range 1_000_000 {
		fmt.Fprintf(w, "%s f%07d\n", srv.URL(), i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	out := filepath.Join(dir, "out")
	r := runCLI(t, "-i", listPath, "--dir", out, "--shard", "7/100000", "--jobs", "2", "-q")
	close(stop)
	<-sampled
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var want []string
	for k := 7; k < 1_000_000; k += 100_000 {
		want = append(want, fmt.Sprintf("f%07d", k))
	}
	if got := dirNames(t, out); !slices.Equal(got, want) {
		t.Errorf("downloaded %q, want %q", got, want)
	}
	if n := srv.Stats().Requests; n != 10 {
		t.Errorf("%d requests, want 10", n)
	}
	if grew := int64(peak.Load()) - int64(before.HeapInuse); grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB over a 45 MB list", grew>>20)
	}
}

// cutShort counts the range answers of log that ended before their range
// did: the client dropped them (work stealing cut or raced them).
func cutShort(log []origin.Request, size int64) int {
	n := 0
	for _, r := range log {
		var first, last int64
		if r.Method != "GET" {
			continue
		}
		if _, err := fmt.Sscanf(r.Range, "bytes=%d-%d", &first, &last); err != nil {
			continue
		}
		if r.Bytes < min(last, size-1)-first+1 {
			n++
		}
	}
	return n
}
