//go:build !unix

package streamstest

import (
	"os"
	"os/exec"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func spawn(cmd *exec.Cmd) error { return cmd.Start() }

// signalProcess ends the process pid; without Unix signals there is no
// graceful variant.
func signalProcess(pid int, kill bool) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

// killGroup ends the process pid.
func killGroup(pid int) { signalProcess(pid, true) }

// processAlive reports whether a process with this pid may exist; without
// Unix signals it cannot tell, so it says yes.
func processAlive(pid int) bool { return true }
