package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/examples"
)

// This file holds the habits users bring from curl, wget and aria2c (the
// README's "Coming from curl, wget, aria2c"): the flags that mean the same
// there and here, the ones that are accepted because dlflow does by
// default what they ask, and the hints for the ones that clash.

// compatFlags are the flags taken from curl, wget and aria2c.
type compatFlags struct {
	ifNewer    bool   // -N, --timestamping, --conditional-get
	retry      int    // --retry N
	retryDelay string // --retry-delay
	maxTime    string // -m, --max-time
	connect    string // --connect-timeout
	continueAt string // -C -
	silent     bool   // -s
	showError  bool   // -S
	remoteName bool   // -O
	createDirs bool   // --create-dirs
}

func (c *compatFlags) register(fs *pflag.FlagSet, dir *string) {
	fs.StringVar(dir, "output-dir", "", "same as --dir (curl)")
	fs.StringVarP(dir, "directory-prefix", "P", "", "same as --dir (wget)")
	fs.BoolVarP(&c.ifNewer, "timestamping", "N", false, "download only if the server's copy is newer than the existing output (If-Modified-Since, or the same Last-Modified and size): an up-to-date file costs no body and exits 0; a newer one replaces it")
	fs.BoolVar(&c.ifNewer, "conditional-get", false, "same as -N (aria2c)")
	fs.IntVar(&c.retry, "retry", 0, "retry a failed request (a transient failure: reset, timeout, 5xx, 429) up to `N` times (default: 4 retries per range)")
	fs.StringVar(&c.retryDelay, "retry-delay", "", "wait up to `SECONDS` (or a duration: 500ms) before each retry, instead of the doubling backoff")
	fs.StringVarP(&c.maxTime, "max-time", "m", "", "give up after `SECONDS` (or a duration: 1m30s) in all, keeping the partial data for a rerun to resume")
	fs.StringVar(&c.connect, "connect-timeout", "", "time allowed to open a TCP connection, `SECONDS` or a duration (http.connect_timeout, default 10s)")
	fs.StringVarP(&c.continueAt, "continue-at", "C", "", "only - is taken, and changes nothing: an interrupted download resumes by itself from OUTPUT.tmp")
	fs.Bool("continue", false, "accepted (wget, aria2c), changes nothing: resume is automatic")
	fs.BoolVarP(&c.remoteName, "remote-name", "O", false, "accepted (curl): naming the file from the server is the default")
	fs.BoolP("location", "L", false, "accepted (curl): redirects are followed by default (http.max_redirects, 10)")
	fs.BoolP("fail", "f", false, "accepted (curl): an HTTP error fails the download by default (exit 1, no file)")
	fs.BoolVarP(&c.silent, "silent", "s", false, "as -q, and no error line either unless -S (curl)")
	fs.BoolVarP(&c.showError, "show-error", "S", false, "with -s, print the error line of a failure (curl)")
	fs.BoolVar(&c.createDirs, "create-dirs", false, "create the missing directories of -o (curl)")
	fs.BoolP("parallel", "Z", false, "accepted (curl): several URLs are downloaded at once, --jobs at a time")
}

// compatKeys are the config keys the flags of compatFlags set, for
// checkSets: their values are converted (seconds to a duration), so they
// are not among flagKeys.
var compatKeys = map[string]string{"connect-timeout": "http.connect_timeout"}

