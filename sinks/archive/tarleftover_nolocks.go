//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris)

package archive

// leftoverLocks: no lock here tells a live run's leftovers from a dead
// run's (no flock; Windows locks bytes of files, not directories, and
// keeping a directory open there could stop its rename), so leftovers of
// killed runs are not collected.
const leftoverLocks = false
