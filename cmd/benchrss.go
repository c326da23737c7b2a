package cmd

import (
	"fmt"
	"io"

	dlbench "github.com/dlflow/dlflow/bench"
	"github.com/dlflow/dlflow/pipeline"
)

// parseMaxRSS parses --max-rss into f.maxRSSBytes.
func (f *benchFlags) parseMaxRSS() error {
	if f.maxRSS == "" {
		return nil
	}
	n, err := pipeline.ParseByteSize(f.maxRSS)
	if err != nil || n <= 0 {
		return usagef("--max-rss: want a positive size such as 20MiB, got %q", f.maxRSS)
	}
	f.maxRSSBytes = int64(n)
	return nil
}

// overRSS writes a line to stderr for each dlflow cell of res whose peak
// RSS is above limit (0: none is), and reports whether one was. A cell
// whose platform does not tell its peak RSS (0) is not judged.
func overRSS(res *dlbench.Result, limit int64, stderr io.Writer) bool {
	if limit <= 0 {
		return false
	}
	over := false
	for _, c := range res.Cells {
		if c.Tool != "dlflow" || c.PeakRSS <= limit {
			continue
		}
		over = true
		fmt.Fprintf(stderr, "bench: %s: %s: peak RSS %v, above --max-rss %v\n", c.Scenario, c.Label,
			pipeline.ByteSize(c.PeakRSS), pipeline.ByteSize(limit))
	}
	return over
}
