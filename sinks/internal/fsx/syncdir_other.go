//go:build !unix

package fsx

// SyncDir does nothing: Windows cannot flush a directory handle, and NTFS
// journals its directory entries; the other systems without unix (Plan 9,
// WASI) offer no directory sync.
func SyncDir(dir string) error { return nil }
