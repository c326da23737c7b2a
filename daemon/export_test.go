package daemon

import "time"

// SetBodyTimeout sets how long a POST body may take, for a test; it
// returns the previous value.
func SetBodyTimeout(d time.Duration) time.Duration {
	old := bodyTimeout
	bodyTimeout = d
	return old
}

// Stream limits, for tests.
const (
	MaxUnauthedStreams = maxUnauthedStreams
)

// SetBodyBudget sets the bytes of large POST bodies read at once and how
// long one waits for room, for a test; it returns a function that puts
// the previous values back.
func SetBodyBudget(n int64, wait time.Duration) func() {
	oldN, oldW := bodyBudget, bodyWait
	bodyBudget, bodyWait = n, wait
	return func() { bodyBudget, bodyWait = oldN, oldW }
}
