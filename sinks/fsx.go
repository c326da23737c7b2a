package sinks

import "github.com/dlflow/dlflow/sinks/internal/fsx"

// The file system calls this package shares with package sinks/archive
// (see sinks/internal/fsx), under the names its code uses.
var (
	// lockFile takes an exclusive lock on f without waiting, or returns
	// errLocked; closing f releases it.
	lockFile = fsx.LockFile
	// errLocked is lockFile's error when another download holds the lock.
	errLocked = fsx.ErrLocked
	// syncDir makes the entries of a directory durable.
	syncDir = fsx.SyncDir
	// probeDir checks that a directory takes a new file.
	probeDir = fsx.ProbeDir
)
