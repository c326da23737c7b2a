package cmd

import (
	"encoding/json"
	"os"

	"github.com/dlflow/dlflow/pipeline"
)

// newRunMetrics returns the per-stage metrics a download collects for the
// hidden --metrics-json flag (bench's child processes), or nil without it.
func newRunMetrics(path string) *pipeline.Metrics {
	if path == "" {
		return nil
	}
	return pipeline.NewMetrics()
}

// writeRunMetrics writes m's snapshot as JSON to path; nothing when m is
// nil.
func writeRunMetrics(path string, m *pipeline.Metrics) error {
	if m == nil || path == "" {
		return nil
	}
	data, err := json.MarshalIndent(m.Snapshot(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
