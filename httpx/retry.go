package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// RetryConfig is the retry policy of the HTTP stages. It is embedded in their
// configs (`koanf:",squash"`), so its keys sit next to the stage's own.
//
// Transient failures are retried: a connection reset or refused, a body cut
// short (EOF or unexpected EOF before the expected length), a stalled
// transfer, a timeout, and the statuses 408, 429, 500, 502, 503 and 504.
// Everything else is permanent and fails the stage at once: 401, 403, 404,
// 410, 416, any other unexpected status, a wrong Content-Range, a changed
// resource.
//
// Each retry waits an exponential backoff with full jitter (a random delay
// between 0 and min(MaxBackoff, Backoff x 2^(attempt-1))), or the server's
// Retry-After when it sent one (capped at 60s). Two budgets bound the
// retries: Attempts per piece of work (a range, or the stream), where a try
// that delivered bytes before failing does not count, and Total retries per
// run of the stage, shared by all its replicas. The probe applies the same
// policy to its tries, with a Total of its own (see ProbeWith).
type RetryConfig struct {
	Attempts   int           `koanf:"attempts" help:"tries per range (or per stream) before giving up; a try that delivered bytes does not count"`
	Total      int           `koanf:"total_retries" help:"retries allowed per run across all ranges and workers of the stage"`
	Backoff    time.Duration `koanf:"backoff" help:"first retry delay; doubles on each retry, with full jitter"`
	MaxBackoff time.Duration `koanf:"max_backoff" help:"longest retry delay (a server's Retry-After may ask up to 60s)"`
}

// RetryPolicy is implemented by the config of a stage that retries its
// requests (http.source, http.reader), so that the probe, the download's
// first request, retries as that stage would.
type RetryPolicy interface {
	RetryPolicy() RetryConfig
}

// RetryPolicySetter is implemented by a pointer to such a config, so that
// a download can replace the policy a topology gave (dlflow.Request.Retry).
type RetryPolicySetter interface {
	RetryPolicy
	SetRetryPolicy(RetryConfig)
}

// DefaultRetry is the retry policy a stage gets for keys the user did not
// set.
var DefaultRetry = RetryConfig{Attempts: 5, Total: 50, Backoff: 250 * time.Millisecond, MaxBackoff: 10 * time.Second}

// Validate reports the first setting of c that is out of range.
func (c RetryConfig) Validate() error {
	switch {
	case c.Attempts < 1:
		return fmt.Errorf("attempts must be at least 1, got %d", c.Attempts)
	case c.Total < 0:
		return fmt.Errorf("total_retries must be 0 or more, got %d", c.Total)
	case c.Backoff < 0:
		return fmt.Errorf("backoff must not be negative, got %v", c.Backoff)
	case c.MaxBackoff < c.Backoff:
		return fmt.Errorf("max_backoff (%v) must be at least backoff (%v)", c.MaxBackoff, c.Backoff)
	}
	return nil
}

// RetryBudget is the Total budget of one run of a stage (or of a probe):
// a stage value holds it so that all replicas draw from the same counter,
// and resets it in Start. It is safe for concurrent use.
type RetryBudget struct{ left, used atomic.Int64 }

// Reset gives the budget total retries and forgets those used.
func (b *RetryBudget) Reset(total int) {
	b.left.Store(int64(total))
	b.used.Store(0)
}

// Take spends one retry; false when none is left.
func (b *RetryBudget) Take() bool {
	if b.left.Add(-1) < 0 {
		return false
	}
	b.used.Add(1)
	return true
}

// IsTransient reports whether err is worth retrying under the policy
// described on RetryConfig. Cancellation is never transient.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		switch he.Status {
		case http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var (
		re  *RangeError
		ee  *EncodingError
		rde *RedirectError
	)
	if errors.As(err, &re) || errors.As(err, &ee) || errors.As(err, &rde) || errors.Is(err, ErrResourceChanged) {
		return false
	}
	if errors.Is(err, ErrStalled) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Retrier applies the policy to one piece of work. It is not safe for
// concurrent use: each replica (or probe) makes its own.
type Retrier struct {
	Config RetryConfig
	Budget *RetryBudget // shared by the pieces of one run; nil: Config.Total alone
	// Owner names whose Total is spent in the error: "stage" when empty.
	Owner   string
	attempt int // tries of the current piece that delivered nothing
}

// Attempt is the number of failed tries of the current piece that
// delivered nothing.
func (r *Retrier) Attempt() int { return r.attempt }

// Used returns the retries taken from the budget.
func (b *RetryBudget) Used() int64 { return b.used.Load() }

// Next is called after a failed try of the piece. It returns how long to
// wait before trying again, or the error to fail with: err itself when it is
// permanent, err wrapped when a budget is spent, ctx's error when ctx is
// done. progressed says the failed try delivered bytes, which resets the
// per-piece count. The caller waits with Sleep, so that it can log first.
func (r *Retrier) Next(ctx context.Context, err error, progressed bool) (time.Duration, error) {
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if !IsTransient(err) {
		return 0, err
	}
	if progressed {
		r.attempt = 0
	}
	r.attempt++
	if r.attempt >= r.Config.Attempts {
		return 0, fmt.Errorf("giving up after %d attempts: %w", r.attempt, err)
	}
	if !r.takeBudget() {
		owner := r.Owner
		if owner == "" {
			owner = "stage"
		}
		return 0, fmt.Errorf("giving up: the %s's %d retries are spent: %w", owner, r.Config.Total, err)
	}
	return r.delay(err), nil
}

// takeBudget spends one retry of the run's budget.
func (r *Retrier) takeBudget() bool {
	if r.Budget == nil {
		r.Budget = new(RetryBudget)
		r.Budget.Reset(r.Config.Total)
	}
	return r.Budget.Take()
}

func (r *Retrier) delay(err error) time.Duration {
	var he *HTTPError
	if errors.As(err, &he) && he.hasRetryAfter {
		return he.retryAfter
	}
	ceiling := r.Config.MaxBackoff
	if shift := r.attempt - 1; shift < 62 && r.Config.Backoff <= r.Config.MaxBackoff>>shift {
		ceiling = r.Config.Backoff << shift
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// sleep waits d or until ctx is done, whichever is first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