// flagHints name the dlflow flag for a flag of wget, aria2c or curl that
// dlflow does not take, or takes with the meaning of another tool: a
// usage error says what to type instead.
var flagHints = map[string]string{
	"t":                         "wget's -t/--tries N is --retry N-1",
	"tries":                     "wget's -t/--tries N is --retry N-1",
	"max-tries":                 "aria2c's --max-tries N is --retry N-1",
	"waitretry":                 "wget's --waitretry is --retry-delay",
	"retry-wait":                "aria2c's --retry-wait is --retry-delay",
	"T":                         "wget's -T/--timeout is --connect-timeout (to connect) or -m/--max-time (in all)",
	"timeout":                   "wget's -T/--timeout is --connect-timeout (to connect) or -m/--max-time (in all)",
	"-nc":                       "wget's -nc/--no-clobber is --skip-existing",
	"-nv":                       "wget's -nv: dlflow prints one summary line by default, -q prints errors only",
	"J":                         "not needed: the name comes from the server's Content-Disposition by default (curl's -J)",
	"remote-header-name":        "not needed: the name comes from the server's Content-Disposition by default (curl's -J)",
	"v":                         "-v is --log-level info (or debug)",
	"verbose":                   "--verbose is --log-level info (or debug)",
	"compressed":                "not taken: dlflow asks for the bytes as stored (ranges and sizes need them)",
	"no-clobber":                "wget's -nc/--no-clobber is --skip-existing",
	"no-check-certificate":      "wget's --no-check-certificate is -k/--insecure",
	"check-certificate":         "aria2c's --check-certificate=false is -k/--insecure",
	"z":                         "curl's -z/--time-cond is -N/--timestamping (newer than the output file)",
	"time-cond":                 "curl's -z/--time-cond is -N/--timestamping (newer than the output file)",
	"split":                     "aria2c's -s/--split N is --connections N",
	"max-connection-per-server": "aria2c's -x/--max-connection-per-server N is --connections N",
	"max-concurrent-downloads":  "aria2c's -j/--max-concurrent-downloads N is --jobs N",
	"U":                         "wget's and aria2c's -U/--user-agent is -A/--user-agent",
	"parallel-max":              "curl's --parallel-max N is --jobs N",
	"allow-overwrite":           "aria2c's --allow-overwrite is --overwrite",
	"all-proxy":                 "aria2c's --all-proxy is -x/--proxy",
	"http-user":                 "aria2c's --http-user and --http-passwd are -u USER:PASSWORD",
	"http-passwd":               "aria2c's --http-user and --http-passwd are -u USER:PASSWORD",
	"output-document":           "wget's -O/--output-document FILE is -o FILE",
	"out":                       "aria2c's --out FILE is -o FILE",
	"R":                         "not needed: a completed file takes the server's Last-Modified as its time (curl's -R)",
	"remote-time":               "not needed: a completed file takes the server's Last-Modified as its time (curl's -R)",
	"max-download-limit":        "aria2c's --max-download-limit is --limit-rate",
}

var unknownFlag = regexp.MustCompile(`^unknown (?:shorthand )?flag: (?:'(.)' in (-\S*)|--([^=\s]+))`)

// flagHint is the hint for a parse error of an unknown flag that another
// tool has, or "".
func flagHint(err error) string {
	m := unknownFlag.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	short, token, long := m[1], m[2], m[3]
	switch {
	case short >= "0" && short <= "9":
		return "aria2c's -sN (split) is --connections N; -s is curl's --silent here"
	case short == "n" && len(token) >= 3:
		return flagHints[token[:3]] // wget's -nc, -nv
	}
	return flagHints[short+long]
}

