//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris || windows

package sinks

// leftoverLocks: lockFile takes a real lock here, which tells a live
// run's leftovers from a dead run's.
const leftoverLocks = true
