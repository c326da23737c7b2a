package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector turns one Snapshot into const metrics per Collect. It holds no
// state besides its descriptions, so concurrent Collects are as safe as the
// Source's MetricsSnapshot.
type collector struct {
	src Source

	tasks, downloaded, rate                 *prometheus.Desc
	taskDone, taskSize, taskRate, taskConns *prometheus.Desc
	taskRetries, taskDrops                  *prometheus.Desc
	stageBusy, stageWaitIn, stageWaitOut    *prometheus.Desc
}

func newCollector(src Source) *collector {
	gid := []string{"gid"}
	stage := []string{"gid", "stage"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("dlflow_"+name, help, labels, nil)
	}
	return &collector{
		src:          src,
		tasks:        d("tasks", "Tasks by status: active, waiting (queued or paused), stopped (complete, error, removed; until purged).", []string{"status"}),
		downloaded:   d("downloaded_bytes_total", "Bytes downloaded by all tasks since the daemon started.", nil),
		rate:         d("download_rate_bytes_per_second", "Download rate of all tasks.", nil),
		taskDone:     d("task_completed_bytes", "Bytes of the task's output that are complete (a resumed task starts above zero).", gid),
		taskSize:     d("task_size_bytes", "Size of the task's output; absent while unknown.", gid),
		taskRate:     d("task_download_rate_bytes_per_second", "Download rate of the task.", gid),
		taskConns:    d("task_connections", "Open connections of the task.", gid),
		taskRetries:  d("task_retries_total", "Requests of the task that were retried.", gid),
		taskDrops:    d("task_source_drops_total", "Sources the task dropped (failed or too slow).", gid),
		stageBusy:    d("stage_busy_seconds_total", "Time a pipeline stage of the task spent working.", stage),
		stageWaitIn:  d("stage_wait_input_seconds_total", "Time a pipeline stage of the task spent waiting for input.", stage),
		stageWaitOut: d("stage_wait_output_seconds_total", "Time a pipeline stage of the task spent waiting for its output to be taken.", stage),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.tasks, c.downloaded, c.rate,
		c.taskDone, c.taskSize, c.taskRate, c.taskConns, c.taskRetries, c.taskDrops,
		c.stageBusy, c.stageWaitIn, c.stageWaitOut,
	} {
		ch <- d
	}
}

// Collect reads one Snapshot and sends every series of it.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.MetricsSnapshot()
	send := func(d *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, typ, v, labels...)
		if err != nil {
			// A label that is not UTF-8 (a stage ID from a config file):
			// the registry reports it and, with ContinueOnError, serves
			// the rest.
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) { send(d, prometheus.GaugeValue, v, labels...) }
	counter := func(d *prometheus.Desc, v float64, labels ...string) { send(d, prometheus.CounterValue, v, labels...) }
	gauge(c.tasks, float64(s.Active), "active")
	gauge(c.tasks, float64(s.Waiting), "waiting")
	gauge(c.tasks, float64(s.Stopped), "stopped")
	counter(c.downloaded, float64(s.DownloadedBytes))
	gauge(c.rate, s.DownloadSpeed)

	seen := make(map[string]bool, len(s.Tasks))
	for _, t := range s.Tasks {
		if seen[t.GID] {
			continue
		}
		seen[t.GID] = true
		gauge(c.taskDone, float64(t.CompletedBytes), t.GID)
		if t.TotalBytes > 0 {
			gauge(c.taskSize, float64(t.TotalBytes), t.GID)
		}
		gauge(c.taskRate, t.Speed, t.GID)
		gauge(c.taskConns, float64(t.Connections), t.GID)
		counter(c.taskRetries, float64(t.Retries), t.GID)
		counter(c.taskDrops, float64(t.SourceDrops), t.GID)
		stages := make(map[string]bool, len(t.Stages))
		for _, st := range t.Stages {
			if stages[st.ID] {
				continue
			}
			stages[st.ID] = true
			counter(c.stageBusy, st.Busy.Seconds(), t.GID, st.ID)
			counter(c.stageWaitIn, st.WaitIn.Seconds(), t.GID, st.ID)
			counter(c.stageWaitOut, st.WaitOut.Seconds(), t.GID, st.ID)
		}
	}
}
