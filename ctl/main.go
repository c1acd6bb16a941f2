package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
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
	// go-redis logs dial failures itself; celeroot reports them once, as
	// errors, so its own logger stays quiet.
	redis.SetLogger(quietLogger{})
	return Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
}

// usageError is a mistake in how a command was called (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// cmdError ties an error to the command that returned it, for the message.
type cmdError struct {
	path string // "task run"
	err  error
}

func (e cmdError) Error() string { return e.err.Error() }
func (e cmdError) Unwrap() error { return e.err }

// exitError carries a specific exit code with an already printed outcome
// (a task that failed under --wait).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// Run runs the CLI with args (args[0] is the program name) and returns
// the exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	err := root.Run(ctx, taskParamFlags(root, args))
	if err == nil {
		return ExitOK
	}
	path := ""
	var ce cmdError
	if errors.As(err, &ce) && ce.path != "" {
		path = ce.path + ": "
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(stderr, "celeroot: %s%s\n", path, ee.msg)
		}
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) || isUsage(err) {
		help := "celeroot --help"
		if ce.path != "" {
			help = "celeroot " + ce.path + " --help"
		}
		fmt.Fprintf(stderr, "celeroot: %s%v\nRun '%s' for usage.\n", path, err, help)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "celeroot: %s%v\n", path, explainRedis(err))
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

// pathOf returns a command's path below the root: "task run".
func pathOf(cmd *cli.Command) string {
	var names []string
	for c := cmd; c != nil && c.Root() != c; c = c.Lineage()[1] {
		names = append([]string{c.Name}, names...)
	}
	return strings.Join(names, " ")
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cli.Command {
	root := &cli.Command{
		Name:    "celeroot",
		Usage:   "manage a fleet of hosts through Redis Streams",
		Version: Version,
		Description: `celeroot is the control plane; 'celeroot agent' runs on every host.
Every change, task and result is an event in Redis Streams; status commands
read projections built from those events.

Start a whole cluster on this machine with 'celeroot dev'. Every command has
examples in its help: celeroot <command> --help.

Output: tables for people; -o json or -o yaml (and -o wide, more columns
where a command has them) for scripts, on stdout. Errors, logs and progress
go to stderr. Colours only on a terminal, never with --no-color or $NO_COLOR.

Exit codes:
  0  success
  1  failure: Redis unreachable or refusing the credentials, an unknown task
     or target, invalid documents, a revision conflict, a task that did not
     succeed (with --wait); config diff: differences found
  2  usage error: a bad flag, argument, parameter or URL
  3  config diff: an error`,
		Flags:          globalFlags(),
		Reader:         stdin,
		Writer:         stdout,
		ErrWriter:      stderr,
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		// `celeroot completion bash|zsh|fish` prints a completion script.
		EnableShellCompletion: true,
		Commands: []*cli.Command{
			agentCommand(),
			benchCommand(),
			clusterCommand(),
			configCommand(),
			contextCommand(),
			devCommand(),
			eventsCommand(),
			exporterCommand(),
			projectionsCommand(),
			schedulesCommand(),
			taskCommand(),
			workersCommand(),
		},
	}
	setUsageErrors(root)
	return root
}

// setUsageErrors makes every command report flag mistakes as usage errors,
// refuse unknown subcommands, and name itself in the errors it returns.
func setUsageErrors(cmd *cli.Command) {
	cmd.OnUsageError = func(_ context.Context, c *cli.Command, err error, _ bool) error {
		return cmdError{pathOf(c), usageError{plainFlagError(c, err)}}
	}
	if len(cmd.Commands) > 0 && cmd.Action == nil {
		cmd.Action = func(_ context.Context, c *cli.Command) error {
			if c.Args().Len() > 0 {
				return usagef("unknown command %q for %q", c.Args().First(), c.FullName())
			}
			return cli.ShowSubcommandHelp(c)
		}
	}
	if action := cmd.Action; action != nil {
		// A command without ArgsUsage takes options only: a stray word
		// (a value meant for a flag, say) is refused rather than ignored.
		takesArgs := cmd.ArgsUsage != "" || len(cmd.Commands) > 0
		cmd.Action = func(ctx context.Context, c *cli.Command) error {
			if !takesArgs && c.Args().Len() > 0 {
				return cmdError{pathOf(c), usagef("unexpected argument %q: %s takes options only (see --help)", c.Args().First(), c.FullName())}
			}
			if err := action(ctx, c); err != nil {
				return cmdError{pathOf(c), err}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands {
		setUsageErrors(c)
	}
}

// flagValueErr matches the flag parser's report of a value it could not
// parse: `invalid value "abc" for flag -timeout: time: invalid duration "abc"`.
var flagValueErr = regexp.MustCompile(`^invalid value "(.*)" for flag -+([A-Za-z0-9][A-Za-z0-9-]*): `)

// plainFlagError rewrites the flag parser's report of a value it could not
// parse into what celeroot's own checks say: the flag, the value, what
// kind of value the flag takes (from the flag's type), and an example.
// Other errors pass unchanged.
func plainFlagError(c *cli.Command, err error) error {
	m := flagValueErr.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	value, name := m[1], m[2]
	var want string
	switch lookupFlag(c, name).(type) {
	case *cli.DurationFlag:
		want = "not a duration: use a number with a unit, as in 30s, 5m or 1h30m"
	case *cli.IntFlag:
		if _, perr := strconv.ParseInt(value, 0, 64); errors.Is(perr, strconv.ErrRange) {
			want = "out of range for a whole number"
		} else {
			want = "not a whole number: use digits, as in 10"
		}
	case *cli.BoolFlag:
		want = "use true or false, as in --" + name + "=false"
	default:
		return err
	}
	return fmt.Errorf("--%s %q: %s", name, value, want)
}

// lookupFlag finds the flag named name among c's and its ancestors'.
func lookupFlag(c *cli.Command, name string) cli.Flag {
	for _, cc := range c.Lineage() {
		for _, f := range cc.Flags {
			if slices.Contains(f.Names(), name) {
				return f
			}
		}
	}
	return nil
}

// taskParamFlags lets task parameters be given as flags of `task run`, as
// in `celeroot task run install-package --target web1 --package nginx`:
// a flag that task run does not define, before "--", becomes
// --param name=value.
func taskParamFlags(root *cli.Command, args []string) []string {
	run := root.Command("task")
	if run != nil {
		run = run.Command("run")
	}
	if run == nil {
		return args
	}
	known := map[string]bool{"help": true, "h": true}
	for _, cmd := range []*cli.Command{root, run} {
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				known[n] = true
			}
		}
	}
	// Find "task run" among the leading words (global flags may precede).
	i, seen := 1, 0
	for ; i < len(args) && seen < 2; i++ {
		switch a := args[i]; {
		case a == "task" && seen == 0, a == "run" && seen == 1:
			seen++
		case strings.HasPrefix(a, "-") && seen == 0:
			if !strings.Contains(a, "=") && i+1 < len(args) {
				i++ // a global flag's value
			}
		default:
			return args
		}
	}
	if seen < 2 {
		return args
	}
	out := append([]string(nil), args[:i]...)
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || known[name] || name == "" {
			out = append(out, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				out = append(out, a) // let the parser report it
				continue
			}
			i++
			value = args[i]
		}
		out = append(out, "--param", name+"="+value)
	}
	return out
}
