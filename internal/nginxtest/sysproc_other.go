//go:build !linux

package nginxtest

import "os/exec"

func setSysProcAttr(*exec.Cmd) {}
