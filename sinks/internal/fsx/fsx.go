// Package fsx holds the file system calls that the sinks of package sinks
// and of package sinks/archive share: locks that tell a live run from a
// dead one, directory syncs, a probe that a directory takes new files, and
// a rename that never replaces. It is internal to sinks/..., so none of it
// is part of the API a stage author sees.
package fsx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrLocked is LockFile's error when another open of the file (in this
// process or another) holds the lock.
var ErrLocked = errors.New("locked")

// IsDir reports, as an output's error, why dir cannot hold an output:
// it does not exist, or it is not a directory; nil when it is one.
func IsDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output directory %s is not a directory", dir)
	}
	return nil
}

// ProbeDir checks that dir takes a new file by making one. A real probe,
// not access(2): it also catches read-only mounts, ACLs, quotas and full
// inode tables. Its error says the directory is not writable.
//
// A directory that took a probe within writableFor is not probed again:
// a batch into one directory probes it once a second, not once a file
// (the probe's create and remove cost about as much CPU as the download
// of a small file's own create). A directory that stops taking files
// within that second fails the run at the sink's create instead, after
// the first request. It is safe for concurrent use.
func ProbeDir(dir string) error {
	key := filepath.Clean(dir)
	if t, ok := writable.Load(key); ok && time.Since(t.(time.Time)) < writableFor {
		return nil
	}
	probe, err := CreateTemp(dir, ".dlflow-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	name := probe.Name()
	cerr := probe.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("output directory %s: remove probe file: %w", dir, err)
	}
	if cerr != nil {
		return fmt.Errorf("output directory %s: %w", dir, cerr)
	}
	writable.Store(key, time.Now())
	return nil
}

var (
	// writable holds when each directory last took a probe file.
	writable sync.Map
	// CreateTemp makes the probe file; tests replace it to count the
	// probes (not while a probe runs).
	CreateTemp = os.CreateTemp
)

// writableFor is how long a directory that took a probe file is taken to
// take files.
const writableFor = time.Second
