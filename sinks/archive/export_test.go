package archive

import "os"

// RemoveTree is removeTree, for tests that make trees deeper than
// os.RemoveAll removes.
var RemoveTree = removeTree

// LockLeftover locks p as a live run holds its temporary directory.
func LockLeftover(p string) (*os.File, error) { return lockLeftover(p) }
