//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package archive

// leftoverLocks: flock(2) locks a directory here, and tells a live run's
// leftovers from a dead run's.
const leftoverLocks = true
