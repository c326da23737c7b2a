package nginx

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr makes the kernel kill nginx if the test process dies
// without calling Close.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
