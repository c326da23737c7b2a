//go:build !unix

package cmd

import "os"

// stdoutClosed is false where the runtime does not put /dev/null in
// place of a closed stdout.
func stdoutClosed(*os.File) bool { return false }
