package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// Timeline is where the time of one run of each dlflow cell went
// (Options.Timeline, the cell's last measured run): per connection a lane
// of its requests, the events that re-planned the work, and the busy time
// of the stages that receive chunks. Its JSON form is what
// `dlflow bench --timeline FILE.json` writes.
type Timeline struct {
	Cells []TimelineCell `json:"cells"`
}

// TimelineCell is one run of a cell. Times are nanoseconds since the
// child made its trace, just before its probe: the gap before the first
// request is the probe and the start of the run.
type TimelineCell struct {
	Scenario Scenario      `json:"scenario"`
	Label    string        `json:"label"`
	Server   string        `json:"server"`
	Bytes    int64         `json:"bytes"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	// Lanes are the readers, by stage and replica; Busy the stages'
	// busy intervals, a replica each.
	Lanes []TimelineLane       `json:"lanes"`
	Busy  []pipeline.TraceBusy `json:"busy"`
}

// TimelineLane is one reader (a connection): its requests in the order
// they were sent, and its events (steals it made, retries, drops).
type TimelineLane struct {
	Stage    string                  `json:"stage"`
	Reader   int                     `json:"reader"`
	Requests []pipeline.TraceRequest `json:"requests"`
	Events   []pipeline.TraceEvent   `json:"events"`
}

// Timeline gathers the traces of the dlflow cells that have one.
func (r *Result) Timeline() Timeline {
	t := Timeline{Cells: []TimelineCell{}}
	for _, c := range r.Cells {
		if c.Trace == nil {
			continue
		}
		t.Cells = append(t.Cells, timelineCell(c, r.Servers[c.Scenario]))
	}
	return t
}

// timelineCell sorts a cell's trace into lanes.
func timelineCell(c Cell, server string) TimelineCell {
	tr := c.Trace
	tc := TimelineCell{Scenario: c.Scenario, Label: c.Label, Server: server, Bytes: c.Bytes, Elapsed: tr.Elapsed,
		Lanes: []TimelineLane{}, Busy: tr.Busy}
	lane := func(stage string, reader int) *TimelineLane {
		i := slices.IndexFunc(tc.Lanes, func(l TimelineLane) bool { return l.Stage == stage && l.Reader == reader })
		if i < 0 {
			tc.Lanes = append(tc.Lanes, TimelineLane{Stage: stage, Reader: reader, Requests: []pipeline.TraceRequest{}, Events: []pipeline.TraceEvent{}})
			i = len(tc.Lanes) - 1
		}
		return &tc.Lanes[i]
	}
	for _, r := range tr.Requests {
		l := lane(r.Stage, r.Reader)
		l.Requests = append(l.Requests, r)
	}
	for _, e := range tr.Events {
		l := lane(e.Stage, e.Reader)
		l.Events = append(l.Events, e)
	}
	slices.SortFunc(tc.Lanes, func(a, b TimelineLane) int {
		if a.Stage != b.Stage {
			return strings.Compare(a.Stage, b.Stage)
		}
		return a.Reader - b.Reader
	})
	for i := range tc.Lanes {
		slices.SortStableFunc(tc.Lanes[i].Requests, func(a, b pipeline.TraceRequest) int { return int(a.Sent - b.Sent) })
	}
	if tc.Busy == nil {
		tc.Busy = []pipeline.TraceBusy{}
	}
	return tc
}

// readTrace reads a child's --trace-json file.
func readTrace(path string) (*pipeline.TraceSnapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("request trace: %w", err)
	}
	var tr pipeline.TraceSnapshot
	if err := json.Unmarshal(data, &tr); err != nil {
		return nil, fmt.Errorf("request trace: %w", err)
	}
	return &tr, nil
}

// JSON is the timeline as indented JSON.
func (t Timeline) JSON() ([]byte, error) {
	data, err := json.MarshalIndent(t, "", "  ")
	return append(data, '\n'), err
}
