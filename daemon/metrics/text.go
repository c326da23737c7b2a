package metrics

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// desc is one metric family: its name, HELP text (written as is: none holds
// a backslash or a newline), TYPE and label names (at most two).
type desc struct {
	name, help, typ string
	labels          []string
}

var (
	gidLabel   = []string{"gid"}
	stageLabel = []string{"gid", "stage"}

	descTasks        = &desc{"dlflow_tasks", "Tasks by status: active, waiting (queued or paused), stopped (complete, error, removed; until purged).", "gauge", []string{"status"}}
	descDownloaded   = &desc{"dlflow_downloaded_bytes_total", "Bytes downloaded by all tasks since the daemon started.", "counter", nil}
	descRate         = &desc{"dlflow_download_rate_bytes_per_second", "Download rate of all tasks.", "gauge", nil}
	descTaskDone     = &desc{"dlflow_task_completed_bytes", "Bytes of the task's output that are complete (a resumed task starts above zero).", "gauge", gidLabel}
	descTaskSize     = &desc{"dlflow_task_size_bytes", "Size of the task's output; absent while unknown.", "gauge", gidLabel}
	descTaskRate     = &desc{"dlflow_task_download_rate_bytes_per_second", "Download rate of the task.", "gauge", gidLabel}
	descTaskConns    = &desc{"dlflow_task_connections", "Open connections of the task.", "gauge", gidLabel}
	descTaskRetries  = &desc{"dlflow_task_retries_total", "Requests of the task that were retried.", "counter", gidLabel}
	descTaskDrops    = &desc{"dlflow_task_source_drops_total", "Sources the task dropped (failed or too slow).", "counter", gidLabel}
	descStageBusy    = &desc{"dlflow_stage_busy_seconds_total", "Time a pipeline stage of the task spent working.", "counter", stageLabel}
	descStageWaitIn  = &desc{"dlflow_stage_wait_input_seconds_total", "Time a pipeline stage of the task spent waiting for input.", "counter", stageLabel}
	descStageWaitOut = &desc{"dlflow_stage_wait_output_seconds_total", "Time a pipeline stage of the task spent waiting for its output to be taken.", "counter", stageLabel}
)

// sample is one series of a scrape: its family, its label values (as many
// as the family has label names) and its value.
type sample struct {
	d      *desc
	values [2]string
	v      float64
}

// samples turns one Snapshot into its series, deduplicated (the first GID,
// and the first stage ID within a task, wins) and without the series whose
// label values are not UTF-8: Prometheus refuses those, and one bad row
// must not cost the rest of the scrape.
func samples(s Snapshot) []sample {
	out := make([]sample, 0, 5+len(s.Tasks)*12)
	add := func(d *desc, v float64, values ...string) {
		var sm sample
		sm.d, sm.v = d, v
		copy(sm.values[:], values)
		out = append(out, sm)
	}
	add(descTasks, float64(s.Active), "active")
	add(descTasks, float64(s.Waiting), "waiting")
	add(descTasks, float64(s.Stopped), "stopped")
	add(descDownloaded, float64(s.DownloadedBytes))
	add(descRate, s.DownloadSpeed)

	seen := make(map[string]bool, len(s.Tasks))
	for _, t := range s.Tasks {
		if seen[t.GID] || !utf8.ValidString(t.GID) {
			continue
		}
		seen[t.GID] = true
		add(descTaskDone, float64(t.CompletedBytes), t.GID)
		if t.TotalBytes > 0 {
			add(descTaskSize, float64(t.TotalBytes), t.GID)
		}
		add(descTaskRate, t.Speed, t.GID)
		add(descTaskConns, float64(t.Connections), t.GID)
		add(descTaskRetries, float64(t.Retries), t.GID)
		add(descTaskDrops, float64(t.SourceDrops), t.GID)
		stages := make(map[string]bool, len(t.Stages))
		for _, st := range t.Stages {
			if stages[st.ID] || !utf8.ValidString(st.ID) {
				continue
			}
			stages[st.ID] = true
			add(descStageBusy, st.Busy.Seconds(), t.GID, st.ID)
			add(descStageWaitIn, st.WaitIn.Seconds(), t.GID, st.ID)
			add(descStageWaitOut, st.WaitOut.Seconds(), t.GID, st.ID)
		}
	}
	return out
}

// appendText appends the Prometheus text format (version 0.0.4) of ss to b:
// families sorted by name, each once with its HELP and TYPE, and within a
// family the series sorted by label values, as client_golang's registry
// wrote them before, so a scrape's text does not depend on the engine's
// order of tasks. ss is sorted in place.
func appendText(b []byte, ss []sample) []byte {
	slices.SortFunc(ss, func(x, y sample) int {
		return cmp.Or(strings.Compare(x.d.name, y.d.name),
			strings.Compare(x.values[0], y.values[0]),
			strings.Compare(x.values[1], y.values[1]))
	})
	var last *desc
	for _, s := range ss {
		if s.d != last {
			last = s.d
			b = append(b, "# HELP "...)
			b = append(b, s.d.name...)
			b = append(b, ' ')
			b = append(b, s.d.help...)
			b = append(b, "\n# TYPE "...)
			b = append(b, s.d.name...)
			b = append(b, ' ')
			b = append(b, s.d.typ...)
			b = append(b, '\n')
		}
		b = append(b, s.d.name...)
		for i, l := range s.d.labels {
			if i == 0 {
				b = append(b, '{')
			} else {
				b = append(b, ',')
			}
			b = append(b, l...)
			b = append(b, `="`...)
			b = appendLabelValue(b, s.values[i])
			b = append(b, '"')
		}
		if len(s.d.labels) > 0 {
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = appendValue(b, s.v)
		b = append(b, '\n')
	}
	return b
}

// appendLabelValue escapes v as the text format wants inside the quotes of
// a label value: backslash, double quote and line feed, and nothing else
// (v is valid UTF-8, which the format carries as is).
func appendLabelValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendValue writes v in the shortest form that reads back exactly, with
// NaN, +Inf and -Inf spelled as Prometheus does, and -0 as 0.
func appendValue(b []byte, v float64) []byte {
	if v == 0 {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
