//go:build !unix

package archive

import "os"

// removeTree removes dir and everything in it. Here it is os.RemoveAll:
// paths on these systems are too short for a tree deeper than the
// descriptor limit.
func removeTree(dir string) error { return os.RemoveAll(dir) }
