package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// summary is the end of a download as the user and scripts see it: one line
// on stderr, or with --json one JSON object on stdout. The JSON names are a
// contract (bench and scripts parse them); add fields, never rename.
type summary struct {
	URL          string  `json:"url"`               // redacted: no password
	Output       string  `json:"output"`            // the path written, "" when not known yet
	Bytes        int64   `json:"bytes"`             // the size of the output; on failure, the bytes done so far
	Seconds      float64 `json:"seconds"`           // wall time of the command, probe included
	RateBPS      float64 `json:"rate_bps"`          // bytes fetched by this run (resumed ones left out) per second
	Connections  int     `json:"connections"`       // workers of the http.reader stages, or 1
	Retries      int64   `json:"retries"`           // retries the HTTP stages took
	ResumedBytes int64   `json:"resumed_bytes"`     // bytes an earlier run left that this one did not fetch
	Checksum     string  `json:"checksum"`          // "algorithm:hex" when verified, else ""
	Topology     string  `json:"topology"`          // the -c file, or "(built-in) NAME.yaml"
	Skipped      bool    `json:"skipped,omitempty"` // --skip-existing left an existing output alone
	Error        string  `json:"error,omitempty"`
	ExitCode     int     `json:"exit_code,omitempty"`
}

// runStats is what the graph runs of one download reported.
type runStats struct {
	ran         bool
	connections int
	retries     int64 // over every run (a changed file restarts once)
	resumed     int64 // of the last run
	done        int64 // bytes done, by the progress tap, of the last run
	checksum    string
}

// add reads the counters of g after a run.
func (r *runStats) add(g *pipeline.Graph) {
	r.ran = true
	r.connections = max(g.Connections(), 1)
	for _, rr := range pipeline.Reporters[pipeline.RetryReporter](g) {
		r.retries += rr.Retries()
	}
	r.resumed, r.done, r.checksum = 0, 0, ""
	if taps := pipeline.Reporters[pipeline.ProgressReporter](g); len(taps) > 0 {
		p := taps[0].Progress()
		r.done, r.resumed = p.Done, p.Resumed
	}
	for _, v := range pipeline.Reporters[pipeline.Verifier](g) {
		if vv := v.Verification(); vv.Verified {
			r.checksum = vv.Algorithm + ":" + vv.Digest
		}
	}
}

func (d *download) summary(err error, code int) summary {
	elapsed := time.Since(d.begun)
	s := summary{
		URL:          d.url,
		Output:       d.target,
		Bytes:        d.stats.done,
		Seconds:      elapsed.Seconds(),
		Connections:  max(d.stats.connections, 1),
		Retries:      d.stats.retries,
		ResumedBytes: d.stats.resumed,
		Checksum:     d.stats.checksum,
		Topology:     d.topology,
	}
	if err == nil && d.target != "" {
		if fi, serr := os.Stat(d.target); serr == nil {
			s.Bytes = fi.Size()
		}
	}
	if s.Seconds > 0 {
		s.RateBPS = float64(max(s.Bytes-s.ResumedBytes, 0)) / s.Seconds
	}
	if err != nil {
		s.Error, s.ExitCode = errorText(err), code
	}
	return s
}

// errorText is the message fail prints, without the "dlflow: " prefix.
func errorText(err error) string {
	if errors.As(err, new(*usageError)) {
		return strings.TrimSpace(err.Error())
	}
	return oneLine(err.Error())
}

// line is the human summary of a successful download:
//
//	dlflow: saved big.iso: 200.0 MiB in 9.81s, 20.4 MiB/s, 8 connections, 0 retries, sha256:9f86... verified
func (s summary) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dlflow: saved %s: %s in %s, %s", s.Output, humanBytes(float64(s.Bytes)),
		time.Duration(s.Seconds*float64(time.Second)).Round(10*time.Millisecond), humanRate(s.RateBPS))
	fmt.Fprintf(&b, ", %d %s, %d %s", s.Connections, plural(s.Connections, "connection"), s.Retries, plural(int(s.Retries), "retry"))
	if s.ResumedBytes > 0 {
		fmt.Fprintf(&b, ", %s resumed", humanBytes(float64(s.ResumedBytes)))
	}
	if s.Checksum != "" {
		fmt.Fprintf(&b, ", %s verified", s.Checksum)
	}
	return b.String()
}

func plural(n int, word string) string {
	switch {
	case n == 1:
		return word
	case strings.HasSuffix(word, "y"):
		return strings.TrimSuffix(word, "y") + "ies"
	default:
		return word + "s"
	}
}

// writeJSON prints s as one line of JSON.
func (s summary) writeJSON(w io.Writer) {
	data, err := json.Marshal(s)
	if err != nil {
		return // a struct of strings and numbers always marshals
	}
	_, _ = w.Write(append(data, '\n'))
}
