package daemon

import "time"

// Snapshot is the daemon's figures for metrics (the shape daemon/metrics'
// Source takes; the lead's glue converts it).
type Snapshot struct {
	Active, Waiting, Stopped int
	// DownloadedBytes is what every task fetched since the daemon
	// started (resumed bytes not counted again).
	DownloadedBytes int64
	// DownloadSpeed is the bytes per second of all tasks.
	DownloadSpeed float64
	Tasks         []TaskSnapshot
}

// TaskSnapshot is one active task's figures.
type TaskSnapshot struct {
	GID, Status                string
	CompletedBytes, TotalBytes int64
	Speed                      float64
	Connections                int
	// Retries counts the task's failed requests (retried ones included);
	// SourceDrops the sources it stopped using.
	Retries, SourceDrops int64
	Stages               []StageSnapshot
}

// StageSnapshot is one pipeline stage's time of an active task: busy,
// waiting for input, waiting to send.
type StageSnapshot struct {
	ID                    string
	Busy, WaitIn, WaitOut time.Duration
}

// MetricsSnapshot reads the figures now. Safe for concurrent use.
func (e *Engine) MetricsSnapshot() Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Snapshot{Active: len(e.active), Waiting: len(e.waiting), Stopped: len(e.stopped), DownloadedBytes: e.downloaded.Load()}
	for _, t := range e.active {
		ts := TaskSnapshot{GID: t.GID, Status: t.Status, TotalBytes: max(t.Total, 0), Retries: t.retries}
		if t.dl != nil {
			p := t.dl.Progress()
			ts.CompletedBytes, ts.Speed = p.Done, p.Rate
			if p.Total >= 0 {
				ts.TotalBytes = p.Total
			}
			s.DownloadedBytes += max(p.Done-p.Resumed, 0)
			for _, src := range p.Sources {
				ts.Retries += src.Errors
				ts.Connections += src.Connections
				if src.Dropped != "" {
					ts.SourceDrops++
				}
			}
			if len(p.Sources) == 0 {
				ts.Connections = len(p.Connections)
			}
		}
		if t.metrics != nil {
			for _, st := range t.metrics.Snapshot().Stages {
				ts.Stages = append(ts.Stages, StageSnapshot{ID: st.Stage, Busy: st.Busy, WaitIn: st.InputWait + st.WindowWait, WaitOut: st.SendBlocked})
			}
		}
		s.DownloadSpeed += ts.Speed
		s.Tasks = append(s.Tasks, ts)
	}
	return s
}
