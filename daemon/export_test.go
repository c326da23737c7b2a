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
