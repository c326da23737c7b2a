//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris || windows)

package fsx

import "os"

// LockFile does nothing on systems without flock (AIX, Plan 9, WASI): two
// downloads of one output there are not detected, and must be kept apart
// by the caller.
func LockFile(f *os.File) error { return nil }
