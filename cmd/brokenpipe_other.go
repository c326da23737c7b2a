//go:build !windows

package cmd

// brokenPipeErrno reports errors other than EPIPE that say a pipe's reader
// went away: none outside Windows.
func brokenPipeErrno(error) bool { return false }
