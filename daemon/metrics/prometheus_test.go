package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dlflow/dlflow/daemon/metrics"
)

// TestMetricsPrometheusScrape: a real Prometheus server scrapes the handler
// with bearer auth every second and its query API returns the snapshot's
// values; a second job with a wrong secret is refused (up == 0).
func TestMetricsPrometheusScrape(t *testing.T) {
	bin := need(t, "prometheus")
	target := httptest.NewServer(metrics.Handler(knownEngine(), secret))
	defer target.Close()
	api := startPrometheus(t, bin, target.Listener.Addr().String())

	const a = `gid="2089b05ecca3d829"`
	want := map[string]float64{
		`up{job="dlflow"}`:                                                              1,
		`up{job="wrongsecret"}`:                                                         0,
		`dlflow_downloaded_bytes_total{job="dlflow"}`:                                   123456789,
		`dlflow_download_rate_bytes_per_second{job="dlflow"}`:                           2500000.5,
		`dlflow_tasks{job="dlflow",status="waiting"}`:                                   3,
		`dlflow_task_retries_total{job="dlflow",` + a + `}`:                             7,
		`dlflow_task_size_bytes{job="dlflow",` + a + `}`:                                4194304,
		`dlflow_stage_busy_seconds_total{job="dlflow",` + a + `,stage="reader"}`:        1.5,
		`dlflow_stage_wait_output_seconds_total{job="dlflow",` + a + `,stage="reader"}`: 2,
		`count(dlflow_task_completed_bytes{job="dlflow"})`:                              2,
		`count({job="wrongsecret",__name__=~"dlflow_.*"}) or vector(0)`:                 0,
	}
	deadline := time.Now().Add(90 * time.Second)
	got := map[string]string{}
	for attempt := 0; ; attempt++ {
		missing := 0
		for q, v := range want {
			g, err := query(api, q)
			got[q] = fmt.Sprintf("%v (%v)", g, err)
			if err != nil || g != v {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) || attempt > 400 {
			for q, v := range want {
				t.Logf("%s = %s, want %v", q, got[q], v)
			}
			t.Fatalf("prometheus did not return the expected values in time (%d wrong)", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startPrometheus runs prometheus on a free loopback port with a scrape
// config for target and returns its base URL once it is ready. Prometheus
// takes a fixed port, so a port taken between the probe and its bind is
// retried on another.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dlflow
    authorization: {credentials: %q}
    static_configs: [{targets: [%q]}]
  - job_name: wrongsecret
    authorization: {credentials: "wrong"}
    static_configs: [{targets: [%q]}]
`, secret, target, target)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for try := 0; try < 3; try++ {
		addr := freePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		var logs syncBuffer
		cmd := exec.CommandContext(ctx, bin, "--config.file="+conf,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprint("data", try)),
			"--web.listen-address="+addr)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() { cancel(); <-exited }
		base := "http://" + addr
		if err := waitReady(base, exited); err != nil {
			stop()
			t.Logf("prometheus on %s: %v\n%s", addr, err, logs.String())
			continue
		}
		t.Cleanup(stop)
		return base
	}
	t.Fatal("prometheus did not start in 3 tries")
	return ""
}

// waitReady polls /-/ready for at most 60 s, or until the process exits.
func waitReady(base string, exited <-chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("not ready in 60 s")
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// query asks Prometheus' instant query API for q, which must give one
// sample, and returns its value.
func query(base, q string) (float64, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("decode: %w", err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", r.Status, r.Error)
	}
	if n := len(r.Data.Result); n != 1 {
		return 0, fmt.Errorf("%d samples", n)
	}
	s, ok := r.Data.Result[0].Value[1].(string)
	if !ok {
		return 0, fmt.Errorf("value %v is not a string", r.Data.Result[0].Value[1])
	}
	return strconv.ParseFloat(s, 64)
}

// syncBuffer collects a child's output, written from exec's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
