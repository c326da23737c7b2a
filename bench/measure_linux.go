package bench

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// timeTool is GNU time, which measure runs every child under to read its
// peak RSS, or "" when it is not installed.
//
// The child's own wait4 figure is not it: Go starts children with vfork,
// and Linux carries the peak RSS of the memory a process leaves at exec
// into its own, so every child's "peak" would be at least the bench's RSS
// (17 MiB with the built-in origin, more than curl or axel need). GNU time
// starts the command with a real fork from its own tiny process.
var timeTool = sync.OnceValue(func() string {
	path, err := exec.LookPath("time")
	if err != nil {
		return ""
	}
	if out, err := exec.Command(path, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "GNU") {
		return ""
	}
	return path
})

// underTime makes cmd run under the GNU time at timePath, which writes the
// peak RSS in KiB to rssFile.
func underTime(cmd *exec.Cmd, timePath, rssFile string) {
	cmd.Args = append([]string{"time", "-q", "-f", "%M", "-o", rssFile, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = timePath
	// Cancelling must stop the command, not only time: kill the process
	// group they share.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// childRSS is the peak RSS that wait4 reported for a child, in bytes.
func childRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10 // Linux reports KiB
	}
	return 0
}

// syncDisks writes back every dirty page, so that a run does not pay for
// the one before.
func syncDisks() { unix.Sync() }
