package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
)

// Executor runs one task attempt, writing its output to stdout and stderr.
// The context is cancelled when the task's timeout passes or the agent is
// stopping for good; the executor must then stop the work and return.
type Executor interface {
	Exec(ctx context.Context, t events.TaskSubmitted, stdout, stderr io.Writer) Result
}

// Result is how an attempt ended.
type Result struct {
	Outcome  events.Outcome
	ExitCode int
	// Error explains a failure that is not the command's own exit status:
	// a command that could not be started, a timeout.
	Error string
}

// Exit codes for failures before or around the command, as shells use them.
const (
	ExitNotFound   = 127
	ExitNotRunable = 126
	ExitKilled     = 137
)

// killGrace is how long a killed command's output pipes may stay open (a
// daemonised grandchild holding them) before Wait gives up on them.
const killGrace = 2 * time.Second

// CommandExecutor runs the task's argv directly, never through a shell, in
// its own process group so a timeout kills the whole process tree.
type CommandExecutor struct{}

// Exec implements Executor.
func (CommandExecutor) Exec(ctx context.Context, t events.TaskSubmitted, stdout, stderr io.Writer) Result {
	if len(t.Argv) == 0 {
		return Result{Outcome: events.Failed, ExitCode: ExitNotRunable,
			Error: "no command given: pass it after --, as in: celeroot task run command --target web1 -- uname -a"}
	}
	return runArgv(ctx, t.Argv, nil, t.Timeout(), stdout, stderr)
}

// runArgv runs argv with extra environment variables env, in its own
// process group, killing the group when ctx ends.
func runArgv(ctx context.Context, argv, env []string, timeout time.Duration, stdout, stderr io.Writer) Result {
	return runArgvInput(ctx, argv, env, nil, timeout, stdout, stderr)
}

// runArgvInput is runArgv with stdin as the command's standard input (nil:
// none).
func runArgvInput(ctx context.Context, argv, env []string, stdin io.Reader, timeout time.Duration, stdout, stderr io.Writer) Result {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = childEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = killGrace
	if err := cmd.Start(); err != nil {
		code := ExitNotRunable
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, syscall.ENOENT) {
			code = ExitNotFound
		}
		msg := fmt.Sprintf("cannot start %q: %v", argv[0], err)
		fmt.Fprintf(stderr, "celeroot: %s\n", msg)
		return Result{Outcome: events.Failed, ExitCode: code, Error: msg}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// Kill the process group: the command and everything it started.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		reason := "interrupted: the agent is shutting down"
		out := events.Failed
		var ce *CancelError
		switch cause := context.Cause(ctx); {
		case errors.As(cause, &ce):
			reason, out = ce.Error(), events.Cancelled
		case errors.Is(cause, context.DeadlineExceeded):
			reason = fmt.Sprintf("timed out after %s; the process group was killed", timeout)
			out = events.TimedOut
		}
		fmt.Fprintf(stderr, "celeroot: %s\n", reason)
		return Result{Outcome: out, ExitCode: ExitKilled, Error: reason}
	}
	if err == nil {
		return Result{Outcome: events.Succeeded}
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code := exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Result{Outcome: events.Failed, ExitCode: 128 + int(ws.Signal()), Error: "killed by " + ws.Signal().String()}
		}
		return Result{Outcome: events.Failed, ExitCode: code}
	}
	return Result{Outcome: events.Failed, ExitCode: ExitNotRunable, Error: err.Error()}
}

// secretEnv are the agent's own secrets: a task does not inherit them, so
// that a task printing its environment does not put the Redis password in
// its log.
var secretEnv = []string{streams.EnvPassword, streams.EnvSentinelPassword}

// childEnv is the environment of a task's process: the agent's, without
// its secrets, plus extra.
func childEnv(extra []string) []string {
	env := os.Environ()
	out := make([]string, 0, len(env)+len(extra))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(secretEnv, name) {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// CancelError is the cause of a task context cancelled on request.
type CancelError struct{ Reason string }

func (e *CancelError) Error() string {
	if e.Reason == "" {
		return "cancelled on request"
	}
	return "cancelled on request: " + e.Reason
}

// NopExecutor succeeds at once without running anything; benchmarks use it
// to measure celeroot's own overhead.
type NopExecutor struct{}

// Exec implements Executor.
func (NopExecutor) Exec(context.Context, events.TaskSubmitted, io.Writer, io.Writer) Result {
	return Result{Outcome: events.Succeeded}
}
