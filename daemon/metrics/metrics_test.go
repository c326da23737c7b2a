package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dlflow/dlflow/daemon/metrics"
)

const secret = "s3cr3t-metrics"

// engine is a Source with fixed figures; it counts its calls so the tests
// can hold the "one snapshot per scrape" contract.
type engine struct {
	snap  metrics.Snapshot
	calls atomic.Int64
}

func (e *engine) MetricsSnapshot() metrics.Snapshot {
	e.calls.Add(1)
	return e.snap
}

func knownEngine() *engine {
	return &engine{snap: metrics.Snapshot{
		Active: 2, Waiting: 3, Stopped: 1,
		DownloadedBytes: 123456789,
		DownloadSpeed:   2500000.5,
		Tasks: []metrics.Task{
			{
				GID: "2089b05ecca3d829", Status: "active",
				CompletedBytes: 1048576, TotalBytes: 4194304,
				Speed: 1500000, Connections: 4, Retries: 7, SourceDrops: 1,
				Stages: []metrics.Stage{
					{ID: "reader", Busy: 1500 * time.Millisecond, WaitIn: 250 * time.Millisecond, WaitOut: 2 * time.Second},
					{ID: "sink", Busy: 3 * time.Second, WaitIn: 500 * time.Millisecond},
				},
			},
			{
				// Size unknown: no dlflow_task_size_bytes series.
				GID: "d270c8a39f2f8f26", Status: "active",
				CompletedBytes: 77, Speed: 1000000.5, Connections: 1,
			},
			// A duplicate GID: exposed once, the first wins.
			{GID: "2089b05ecca3d829", CompletedBytes: 999},
		},
	}}
}

// scrape GETs the handler's text with the given Authorization header.
func scrape(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	code, body, err := get(url, auth)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// get is scrape for goroutines other than the test's.
func get(url, auth string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestMetricsValues: every series of the package doc, with the snapshot's
// exact values, one MetricsSnapshot call per scrape.
func TestMetricsValues(t *testing.T) {
	e := knownEngine()
	srv := httptest.NewServer(metrics.Handler(e, secret))
	defer srv.Close()

	code, body := scrape(t, srv.URL+"/metrics", "Bearer "+secret)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if n := e.calls.Load(); n != 1 {
		t.Errorf("MetricsSnapshot called %d times for one scrape, want 1", n)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	got := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			var v float64
			switch {
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			default:
				t.Errorf("%s: neither gauge nor counter", key)
			}
			got[key] = v
		}
	}
	const a, b = "gid=2089b05ecca3d829", "gid=d270c8a39f2f8f26"
	want := map[string]float64{
		"dlflow_tasks,status=active":                                    2,
		"dlflow_tasks,status=waiting":                                   3,
		"dlflow_tasks,status=stopped":                                   1,
		"dlflow_downloaded_bytes_total":                                 123456789,
		"dlflow_download_rate_bytes_per_second":                         2500000.5,
		"dlflow_task_completed_bytes," + a:                              1048576,
		"dlflow_task_size_bytes," + a:                                   4194304,
		"dlflow_task_download_rate_bytes_per_second," + a:               1500000,
		"dlflow_task_connections," + a:                                  4,
		"dlflow_task_retries_total," + a:                                7,
		"dlflow_task_source_drops_total," + a:                           1,
		"dlflow_stage_busy_seconds_total," + a + ",stage=reader":        1.5,
		"dlflow_stage_wait_input_seconds_total," + a + ",stage=reader":  0.25,
		"dlflow_stage_wait_output_seconds_total," + a + ",stage=reader": 2,
		"dlflow_stage_busy_seconds_total," + a + ",stage=sink":          3,
		"dlflow_stage_wait_input_seconds_total," + a + ",stage=sink":    0.5,
		"dlflow_stage_wait_output_seconds_total," + a + ",stage=sink":   0,
		"dlflow_task_completed_bytes," + b:                              77,
		"dlflow_task_download_rate_bytes_per_second," + b:               1000000.5,
		"dlflow_task_connections," + b:                                  1,
		"dlflow_task_retries_total," + b:                                0,
		"dlflow_task_source_drops_total," + b:                           0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
}

// TestMetricsAuth: without the right bearer token, 401 and no figures;
// the scheme is case-insensitive; an empty secret turns the check off.
func TestMetricsAuth(t *testing.T) {
	e := knownEngine()
	srv := httptest.NewServer(metrics.Handler(e, secret))
	defer srv.Close()
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + secret + "x",
		"Bearer " + secret[:len(secret)-1], "Basic " + secret, secret, "Bearer  " + secret} {
		code, body := scrape(t, srv.URL+"/metrics", auth)
		if code != http.StatusUnauthorized || strings.Contains(body, "dlflow_") {
			t.Errorf("Authorization %q: status %d, body %q; want 401 without figures", auth, code, body)
		}
	}
	if n := e.calls.Load(); n != 0 {
		t.Errorf("refused requests read %d snapshots", n)
	}
	if code, _ := scrape(t, srv.URL+"/metrics", "bearer "+secret); code != http.StatusOK {
		t.Errorf("lowercase scheme: status %d", code)
	}
	open := httptest.NewServer(metrics.Handler(e, ""))
	defer open.Close()
	if code, body := scrape(t, open.URL+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "dlflow_tasks") {
		t.Errorf("empty secret: status %d", code)
	}
}

// TestMetricsPromtool: the output passes `promtool check metrics`, the
// linter of Prometheus' own naming rules.
func TestMetricsPromtool(t *testing.T) {
	promtool := need(t, "promtool")
	srv := httptest.NewServer(metrics.Handler(knownEngine(), secret))
	defer srv.Close()
	_, body := scrape(t, srv.URL+"/metrics", "Bearer "+secret)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- input:\n%s", err, out.String(), body)
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		t.Errorf("promtool check metrics said: %s", s)
	}
}

