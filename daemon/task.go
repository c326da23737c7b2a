package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// The statuses of a task, as aria2 names them.
const (
	statusActive   = "active"
	statusWaiting  = "waiting"
	statusPaused   = "paused"
	statusComplete = "complete"
	statusError    = "error"
	statusRemoved  = "removed"
)

// record is what the session keeps of a task: enough to run it again
// after a restart, and to answer for it once it ended.
type record struct {
	GID    string   `json:"gid"`
	URIs   []string `json:"uris"`
	Opts   taskOpts `json:"opts"`
	Status string   `json:"status"`
	// Pos is the task's key in the queue bucket while waiting or paused;
	// Stop its key in the stopped bucket once ended; Started orders the
	// tasks that were active, for a restart.
	Pos     uint64 `json:"pos,omitempty"`
	Stop    uint64 `json:"stop,omitempty"`
	Started uint64 `json:"started,omitempty"`
	// Path is the output, absolute, once known (the library names it
	// after the probe when the client gave no out).
	Path      string `json:"path,omitempty"`
	Total     int64  `json:"total"`
	Completed int64  `json:"completed"`
	ErrCode   int    `json:"errorCode,omitempty"`
	ErrMsg    string `json:"errorMessage,omitempty"`
	// Metalink is the session's copy of the Metalink the task comes from
	// and MetalinkFile the 1-based file of it; "" for addUri.
	Metalink     string `json:"metalink,omitempty"`
	MetalinkFile int    `json:"metalinkFile,omitempty"`
	// Ever says the task ran at least once (its URIs are "used").
	Ever bool `json:"ever,omitempty"`
	// StopAs says what the end of the running download means, when the
	// daemon ended it: statusPaused, statusRemoved, stopRestart (and
	// stopShutdown, never written); "" when it ends by itself. It is
	// written when asked, so that a crash before the download stopped
	// still pauses or removes the task at the restart.
	StopAs string `json:"stopAs,omitempty"`
}

// taskOpts are the aria2 options a task takes, checked.
type taskOpts struct {
	Dir         string   `json:"dir,omitempty"` // relative to the root, "" for the root
	Out         string   `json:"out,omitempty"` // relative to Dir
	Split       int      `json:"split,omitempty"`
	MaxConn     int      `json:"maxConn,omitempty"` // max-connection-per-server
	Header      []string `json:"header,omitempty"`
	Checksum    string   `json:"checksum,omitempty"` // algorithm:hex
	LimitRate   int64    `json:"limit,omitempty"`    // bytes/s, 0 none
	StartPaused bool     `json:"-"`
}

// stateDirName is the directory under the root where the daemon keeps its
// session by default; no client path may reach it.
const stateDirName = ".dlflow"

// optionError is an option value a client sent that the daemon refuses.
type optionError struct {
	Name, Value string
	Why         string
}

func (e *optionError) Error() string {
	return fmt.Sprintf("option %s=%q: %s", e.Name, e.Value, e.Why)
}

// optionString reads an aria2 option value: aria2 takes strings (numbers
// are accepted as well, as some clients send them).
func optionString(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	return "", false
}

