package dlflow

import (
	"fmt"
	"time"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// Retry is how often, and after how long, a download tries a request
// again after a transient failure (a connection reset or refused, a body
// cut short, a stall, a timeout, a 408, 429, 500, 502, 503 or 504; see
// httpx.RetryConfig). Each range of a ranged download, and the stream of
// a streamed one, has the retries of its own; a try that delivered bytes
// before failing does not count.
type Retry struct {
	// Retries is the most retries of a request after its first try
	// (curl --retry): 0 tries once; -1 keeps the topology's, for a Retry
	// that sets only Delay.
	Retries int
	// Delay, when positive, is the longest wait before each retry, in
	// place of the doubling backoff: each wait is up to Delay, at random
	// (so that the connections of a download do not retry in step), or
	// the server's Retry-After when it sent one. 0 keeps the topology's
	// backoff.
	Delay time.Duration
}

// key is r in a wiring key: "" for nil.
func (r *Retry) key() string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%d/%v", r.Retries, r.Delay)
}

// policy is the retry policy of a stage whose own is p, with r applied:
// Retries+1 tries per piece of work, a run-wide budget of at least
// Retries, and Delay as the backoff and its ceiling.
func (r *Retry) policy(p httpx.RetryConfig) httpx.RetryConfig {
	if r.Retries >= 0 {
		p.Attempts = r.Retries + 1
		p.Total = max(p.Total, r.Retries)
	}
	if r.Delay > 0 {
		p.Backoff, p.MaxBackoff = r.Delay, r.Delay
	}
	return p
}

// applyRetry sets the retry policy of every node whose config takes one
// (http.source, http.reader) from r; nil changes nothing. The probe
// follows the policy of the first (probeOptions).
func applyRetry(reg *pipeline.Registry, nodes []pipeline.Node, r *Retry) {
	if r == nil {
		return
	}
	for i := range nodes {
		if nodes[i].Config == nil {
			if defaults, ok := reg.NewConfig(nodes[i].Type); ok {
				nodes[i].Config = defaults
			}
		}
		if s, ok := nodes[i].Config.(httpx.RetryPolicySetter); ok {
			s.SetRetryPolicy(r.policy(s.RetryPolicy()))
		}
	}
}

// MaxTimeError is the error of a download that ran past
// Request.MaxTime. Its partial data stays for a later resume.
type MaxTimeError struct {
	MaxTime time.Duration
}

func (e *MaxTimeError) Error() string {
	return fmt.Sprintf("stopped after %v, the time limit of the download", e.MaxTime)
}
