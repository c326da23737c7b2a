//go:build !linux

package sinks

import "os"

// Elsewhere than on Linux the sink does without what only Linux offers:
// no preallocation (the writes allocate as they go, and a full disk fails
// the run midway rather than at once), no writeback hints nor pacing (the
// final fsync flushes everything), and fsync for each checkpoint.

func preallocate(f *os.File, size int64) error { return nil }

const writebackHints = false

func startWriteback(fd int, off, n int64) {}

func awaitWriteback(fd int, off, n int64) {}

func datasync(f *os.File) error { return f.Sync() }
