package ctl

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

// Every command's help says what it does and shows how to call it: a usage
// line, and at least one example that calls the command itself (or, for a
// group, one of its subcommands), as 'celeroot <command> --help' prints it.
func TestEveryCommandHasExamples(t *testing.T) {
	var paths []string
	var walk func(c *cli.Command, path string)
	walk = func(c *cli.Command, path string) {
		for _, sub := range c.Commands {
			p := strings.TrimSpace(path + " " + sub.Name)
			paths = append(paths, p)
			if sub.Usage == "" || strings.HasSuffix(sub.Usage, ".") || strings.ToLower(sub.Usage[:1]) != sub.Usage[:1] {
				t.Errorf("celeroot %s: usage %q: want a lower-case phrase without a final period", p, sub.Usage)
			}
			walk(sub, p)
		}
	}
	walk(newRoot(nil, nil, nil), "")
	if len(paths) < 40 {
		t.Fatalf("walked %d commands, want the whole tree", len(paths))
	}
	for _, p := range paths {
		var out, errOut bytes.Buffer
		args := append(append([]string{"celeroot"}, strings.Fields(p)...), "--help")
		if code := Run(context.Background(), args, strings.NewReader(""), &out, &errOut); code != 0 {
			t.Errorf("celeroot %s --help: exit %d: %s", p, code, errOut.String())
			continue
		}
		help := out.String()
		_, examples, ok := strings.Cut(help, "Example")
		if !ok {
			t.Errorf("celeroot %s --help has no examples:\n%s", p, help)
			continue
		}
		calls := false
		for _, line := range strings.Split(examples, "\n") {
			if strings.Contains(line, "celeroot ") && strings.Contains(line+" ", " "+p+" ") {
				calls = true
			}
		}
		if !calls {
			t.Errorf("celeroot %s --help: no example calls 'celeroot %s':\n%s", p, p, examples)
		}
	}
}

// The root help documents the exit codes and the global flags that every
// command takes.
func TestRootHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), []string{"celeroot", "--help"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("celeroot --help: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"Exit codes:", "0  success", "2  usage error", "--no-color", "--redis", "--context", "--cluster"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("celeroot --help does not show %q:\n%s", want, out.String())
		}
	}
}
