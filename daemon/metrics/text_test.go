package metrics_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dlflow/dlflow/daemon/metrics"
)

// wantText is knownEngine's scrape, byte for byte as client_golang's
// registry wrote it before the package wrote the format itself (issue 20):
// families by name, series by label values, shortest floats.
const wantText = `# HELP dlflow_download_rate_bytes_per_second Download rate of all tasks.
# TYPE dlflow_download_rate_bytes_per_second gauge
dlflow_download_rate_bytes_per_second 2.5000005e+06
# HELP dlflow_downloaded_bytes_total Bytes downloaded by all tasks since the daemon started.
# TYPE dlflow_downloaded_bytes_total counter
dlflow_downloaded_bytes_total 1.23456789e+08
# HELP dlflow_stage_busy_seconds_total Time a pipeline stage of the task spent working.
# TYPE dlflow_stage_busy_seconds_total counter
dlflow_stage_busy_seconds_total{gid="2089b05ecca3d829",stage="reader"} 1.5
dlflow_stage_busy_seconds_total{gid="2089b05ecca3d829",stage="sink"} 3
# HELP dlflow_stage_wait_input_seconds_total Time a pipeline stage of the task spent waiting for input.
# TYPE dlflow_stage_wait_input_seconds_total counter
dlflow_stage_wait_input_seconds_total{gid="2089b05ecca3d829",stage="reader"} 0.25
dlflow_stage_wait_input_seconds_total{gid="2089b05ecca3d829",stage="sink"} 0.5
# HELP dlflow_stage_wait_output_seconds_total Time a pipeline stage of the task spent waiting for its output to be taken.
# TYPE dlflow_stage_wait_output_seconds_total counter
dlflow_stage_wait_output_seconds_total{gid="2089b05ecca3d829",stage="reader"} 2
dlflow_stage_wait_output_seconds_total{gid="2089b05ecca3d829",stage="sink"} 0
# HELP dlflow_task_completed_bytes Bytes of the task's output that are complete (a resumed task starts above zero).
# TYPE dlflow_task_completed_bytes gauge
dlflow_task_completed_bytes{gid="2089b05ecca3d829"} 1.048576e+06
dlflow_task_completed_bytes{gid="d270c8a39f2f8f26"} 77
# HELP dlflow_task_connections Open connections of the task.
# TYPE dlflow_task_connections gauge
dlflow_task_connections{gid="2089b05ecca3d829"} 4
dlflow_task_connections{gid="d270c8a39f2f8f26"} 1
# HELP dlflow_task_download_rate_bytes_per_second Download rate of the task.
# TYPE dlflow_task_download_rate_bytes_per_second gauge
dlflow_task_download_rate_bytes_per_second{gid="2089b05ecca3d829"} 1.5e+06
dlflow_task_download_rate_bytes_per_second{gid="d270c8a39f2f8f26"} 1.0000005e+06
# HELP dlflow_task_retries_total Requests of the task that were retried.
# TYPE dlflow_task_retries_total counter
dlflow_task_retries_total{gid="2089b05ecca3d829"} 7
dlflow_task_retries_total{gid="d270c8a39f2f8f26"} 0
# HELP dlflow_task_size_bytes Size of the task's output; absent while unknown.
# TYPE dlflow_task_size_bytes gauge
dlflow_task_size_bytes{gid="2089b05ecca3d829"} 4.194304e+06
# HELP dlflow_task_source_drops_total Sources the task dropped (failed or too slow).
# TYPE dlflow_task_source_drops_total counter
dlflow_task_source_drops_total{gid="2089b05ecca3d829"} 1
dlflow_task_source_drops_total{gid="d270c8a39f2f8f26"} 0
# HELP dlflow_tasks Tasks by status: active, waiting (queued or paused), stopped (complete, error, removed; until purged).
# TYPE dlflow_tasks gauge
dlflow_tasks{status="active"} 2
dlflow_tasks{status="stopped"} 1
dlflow_tasks{status="waiting"} 3
`

// TestMetricsExactText: the text, its Content-Type, and the same bytes
// plain and gzipped (Go's client asks for gzip and undoes it unless the
// request names an Accept-Encoding of its own).
func TestMetricsExactText(t *testing.T) {
	srv := httptest.NewServer(metrics.Handler(knownEngine(), secret))
	defer srv.Close()
	for _, enc := range []string{"", "identity", "gzip;q=0"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, err = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if enc == "" && !resp.Uncompressed {
			t.Errorf("Accept-Encoding gzip: the response was not gzipped")
		}
		if enc != "" && resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q", enc, resp.Header.Get("Content-Encoding"))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if body.String() != wantText {
			t.Errorf("Accept-Encoding %q: text differs:\n%s", enc, body.String())
		}
	}
}

// TestMetricsHostileLabels: GIDs and stage IDs with quotes, backslashes,
// newlines and braces come back from Prometheus' own parser exactly, and
// pass promtool; a GID or a stage ID that is not UTF-8 costs its own
// series only.
func TestMetricsHostileLabels(t *testing.T) {
	hostile := []string{`a"b`, `back\slash\`, "new\nline\n", `}{x="y",`, `\"\n`, "ü€☃", ""}
	e := &engine{snap: metrics.Snapshot{Active: 1}}
	for i, h := range hostile {
		e.snap.Tasks = append(e.snap.Tasks, metrics.Task{
			GID: h, CompletedBytes: int64(i + 1),
			Stages: []metrics.Stage{{ID: h, Busy: time.Duration(i+1) * time.Second}, {ID: "bad\xc3", Busy: time.Hour}},
		})
	}
	e.snap.Tasks = append(e.snap.Tasks, metrics.Task{GID: "\xff\xfe", CompletedBytes: 1e6})
	srv := httptest.NewServer(metrics.Handler(e, secret))
	defer srv.Close()
	_, body := scrape(t, srv.URL+"/metrics", "Bearer "+secret)

	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	done := map[string]float64{}
	for _, m := range families["dlflow_task_completed_bytes"].GetMetric() {
		done[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	busy := map[string]float64{}
	for _, m := range families["dlflow_stage_busy_seconds_total"].GetMetric() {
		l := m.GetLabel()
		if l[0].GetValue() != l[1].GetValue() {
			t.Errorf("stage %q of task %q: only the hostile stage, named as its task, belongs here", l[1].GetValue(), l[0].GetValue())
		}
		busy[l[0].GetValue()] = m.GetCounter().GetValue()
	}
	for i, h := range hostile {
		if done[h] != float64(i+1) || busy[h] != float64(i+1) {
			t.Errorf("%q: completed %v, busy %v; want %d", h, done[h], busy[h], i+1)
		}
	}
	if len(done) != len(hostile) || len(busy) != len(hostile) {
		t.Errorf("%d tasks and %d stages exposed, want %d each:\n%s", len(done), len(busy), len(hostile), body)
	}
	if strings.Contains(body, "\xff") || strings.Contains(body, "bad") {
		t.Errorf("a label that is not UTF-8 was served")
	}

	promtool := need(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s\n--- input:\n%s", err, out, body)
	}
}