// checkHabits refuses, with a hint, what reads as a habit of wget or
// aria2c whose flag means something else here (as in curl).
func checkHabits(fs *pflag.FlagSet, c *compatFlags) error {
	args := fs.Args()
	for _, a := range args {
		if _, err := strconv.Atoi(a); err == nil && (c.silent || fs.Changed("remote-name")) {
			return usagef("%q is no URL: -s is curl's --silent here; aria2c's -s N (split) is --connections N", a)
		}
	}
	if p, _ := fs.GetString("proxy"); fs.Changed("proxy") && isNumber(p) {
		return usagef("-x is the proxy here, as in curl; aria2c's -x N (connections per server) is --connections N")
	}
	if c.remoteName {
		if fs.Changed("output") {
			return usagef("-O names the output from the server and -o names it yourself; give one")
		}
		schemes := 0
		for _, a := range args {
			if strings.Contains(a, "://") {
				schemes++
			}
		}
		if len(args) > 1 && schemes > 0 && schemes < len(args) {
			return usagef("-O takes no file name here, as in curl (the name comes from the server); wget's -O FILE is -o FILE")
		}
	}
	switch c.continueAt {
	case "", "-":
	default:
		return usagef("-C takes only -: an interrupted download resumes by itself from OUTPUT.tmp, where it stopped")
	}
	return nil
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// seconds parses a time flag: a number of seconds as curl takes it (2,
// 0.5), or a Go duration (500ms, 1m30s).
func seconds(flag, v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 {
			return 0, usagef("--%s must not be negative, got %s", flag, v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, usagef("--%s %q: want seconds (2, 0.5) or a duration (500ms, 1m30s)", flag, v)
	}
	if d < 0 {
		return 0, usagef("--%s must not be negative, got %s", flag, v)
	}
	return d, nil
}

// applyCompat sets the request's fields from the flags of compatFlags.
func applyCompat(fs *pflag.FlagSet, c *compatFlags, req *dlflow.Request) error {
	req.IfNewer = c.ifNewer
	if c.ifNewer && req.SkipExisting {
		return usagef("-N downloads a newer copy and --skip-existing never does; give one")
	}
	if overwrite, _ := fs.GetBool("overwrite"); c.ifNewer && overwrite {
		return usagef("-N replaces the output only when the server's copy is newer and --overwrite always does; give one")
	}
	if err := checkRetrySets(fs, req.Sets); err != nil {
		return err
	}
	if fs.Changed("retry") || fs.Changed("retry-delay") {
		if c.retry < 0 {
			return usagef("--retry must be 0 or more, got %d", c.retry)
		}
		req.Retry = &dlflow.Retry{Retries: c.retry}
		if !fs.Changed("retry") {
			req.Retry.Retries = -1 // the topology's tries, with another delay
		}
		if c.retryDelay != "" {
			d, err := seconds("retry-delay", c.retryDelay)
			if err != nil {
				return err
			}
			req.Retry.Delay = d
		}
	}
	if c.maxTime != "" {
		d, err := seconds("max-time", c.maxTime)
		if err != nil {
			return err
		}
		req.MaxTime = d
	}
	return nil
}

// checkRetrySets refuses a --set of a stage's retry key that --retry or
// --retry-delay sets too, as checkSets does for the flags' config keys.
func checkRetrySets(fs *pflag.FlagSet, sets []string) error {
	for _, set := range sets {
		key, _, _ := strings.Cut(set, "=")
		key = strings.TrimSpace(key)
		for flag, suffixes := range map[string][]string{
			"retry":       {".config.attempts", ".config.total_retries"},
			"retry-delay": {".config.backoff", ".config.max_backoff"},
		} {
			for _, suffix := range suffixes {
				if fs.Changed(flag) && strings.HasPrefix(key, "stages.") && strings.HasSuffix(key, suffix) {
					return usagef("--set %s and --%s both set the retries of the HTTP stages; give one", key, flag)
				}
			}
		}
	}
	return nil
}

// connectTimeout is --connect-timeout as the http.connect_timeout key.
func connectTimeout(c *compatFlags) (string, error) {
	d, err := seconds("connect-timeout", c.connect)
	if err != nil {
		return "", err
	}
	if d == 0 {
		return "", usagef("--connect-timeout must be more than 0")
	}
	return d.String(), nil
}

// topologyOf is -c: a topology file, or the name of a built-in topology
// (stream, ranged, ... or auto, the default) when no such file exists.
// A URL there is wget's or aria2c's -c (continue): a usage error says
// that resume is automatic.
func topologyOf(v string, haveURL bool) (dlflow.Topology, error) {
	if v == "" || v == "auto" {
		return dlflow.Topology{}, nil
	}
	continueHint := usagef("-c is dlflow's topology (a YAML file or a built-in name: %s), not wget's or aria2c's --continue, and %s looks like a URL; "+
		"resume is automatic: run `dlflow URL` again and it continues from OUTPUT.tmp", strings.Join(builtinTopologies(), ", "), v)
	if strings.Contains(v, "://") {
		return dlflow.Topology{}, continueHint
	}
	if _, err := os.Stat(v); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return dlflow.Topology{File: v}, nil
	}
	if dir := filepath.Dir(v); dir == "." || filepath.Base(dir) == "examples" {
		// examples/ranged.yaml outside a checkout: the same file, built in.
		base := strings.TrimSuffix(filepath.Base(v), ".yaml")
		for _, b := range builtinTopologies() {
			if b == base {
				return dlflow.Topology{Name: base}, nil
			}
		}
	}
	if host, _, slash := strings.Cut(v, "/"); !haveURL && slash && strings.Trim(host, ".") != "" && strings.Contains(host, ".") {
		return dlflow.Topology{}, continueHint // wget -c example.com/file.iso
	}
	if !strings.ContainsAny(v, "./\\") {
		return dlflow.Topology{Name: v}, nil // the library lists the names
	}
	return dlflow.Topology{}, usagef("-c %s: no such file, and no built-in topology of that name (built-in: %s)", v, strings.Join(builtinTopologies(), ", "))
}

// builtinTopologies are the names -c takes besides files.
func builtinTopologies() []string {
	names := []string{"auto"}
	for _, list := range [][]string{examples.Topologies, examples.WriterTopologies, examples.Extract, {"s3.yaml"}} {
		for _, f := range list {
			names = append(names, strings.TrimSuffix(f, ".yaml"))
		}
	}
	return names
}

// guessURL gives a URL without a scheme the http:// that curl and wget
// guess (example.com/f.iso, localhost:8080/f).
func guessURL(s string) string {
	if s == "" || strings.Contains(s, "://") {
		return s
	}
	return "http://" + s
}

// outputDir splits -o when it names a directory (a trailing slash, or an
// existing directory): the file goes inside it, named from the server.
func outputDir(out string) (string, bool) {
	if out == "" || out == "-" || strings.Contains(out, "://") {
		return "", false
	}
	if strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)) {
		return out, true
	}
	st, err := os.Stat(out)
	return out, err == nil && st.IsDir()
}

// makeDir creates the directory of -d/--dir (or -o DIR/) if missing.
func makeDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	return nil
}
