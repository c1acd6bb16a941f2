package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v3"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Version is the build's version, set with -ldflags "-X ...ctl.Version=v1.2.3".
var Version = "dev"

// Main runs the CLI with the process's arguments and standard streams and
// returns the exit code. SIGINT and SIGTERM cancel the command's context.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
}

// usageError is a mistake in how a command was called (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries a specific exit code with an already printed outcome
// (a task that failed under --wait).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// Run runs the CLI with args (args[0] is the program name) and returns
// the exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	err := root.Run(ctx, args)
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(stderr, "celeroot: %s\n", ee.msg)
		}
		return ee.code
	}
	name := commandPath(root, args)
	var ue usageError
	if errors.As(err, &ue) || isUsage(err) {
		fmt.Fprintf(stderr, "celeroot: %s%v\nRun 'celeroot %shelp' for usage.\n", name, err, strings.TrimPrefix(name, ": "))
		return ExitUsage
	}
	fmt.Fprintf(stderr, "celeroot: %s%v\n", name, err)
	return ExitFailure
}

// isUsage recognises the usage errors urfave/cli returns itself.
func isUsage(err error) bool {
	msg := err.Error()
	for _, s := range []string{"flag provided but not defined", "flag needs an argument", "invalid value", "Required flag", "Required flags", "No help topic for", "invalid boolean"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// commandPath returns "task run: " for the subcommand args name, or "".
func commandPath(root *cli.Command, args []string) string {
	var names []string
	cmd := root
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") {
			continue
		}
		next := cmd.Command(a)
		if next == nil {
			break
		}
		names = append(names, next.Name)
		cmd = next
	}
	if len(names) == 0 {
		return ""
	}
	return strings.Join(names, " ") + ": "
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cli.Command {
	root := &cli.Command{
		Name:    "celeroot",
		Usage:   "manage a fleet of hosts through Redis Streams",
		Version: Version,
		Description: `celeroot is the control plane; 'celeroot agent' runs on every host.
Every change, task and result is an event in Redis Streams; status commands
read projections built from those events.

Start a whole cluster on this machine with 'celeroot dev'.`,
		Flags:          globalFlags(),
		Reader:         stdin,
		Writer:         stdout,
		ErrWriter:      stderr,
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		Commands: []*cli.Command{
			agentCommand(),
			devCommand(),
			taskCommand(),
			workersCommand(),
		},
	}
	setUsageErrors(root)
	return root
}

// setUsageErrors makes every command report flag mistakes as usage errors
// and refuse unknown subcommands.
func setUsageErrors(cmd *cli.Command) {
	cmd.OnUsageError = func(_ context.Context, _ *cli.Command, err error, _ bool) error {
		return usageError{err}
	}
	if len(cmd.Commands) > 0 && cmd.Action == nil {
		cmd.Action = func(_ context.Context, c *cli.Command) error {
			if c.Args().Len() > 0 {
				return usagef("unknown command %q for %q", c.Args().First(), c.FullName())
			}
			return cli.ShowSubcommandHelp(c)
		}
	}
	for _, c := range cmd.Commands {
		setUsageErrors(c)
	}
}
