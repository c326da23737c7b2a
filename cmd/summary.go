package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/cmd/internal/progress"
)

// summary is the end of a download as the user and scripts see it: one line
// on stderr, or with --json one JSON object on stdout. The JSON names are a
// contract (bench and scripts parse them); add fields, never rename.
type summary struct {
	URL          string  `json:"url"`                  // redacted: no password
	Output       string  `json:"output"`               // the path written, "" when not known yet
	Bytes        int64   `json:"bytes"`                // the size of the output; on failure, the bytes done so far
	Seconds      float64 `json:"seconds"`              // wall time of the command, probe included
	RateBPS      float64 `json:"rate_bps"`             // bytes fetched by this run (resumed ones left out) per second
	Connections  int     `json:"connections"`          // workers of the http.reader stages, or 1
	Retries      int64   `json:"retries"`              // retries the HTTP stages took
	ResumedBytes int64   `json:"resumed_bytes"`        // bytes an earlier run left that this one did not fetch
	Checksum     string  `json:"checksum"`             // "algorithm:hex" when verified, else ""
	Topology     string  `json:"topology"`             // the -c file, or "(built-in) NAME.yaml"
	Skipped      bool    `json:"skipped,omitempty"`    // --skip-existing left an existing output alone
	UpToDate     bool    `json:"up_to_date,omitempty"` // -N found the output as new as the server's copy
	// Sources is what each URL did, the primary first, for a download
	// with mirrors.
	Sources  []sourceSummary `json:"sources,omitempty"`
	Error    string          `json:"error,omitempty"`
	ExitCode int             `json:"exit_code,omitempty"`

	streamed  bool // Output is "-" (stdout) or a device or pipe, not a file
	extracted bool // Output is a directory the archive was unpacked into
}

// summaryOf is the summary of a download that ended with err (already
// worded for the CLI) and exit code code. url names the download when the
// library did not get to know it.
func summaryOf(url string, res *dlflow.Result, err error, code int) summary {
	if res == nil {
		res = &dlflow.Result{}
	}
	s := summary{
		URL:          res.URL,
		Output:       res.Path,
		Bytes:        res.Bytes,
		Seconds:      res.Elapsed.Seconds(),
		RateBPS:      res.Rate(),
		Connections:  max(res.Connections, 1),
		Retries:      res.Retries,
		ResumedBytes: res.Resumed,
		Checksum:     res.Checksum,
		Topology:     res.Topology,
		Skipped:      res.Skipped,
		UpToDate:     res.UpToDate,
	}
	if s.URL == "" {
		s.URL = url
	}
	for _, src := range res.Sources {
		s.Sources = append(s.Sources, sourceSummary{URL: src.URL, Bytes: src.Bytes, RateBPS: src.Rate(),
			Errors: src.Errors, Dropped: src.Dropped})
	}
	if s.Skipped || s.UpToDate {
		s.RateBPS = 0
	}
	if err != nil {
		s.Error, s.ExitCode = errorText(err), code
	}
	return s
}

// sourceSummary is one URL of a download with mirrors.
type sourceSummary struct {
	URL     string  `json:"url"`               // redacted
	Bytes   int64   `json:"bytes"`             // delivered by this run
	RateBPS float64 `json:"rate_bps"`          // while it had requests open
	Errors  int64   `json:"errors"`            // failed requests
	Dropped string  `json:"dropped,omitempty"` // why it stopped being used
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
	what := "saved " + s.Output
	switch {
	case s.streamed && s.Output == "-":
		what = "streamed to stdout"
	case s.streamed:
		what = "streamed to " + s.Output
	case s.extracted:
		what = "extracted into " + s.Output
	}
	fmt.Fprintf(&b, "dlflow: %s: %s in %s, %s", what, progress.Bytes(float64(s.Bytes)),
		time.Duration(s.Seconds*float64(time.Second)).Round(10*time.Millisecond), progress.Rate(s.RateBPS))
	fmt.Fprintf(&b, ", %d %s, %d %s", s.Connections, plural(s.Connections, "connection"), s.Retries, plural(int(s.Retries), "retry"))
	if s.ResumedBytes > 0 {
		fmt.Fprintf(&b, ", %s resumed", progress.Bytes(float64(s.ResumedBytes)))
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
