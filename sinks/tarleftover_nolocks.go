//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris || windows)

package sinks

// leftoverLocks: lockFile takes no lock here (see lock_other.go), so
// leftovers of killed runs are not collected.
const leftoverLocks = false