// applyOptions checks the options of opts (as a client sent them) and sets
// them on o. root is the daemon's --dir, for the dir option. Options the
// daemon does not know are ignored, as aria2 ignores the options a context
// does not take; a known option with a wrong value is an *optionError.
func (o *taskOpts) apply(root string, opts map[string]json.RawMessage) error {
	for _, name := range sortedKeys(opts) {
		raw := opts[name]
		if name == "header" {
			if err := o.applyHeader(raw); err != nil {
				return err
			}
			continue
		}
		v, ok := optionString(raw)
		if !ok {
			if knownOption(name) {
				return &optionError{Name: name, Value: string(raw), Why: "want a string"}
			}
			continue
		}
		if err := o.set(root, name, v); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var knownOptions = []string{"dir", "out", "split", "max-connection-per-server", "header", "checksum", "max-download-limit", "pause"}

func knownOption(name string) bool { return slices.Contains(knownOptions, name) }

func (o *taskOpts) set(root, name, v string) error {
	bad := func(why string, a ...any) error {
		return &optionError{Name: name, Value: v, Why: fmt.Sprintf(why, a...)}
	}
	switch name {
	case "dir":
		rel, err := clientDir(root, v)
		if err != nil {
			return bad("%v", err)
		}
		o.Dir = rel
	case "out":
		if err := clientName(v); err != nil {
			return bad("%v", err)
		}
		o.Out = filepath.Clean(v)
	case "split", "max-connection-per-server":
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > dlflow.MaxConnections {
			return bad("want a whole number from 1 to %d", dlflow.MaxConnections)
		}
		if name == "split" {
			o.Split = n
		} else {
			o.MaxConn = n
		}
	case "checksum":
		// aria2 writes sha-256=HEX; dlflow sha256:HEX. Both are taken.
		s := v
		if a, d, ok := strings.Cut(v, "="); ok && !strings.Contains(v, ":") {
			s = a + ":" + d
		}
		alg, digest, err := httpx.ParseChecksum(s)
		if err != nil {
			return bad("%v", err)
		}
		o.Checksum = alg + ":" + digest
	case "max-download-limit":
		n, err := pipeline.ParseByteSize(v)
		if err != nil {
			return bad("%v", err)
		}
		o.LimitRate = int64(n)
	case "pause":
		switch v {
		case "true":
			o.StartPaused = true
		case "false":
			o.StartPaused = false
		default:
			return bad("want true or false")
		}
	}
	return nil
}

func (o *taskOpts) applyHeader(raw json.RawMessage) error {
	var list []string
	if s, ok := optionString(raw); ok {
		list = []string{s}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return &optionError{Name: "header", Value: string(raw), Why: "want a string or a list of strings"}
	}
	for _, h := range list {
		name, _, err := httpx.ParseHeader(h)
		if err != nil {
			return &optionError{Name: "header", Value: h, Why: err.Error()}
		}
		if strings.EqualFold(name, "Range") || strings.EqualFold(name, "Accept-Encoding") || strings.EqualFold(name, "Host") {
			return &optionError{Name: "header", Value: h, Why: "this header is the download's own"}
		}
	}
	o.Header = append(o.Header, list...)
	return nil
}

// clientDir turns a dir option into a path relative to root: an absolute
// dir must be root or under it (AriaNg sends the global dir back, absolute),
// a relative one is taken under root. Either may not leave root, nor
// reach the daemon's state directory.
func clientDir(root, dir string) (string, error) {
	if strings.ContainsRune(dir, 0) {
		return "", fmt.Errorf("a NUL in a path")
	}
	rel := dir
	if filepath.IsAbs(dir) {
		r, err := filepath.Rel(root, filepath.Clean(dir))
		if err != nil || !filepath.IsLocal(r) && r != "." {
			return "", fmt.Errorf("not inside the daemon's directory %s", root)
		}
		rel = r
	} else if !filepath.IsLocal(dir) {
		return "", fmt.Errorf("not a relative path inside the daemon's directory")
	}
	rel = filepath.Clean(rel)
	if rel == "." {
		return "", nil
	}
	if first, _, _ := strings.Cut(filepath.ToSlash(rel), "/"); first == stateDirName {
		return "", fmt.Errorf("the daemon's own directory")
	}
	return rel, nil
}

// clientName checks an out option: a relative path that stays inside its
// directory, as the names of an -i list.
func clientName(out string) error {
	switch {
	case out == "":
		return fmt.Errorf("empty")
	case strings.ContainsRune(out, 0):
		return fmt.Errorf("a NUL in a path")
	case !filepath.IsLocal(out):
		return fmt.Errorf("not a relative path inside the directory")
	}
	if first, _, _ := strings.Cut(filepath.ToSlash(filepath.Clean(out)), "/"); first == stateDirName {
		return fmt.Errorf("the daemon's own directory")
	}
	return nil
}

// checkURI refuses what is not an http or https URL: the daemon fetches
// for its clients, it does not read local files for them.
func checkURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("uri %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("uri %q: only http and https URLs are downloaded", raw)
	}
	return nil
}

// request makes the library request of a task. dir is the task's
// directory, already made safe (safeDir); limit caps the rate when the
// global limit is lower than the task's.
func (r *record) request(dir string, limit int64) *dlflow.Request {
	req := &dlflow.Request{Dir: dir, Path: r.Opts.Out, Checksum: r.Opts.Checksum, Label: r.GID}
	if len(r.URIs) > 0 {
		req.URL, req.Mirrors = r.URIs[0], r.URIs[1:]
	}
	if r.Metalink != "" {
		req.URL, req.Mirrors, req.Checksum = "", nil, ""
		req.Metalink, req.MetalinkFile = r.Metalink, r.MetalinkFile
	}
	// split is aria2's connections for one download, and
	// max-connection-per-server its cap per server; dlflow opens
	// Connections to each source, so the smaller of the two is asked.
	switch o := r.Opts; {
	case o.Split > 0 && o.MaxConn > 0:
		req.Connections = min(o.Split, o.MaxConn)
	case o.Split > 0:
		req.Connections = o.Split
	case o.MaxConn > 0:
		req.Connections = o.MaxConn
	}
	if len(r.Opts.Header) > 0 {
		req.Header = http.Header{}
		for _, h := range r.Opts.Header {
			if name, value, err := httpx.ParseHeader(h); err == nil {
				req.Header.Add(name, value)
			}
		}
	}
	req.LimitRate = r.Opts.LimitRate
	if limit > 0 && (req.LimitRate == 0 || limit < req.LimitRate) {
		req.LimitRate = limit
	}
	return req
}