// need finds a tool: skipped without it unless CI is set, where it fails.
func need(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found with CI set (.ci/run installs Debian's prometheus): %v", name, err)
	}
	t.Skipf("%s not installed (Debian's prometheus package)", name)
	return ""
}

// TestMetricsBadRowServesTheRest: a stage ID that is not UTF-8 (it would
// make a Prometheus label invalid) costs that series only.
func TestMetricsBadRowServesTheRest(t *testing.T) {
	e := knownEngine()
	e.snap.Tasks[0].Stages = append(e.snap.Tasks[0].Stages, metrics.Stage{ID: "bad\xff", Busy: time.Second})
	srv := httptest.NewServer(metrics.Handler(e, secret))
	defer srv.Close()
	code, body := scrape(t, srv.URL+"/metrics", "Bearer "+secret)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	for _, want := range []string{
		`dlflow_stage_busy_seconds_total{gid="2089b05ecca3d829",stage="reader"} 1.5`,
		`dlflow_task_completed_bytes{gid="d270c8a39f2f8f26"} 77`,
		`dlflow_downloaded_bytes_total 1.23456789e+08`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(body, "bad") {
		t.Errorf("the invalid series was served")
	}
}

// TestMetricsConcurrentScrapes: scrapes at once each read their own
// snapshot (run with -race: the collector shares nothing between them).
func TestMetricsConcurrentScrapes(t *testing.T) {
	e := knownEngine()
	srv := httptest.NewServer(metrics.Handler(e, secret))
	defer srv.Close()
	const workers, each = 8, 5
	var wg sync.WaitGroup
	bad := make(chan string, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				code, body, err := get(srv.URL+"/metrics", "Bearer "+secret)
				if err != nil || code != http.StatusOK || !strings.Contains(body, `dlflow_tasks{status="waiting"} 3`) {
					bad <- fmt.Sprintf("status %d, %v", code, err)
				}
			}
		})
	}
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Error(b)
	}
	if n := e.calls.Load(); n != workers*each {
		t.Errorf("%d snapshots for %d scrapes", n, workers*each)
	}
}
