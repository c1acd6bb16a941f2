package streamstest

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// sysProcAttr puts each redis-server in its own process group, so that a
// signal to the group also reaches any child it forked (AOF rewrite), and
// asks the kernel to SIGKILL it when the thread that started it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// spawn starts cmd from a goroutine locked to its OS thread for the life of
// the process. Pdeathsig fires when the starting thread exits, not the
// process, so starting from an ordinary goroutine could kill the server
// whenever the Go runtime retires that thread; a thread that never exits
// makes the signal fire exactly when the test binary dies.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread()
			for r := range spawnCh {
				r.err <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnCh <- spawnReq{cmd, errc}
	return <-errc
}
