package bench

import (
	"slices"
	"time"

	"github.com/dlflow/dlflow/pipeline"
)

// Percentiles summarize a distribution: the 50th, 90th and 99th
// percentiles and how many values there were.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// percentilesOf describes xs; nil for none.
func percentilesOf(xs []float64) *Percentiles {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return &Percentiles{N: len(s), P50: quantile(s, 0.5), P90: quantile(s, 0.9), P99: quantile(s, 0.99)}
}

// ttfbs are the times to first byte (header) of a run's requests, in
// milliseconds: from sending a request to its answer's header. The probe's
// answer, which a reader takes over (Prefetched), and requests that got no
// header are left out.
func ttfbs(tr *pipeline.TraceSnapshot) []float64 {
	var out []float64
	for _, r := range tr.Requests {
		if r.Prefetched || r.Header <= 0 {
			continue
		}
		out = append(out, float64(r.Header-r.Sent)/float64(time.Millisecond))
	}
	return out
}

// readerMBps is each connection's throughput in a run, in MB/s: the bytes
// its requests delivered over the time from its first request's sending
// to its last one's end. Readers in reader order, a stage's after the
// other's in the order the trace lists them.
func readerMBps(tr *pipeline.TraceSnapshot) []float64 {
	type span struct {
		first, last time.Duration
		bytes       int64
	}
	type key struct {
		stage  string
		reader int
	}
	var order []key
	spans := map[key]*span{}
	for _, r := range tr.Requests {
		k := key{r.Stage, r.Reader}
		s := spans[k]
		if s == nil {
			s = &span{first: r.Sent, last: r.Ended}
			spans[k] = s
			order = append(order, k)
		}
		s.first, s.last, s.bytes = min(s.first, r.Sent), max(s.last, r.Ended), s.bytes+r.Bytes
	}
	stageRank := map[string]int{}
	for _, k := range order {
		if _, ok := stageRank[k.stage]; !ok {
			stageRank[k.stage] = len(stageRank)
		}
	}
	slices.SortStableFunc(order, func(a, b key) int {
		if d := stageRank[a.stage] - stageRank[b.stage]; d != 0 {
			return d
		}
		return a.reader - b.reader
	})
	var out []float64
	for _, k := range order {
		if s := spans[k]; s.last > s.first {
			out = append(out, float64(s.bytes)/(s.last-s.first).Seconds()/1e6)
		}
	}
	return out
}
