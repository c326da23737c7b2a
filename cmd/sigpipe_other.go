//go:build !unix

package cmd

// catchSIGPIPE does nothing where there is no SIGPIPE: a write to a closed
// pipe returns an error.
func catchSIGPIPE() (stop func()) { return func() {} }
