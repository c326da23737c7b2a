//go:build !linux && !windows

package sinks

// renameNoReplace renames oldpath to newpath unless newpath exists. Without
// Linux's RENAME_NOREPLACE it links and then removes: a hard link refuses
// an existing name as atomically as the rename would. A crash between the
// two leaves both names on one file; the next run refuses to write through
// a PATH.tmp with more than one link (see openTmp), so it cannot damage
// the output.
func renameNoReplace(oldpath, newpath string) error { return linkRename(oldpath, newpath) }
