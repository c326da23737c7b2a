//go:build !linux

package archive

// exchangeDirs cannot swap two directories in one step on this system:
// the caller renames the old one aside first.
func exchangeDirs(a, b string) error { return errNoExchange }
