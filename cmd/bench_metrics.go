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

// newRunTrace returns the trace a download records for the hidden
// --trace-json flag (bench --timeline's child processes), or nil without
// it.
func newRunTrace(path string) *pipeline.Trace {
	if path == "" {
		return nil
	}
	return pipeline.NewTrace()
}

// writeRunTrace writes t's snapshot as JSON to path; nothing when t is
// nil.
func writeRunTrace(path string, t *pipeline.Trace) error {
	if t == nil || path == "" {
		return nil
	}
	data, err := json.Marshal(t.Snapshot())
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
