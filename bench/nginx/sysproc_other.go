//go:build !linux

package nginx

import "os/exec"

func setSysProcAttr(*exec.Cmd) {}
