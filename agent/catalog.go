package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/schema"
)

// runAction runs a catalog task's action with the submission's parameters.
// Commands run as an argv, never through a shell; a shell action gets the
// parameters as CELEROOT_PARAM_<NAME> environment variables, never spliced
// into the script.
func runAction(ctx context.Context, a schema.Action, params map[string]any, timeout time.Duration, stdout, stderr io.Writer) Result {
	fail := func(format string, args ...any) Result {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(stderr, "celeroot: %s\n", msg)
		return Result{Outcome: events.Failed, ExitCode: ExitNotRunable, Error: msg}
	}
	switch {
	case len(a.Command) > 0:
		argv, err := schema.ExpandArgs(a.Command, params)
		if err != nil {
			return fail("command: %v", err)
		}
		return runArgv(ctx, argv, nil, timeout, stdout, stderr)
	case a.Shell != nil:
		interp := a.Shell.Interpreter
		if interp == "" {
			interp = "/bin/sh"
		}
		return runArgv(ctx, []string{interp, "-c", a.Shell.Script}, paramEnv(params), timeout, stdout, stderr)
	case a.Package != nil:
		name, err := schema.Expand(a.Package.Name, params)
		if err != nil {
			return fail("package: %v", err)
		}
		argv, err := packageArgv(a.Package.Manager, a.Package.State, name)
		if err != nil {
			return fail("package: %v", err)
		}
		fmt.Fprintf(stdout, "celeroot: %s\n", strings.Join(argv, " "))
		return runArgv(ctx, argv, []string{"DEBIAN_FRONTEND=noninteractive"}, timeout, stdout, stderr)
	case a.Service != nil:
		name, err := schema.Expand(a.Service.Name, params)
		if err != nil {
			return fail("service: %v", err)
		}
		verb := map[string]string{"started": "start", "stopped": "stop", "restarted": "restart", "reloaded": "reload"}[a.Service.State]
		if verb == "" {
			return fail("service: unknown state %q", a.Service.State)
		}
		if res := runArgv(ctx, []string{"systemctl", verb, name}, nil, timeout, stdout, stderr); res.Outcome != events.Succeeded {
			return res
		}
		if a.Service.Enabled != nil {
			verb := "disable"
			if *a.Service.Enabled {
				verb = "enable"
			}
			return runArgv(ctx, []string{"systemctl", verb, name}, nil, timeout, stdout, stderr)
		}
		return Result{Outcome: events.Succeeded}
	case a.File != nil:
		return writeFile(*a.File, params, stdout, stderr)
	}
	return fail("the task has no action")
}

// paramEnv turns parameters into CELEROOT_PARAM_<NAME>=value variables.
func paramEnv(params map[string]any) []string {
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	env := make([]string, 0, len(names))
	for _, k := range names {
		v, _ := schema.Expand("{{ .params."+k+" }}", params)
		env = append(env, "CELEROOT_PARAM_"+strings.ToUpper(k)+"="+v)
	}
	return env
}

// packageArgv builds the package manager command for a desired state.
func packageArgv(manager, state, name string) ([]string, error) {
	if manager == "" || manager == "auto" {
		for _, m := range []string{"apt", "dnf", "apk"} {
			bin := map[string]string{"apt": "apt-get", "dnf": "dnf", "apk": "apk"}[m]
			if _, err := exec.LookPath(bin); err == nil {
				manager = m
				break
			}
		}
		if manager == "" || manager == "auto" {
			return nil, errors.New("no package manager found (looked for apt-get, dnf and apk)")
		}
	}
	if state == "" {
		state = "present"
	}
	table := map[string]map[string][]string{
		"apt": {"present": {"apt-get", "install", "-y"}, "latest": {"apt-get", "install", "-y"}, "absent": {"apt-get", "remove", "-y"}},
		"dnf": {"present": {"dnf", "install", "-y"}, "latest": {"dnf", "upgrade", "-y"}, "absent": {"dnf", "remove", "-y"}},
		"apk": {"present": {"apk", "add"}, "latest": {"apk", "add", "--upgrade"}, "absent": {"apk", "del"}},
	}
	cmds, ok := table[manager]
	if !ok {
		return nil, fmt.Errorf("unknown package manager %q", manager)
	}
	base, ok := cmds[state]
	if !ok {
		return nil, fmt.Errorf("unknown package state %q", state)
	}
	return append(append([]string(nil), base...), "--", name), nil
}

// writeFile writes a file from content or a template, only if it changes,
// and reports changed or unchanged with a diff of the lines.
func writeFile(f schema.FileAction, params map[string]any, stdout, stderr io.Writer) Result {
	fail := func(format string, args ...any) Result {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(stderr, "celeroot: %s\n", msg)
		return Result{Outcome: events.Failed, ExitCode: 1, Error: msg}
	}
	path, err := schema.Expand(f.Path, params)
	if err != nil {
		return fail("file path: %v", err)
	}
	if !filepath.IsAbs(path) {
		return fail("file path %q is not absolute", path)
	}
	var want []byte
	switch {
	case f.Content != nil:
		want = []byte(*f.Content)
	case f.Template != nil:
		tmpl, err := template.New(path).Option("missingkey=error").Parse(*f.Template)
		if err != nil {
			return fail("template: %v", err)
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, map[string]any{"params": params}); err != nil {
			return fail("template: %v", err)
		}
		want = b.Bytes()
	}
	mode := os.FileMode(0o644)
	if f.Mode != "" {
		m, err := strconv.ParseUint(f.Mode, 8, 32)
		if err != nil {
			return fail("mode %q is not octal", f.Mode)
		}
		mode = os.FileMode(m)
	}
	have, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail("read %s: %v", path, err)
	}
	if err == nil && bytes.Equal(have, want) {
		fmt.Fprintf(stdout, "unchanged: %s\n", path)
		return Result{Outcome: events.Succeeded}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".celeroot-*")
	if err != nil {
		return fail("write %s: %v", path, err)
	}
	_, werr := tmp.Write(want)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return fail("write %s: %v", path, errors.Join(werr, cerr))
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		os.Remove(tmp.Name())
		return fail("chmod %s: %v", path, err)
	}
	if f.Owner != "" {
		if err := chown(tmp.Name(), f.Owner); err != nil {
			os.Remove(tmp.Name())
			return fail("chown %s: %v", path, err)
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fail("write %s: %v", path, err)
	}
	fmt.Fprintf(stdout, "changed: %s\n", path)
	io.WriteString(stdout, lineDiff(string(have), string(want)))
	return Result{Outcome: events.Succeeded}
}

func chown(path, owner string) error {
	name, group, _ := strings.Cut(owner, ":")
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return err
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return os.Chown(path, uid, gid)
}

// lineDiff is a minimal line diff: removed lines with "-", added with "+",
// common prefix and suffix left out.
func lineDiff(a, b string) string {
	al, bl := strings.SplitAfter(a, "\n"), strings.SplitAfter(b, "\n")
	i := 0
	for i < len(al) && i < len(bl) && al[i] == bl[i] {
		i++
	}
	j := 0
	for j < len(al)-i && j < len(bl)-i && al[len(al)-1-j] == bl[len(bl)-1-j] {
		j++
	}
	var out strings.Builder
	for _, l := range al[i : len(al)-j] {
		if l != "" {
			out.WriteString("-" + strings.TrimSuffix(l, "\n") + "\n")
		}
	}
	for _, l := range bl[i : len(bl)-j] {
		if l != "" {
			out.WriteString("+" + strings.TrimSuffix(l, "\n") + "\n")
		}
	}
	return out.String()
}
