//go:build unix && !linux

package streamstest

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts each redis-server in its own process group, so that a
// signal to the group also reaches any child it forked (AOF rewrite).
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// spawn starts cmd.
func spawn(cmd *exec.Cmd) error { return cmd.Start() }
