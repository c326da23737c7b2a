//go:build !linux

package bench

import (
	"os"
	"os/exec"
)

// timeTool finds no GNU time: its use (a process group to kill, KiB
// figures) is Linux's.
func timeTool() string { return "" }

// underTime is not called where timeTool finds nothing.
func underTime(cmd *exec.Cmd, timePath, rssFile string) {
	panic("bench: GNU time is used on Linux only")
}

// childRSS is unknown here: rusage units differ between systems, and
// Windows has none.
func childRSS(*os.ProcessState) int64 { return 0 }

// syncDisks does nothing: the reference tools' dirty pages may then be
// written back during the next run.
func syncDisks() {}
