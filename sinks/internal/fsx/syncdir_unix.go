//go:build unix

package fsx

import "os"

// SyncDir makes the entries of dir durable (a rename, a new file).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
