package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/schema"
)

// Task plugins (ADR 0007): every executable of the agent's plugin
// directory is asked to describe itself ("<executable> describe", protocol
// schema.PluginProtocol) and, if its description is valid, is a task the
// agent serves and advertises in its registration. The directory is read
// at start, every PluginRescan, and on a receive from Config.Rescan; a file
// is described again only when it changed.

// Plugin bounds and defaults.
const (
	// DefaultPluginRescan is how often the plugin directory is read again.
	DefaultPluginRescan = 30 * time.Second
	// DefaultPluginDescribeTimeout bounds one "describe" call.
	DefaultPluginDescribeTimeout = 5 * time.Second
	// MaxPlugins is how many files of the plugin directory are read; the
	// rest are refused.
	MaxPlugins = 128
	// describeParallel is how many "describe" calls run at once.
	describeParallel = 8
	// maxDescribeStderr is how much of a failed describe's stderr is kept
	// for its error message.
	maxDescribeStderr = 2 << 10
	// maxPluginProblems bounds the refused files a registration lists (all
	// are logged).
	maxPluginProblems = 32
	// maxProblemText bounds the text of one problem in a registration.
	maxProblemText = 500
)

// Environment of every plugin call, besides the agent's own (without its
// secrets): the protocol, and the call (describe, run or check).
const (
	EnvPluginProtocol = "CELEROOT_PLUGIN_PROTOCOL"
	EnvPluginCall     = "CELEROOT_PLUGIN_CALL"
)

// plugin is an executable that described itself validly.
type plugin struct {
	path string
	sig  fileSig
	desc *schema.Plugin
	// task is desc as a task declaration, to check parameters.
	task *schema.Task
	// info is what the registration advertises.
	info events.Plugin
}

// fileSig tells whether a file changed since it was described.
type fileSig struct {
	size, mtime int64
	mode        fs.FileMode
	dev, ino    uint64
	uid         uint32
}

func sigOf(fi fs.FileInfo) fileSig {
	s := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino, s.uid = uint64(st.Dev), st.Ino, st.Uid
	}
	return s
}

// fileResult is what a scan made of one file: a plugin, or why not.
type fileResult struct {
	sig fileSig
	p   *plugin
	err string
}

// pluginState is the outcome of one scan of the plugin directory.
type pluginState struct {
	files map[string]fileResult
	// served are the plugins by task name; problems the refused files.
	served   map[string]*plugin
	problems []events.PluginProblem
	// dir says why the directory itself is not read ("" if it is).
	dir string
}

// pluginSet discovers the plugins of one directory. scan is called from
// one goroutine at a time; current and describe from any.
type pluginSet struct {
	dir     string
	v       *schema.Validator
	lg      *slog.Logger
	timeout time.Duration
	// poke asks the watcher to scan now (a plugin changed under a task).
	poke chan struct{}

	mu    sync.Mutex
	state pluginState
}

func newPluginSet(dir string, timeout time.Duration, lg *slog.Logger) (*pluginSet, error) {
	// The validator (compiling the schemas takes milliseconds) is needed
	// only to read plugins' descriptions.
	var v *schema.Validator
	if dir != "" {
		var err error
		if v, err = schema.NewValidator(); err != nil {
			return nil, err
		}
		if dir, err = filepath.Abs(dir); err != nil {
			return nil, fmt.Errorf("plugin directory: %w", err)
		}
	}
	return &pluginSet{dir: dir, v: v, lg: lg.With("plugin_dir", dir), timeout: timeout, poke: make(chan struct{}, 1),
		state: pluginState{files: map[string]fileResult{}, served: map[string]*plugin{}}}, nil
}

// current returns the plugins served and the files refused, as of the
// last scan.
func (ps *pluginSet) current() (map[string]*plugin, []events.PluginProblem) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.state.served, ps.state.problems
}

// scan reads the directory, describes the files that are new or changed
// (with force, every file), and reports whether the plugins served or the
// problems changed. Every change is logged once, when it is seen.
func (ps *pluginSet) scan(ctx context.Context, force bool) bool {
	if ps.dir == "" {
		return false
	}
	ps.mu.Lock()
	prev := ps.state
	ps.mu.Unlock()
	next := pluginState{files: map[string]fileResult{}, served: map[string]*plugin{}}
	paths, dirMsg := ps.list()
	next.dir = dirMsg
	type job struct {
		path string
		sig  fileSig
	}
	var todo []job
	for i, path := range paths {
		if i >= MaxPlugins {
			next.files[path] = fileResult{err: fmt.Sprintf("not read: the plugin directory holds more than %d files", MaxPlugins)}
			continue
		}
		fi, err := os.Stat(path)
		if err != nil {
			next.files[path] = fileResult{err: "cannot read: " + pathErr(err)}
			continue
		}
		sig := sigOf(fi)
		if old, ok := prev.files[path]; ok && old.sig == sig && !force {
			next.files[path] = old
			continue
		}
		if msg := unsafeFile(path, fi); msg != "" {
			next.files[path] = fileResult{sig: sig, err: msg}
			continue
		}
		todo = append(todo, job{path, sig})
	}
	results := make([]fileResult, len(todo))
	var wg sync.WaitGroup
	sem := make(chan struct{}, describeParallel)
	for i, j := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := ps.describe(ctx, j.path, j.sig)
			results[i] = fileResult{sig: j.sig, p: p}
			if err != nil {
				results[i] = fileResult{sig: j.sig, err: err.Error()}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false // interrupted describes say nothing about the plugins
	}
	for i, j := range todo {
		next.files[j.path] = results[i]
	}

	// Names: a built-in task's name is refused, and of two files with the
	// same name the first (by file name) is served.
	byName := map[string]string{}
	refused := map[string]string{}
	for _, path := range sortedKeys(next.files) {
		r := next.files[path]
		if r.p == nil {
			continue
		}
		name := r.p.desc.Name
		switch first, dup := byName[name]; {
		case slices.Contains(BuiltinTasks, name):
			refused[path] = fmt.Sprintf("the plugin's name %q is a built-in task: rename the plugin", name)
		case dup:
			refused[path] = fmt.Sprintf("the plugin's name %q is already served by %s: rename one of them, or remove one", name, first)
		default:
			byName[name] = path
			next.served[name] = r.p
		}
	}
	if dirMsg != "" {
		next.problems = append(next.problems, events.PluginProblem{File: ps.dir, Error: dirMsg})
	}
	for _, path := range sortedKeys(next.files) {
		msg := next.files[path].err
		if msg == "" {
			msg = refused[path]
		}
		if msg != "" {
			next.problems = append(next.problems, events.PluginProblem{File: path, Error: msg})
		}
	}
	changed := ps.logChanges(prev, next, refused)
	ps.mu.Lock()
	ps.state = next
	ps.mu.Unlock()
	return changed
}

// list returns the files of the directory to consider, sorted, and why
// the directory cannot be used ("" if it can). A directory that does not
// exist holds no plugins; that is not a problem.
func (ps *pluginSet) list() ([]string, string) {
	fi, err := os.Stat(ps.dir)
	switch {
	case err != nil && os.IsNotExist(err):
		return nil, ""
	case err != nil:
		return nil, "cannot read the plugin directory: " + pathErr(err)
	case !fi.IsDir():
		return nil, "the plugin directory is not a directory"
	case fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return nil, fmt.Sprintf("the plugin directory is writable by every user, who could add a task to this agent: chmod o-w %s", ps.dir)
	}
	entries, err := os.ReadDir(ps.dir)
	if err != nil {
		return nil, "cannot read the plugin directory: " + pathErr(err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		// Hidden files and editor backups are not plugins.
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
			continue
		}
		path := filepath.Join(ps.dir, name)
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			continue // the directory is not read recursively
		}
		out = append(out, path)
	}
	return out, ""
}

// unsafeFile says why a file is not run at all ("" if it may be).
func unsafeFile(path string, fi fs.FileInfo) string {
	mode := fi.Mode()
	switch {
	case !mode.IsRegular():
		return "not a regular file"
	case mode.Perm()&0o111 == 0:
		return fmt.Sprintf("not executable: chmod +x %s", path)
	case mode.Perm()&0o022 != 0:
		return fmt.Sprintf("writable by users other than its owner, who could run code as this agent: chmod go-w %s", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
			return fmt.Sprintf("owned by uid %d, not by root or by the agent's user (uid %d): chown it", uid, os.Geteuid())
		}
	}
	return ""
}

// describe runs "<path> describe" and reads its answer.
func (ps *pluginSet) describe(ctx context.Context, path string, sig fileSig) (*plugin, error) {
	ctx, cancel := context.WithTimeout(ctx, ps.timeout)
	defer cancel()
	out := &cappedBuffer{max: schema.MaxPluginDescription}
	errb := &cappedBuffer{max: maxDescribeStderr}
	res := runArgvInput(ctx, []string{path, "describe"}, pluginEnv("describe"), nil, ps.timeout, out, errb)
	switch {
	case res.Outcome == events.TimedOut:
		return nil, fmt.Errorf("describe did not answer within %s", ps.timeout)
	case res.Outcome != events.Succeeded:
		what := fmt.Sprintf("exit code %d", res.ExitCode)
		if res.Error != "" {
			what = res.Error
		}
		msg := fmt.Sprintf("describe failed (%s)", what)
		if text := strings.TrimSpace(strings.ReplaceAll(errb.String(), "celeroot: "+res.Error, "")); text != "" {
			msg += ": " + oneLine(text)
		}
		return nil, fmt.Errorf("%s; a plugin answers '%s describe' with its description on stdout and exit code 0", msg, filepath.Base(path))
	case out.over:
		return nil, fmt.Errorf("describe printed more than %d bytes", schema.MaxPluginDescription)
	}
	desc, errs := ps.v.ParsePlugin(path+" describe", out.Bytes())
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("invalid description: %s", strings.Join(msgs, "; "))
	}
	params, err := json.Marshal(desc.Params)
	if err != nil {
		return nil, err
	}
	if len(desc.Params) == 0 {
		params = nil
	}
	return &plugin{path: path, sig: sig, desc: desc, task: desc.Task(), info: events.Plugin{
		Name: desc.Name, Version: desc.Version, Description: desc.Description, Params: params,
		TimeoutMS: desc.Timeout.Milliseconds(), Idempotent: desc.Idempotent, Check: desc.Check, Hash: desc.Hash(),
	}}, nil
}

// logChanges logs what changed from prev to next, file by file, and
// reports whether anything did.
func (ps *pluginSet) logChanges(prev, next pluginState, refused map[string]string) bool {
	status := func(st pluginState, path string, refused map[string]string) string {
		r, ok := st.files[path]
		switch {
		case !ok:
			return ""
		case r.err != "":
			return "refused: " + r.err
		case refused[path] != "":
			return "refused: " + refused[path]
		}
		return "served: " + r.p.info.Hash
	}
	prevRefused := map[string]string{}
	for _, pr := range prev.problems {
		prevRefused[pr.File] = pr.Error
	}
	changed := false
	if prev.dir != next.dir {
		changed = true
		if next.dir != "" {
			ps.lg.Error("plugin directory not used: no plugins", "err", next.dir)
		}
	}
	paths := map[string]bool{}
	for p := range prev.files {
		paths[p] = true
	}
	for p := range next.files {
		paths[p] = true
	}
	for _, path := range sortedKeys(paths) {
		was, is := status(prev, path, prevRefused), status(next, path, refused)
		if was == is {
			continue
		}
		changed = true
		r := next.files[path]
		switch {
		case is == "":
			ps.lg.Info("plugin removed", "file", path)
		case strings.HasPrefix(is, "refused: "):
			ps.lg.Warn("plugin refused", "file", path, "err", strings.TrimPrefix(is, "refused: "))
		default:
			ps.lg.Info("plugin found", "file", path, "task", r.p.desc.Name, "version", r.p.desc.Version, "check", r.p.desc.Check)
		}
	}
	return changed
}

// watch rescans the directory every interval and on each receive from
// now (describing every file again), until ctx ends; onChange is called
// after a scan that changed something.
func (ps *pluginSet) watch(ctx context.Context, interval time.Duration, now <-chan struct{}, onChange func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-now:
			// Asked for: every file is described again, so a plugin
			// refused for a reason outside its file (a dependency, a
			// timeout) gets another chance.
			ps.lg.Info("rescanning the plugin directory")
			force = true
		case <-ps.poke:
		}
		if ps.scan(ctx, force) {
			onChange()
		}
	}
}

// runPlugin runs one attempt of a plugin task: "<executable> run" (or
// "check"), with the parameters as JSON on stdin and as CELEROOT_PARAM_*
// environment variables, never through a shell.
func (a *agent) runPlugin(ctx context.Context, p *plugin, sub events.TaskSubmitted, attempt int64, stdout, stderr io.Writer) Result {
	fail := func(format string, args ...any) Result {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(stderr, "celeroot: %s\n", msg)
		return Result{Outcome: events.Failed, ExitCode: ExitNotRunable, Error: msg}
	}
	// The executable may have been replaced since it was described: then
	// it is described again, and the parameters checked against that.
	fi, err := os.Stat(p.path)
	if err != nil {
		return fail("plugin %s: %s is gone: %s", p.desc.Name, p.path, pathErr(err))
	}
	if sig := sigOf(fi); sig != p.sig {
		select {
		case a.plugins.poke <- struct{}{}:
		default:
		}
		if msg := unsafeFile(p.path, fi); msg != "" {
			return fail("plugin %s: %s", p.desc.Name, msg)
		}
		fresh, err := a.plugins.describe(ctx, p.path, sig)
		if err != nil {
			return fail("plugin %s changed since it was described, and describing it again failed: %v", p.desc.Name, err)
		}
		if fresh.desc.Name != p.desc.Name {
			return fail("plugin file %s now describes task %q, not %q", p.path, fresh.desc.Name, p.desc.Name)
		}
		p = fresh
	}
	call := "run"
	if sub.Check {
		if !p.desc.Check {
			return fail("plugin %s %s has no check (dry-run) form", p.desc.Name, p.desc.Version)
		}
		call = "check"
	}
	params, errs := p.task.CheckParams(sub.Params)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fail("invalid parameters for plugin %s %s: %s", p.desc.Name, p.desc.Version, strings.Join(msgs, "; "))
	}
	input, err := json.Marshal(pluginInput{Protocol: schema.PluginProtocol, Call: call, Task: p.desc.Name,
		TaskID: sub.TaskID, Attempt: attempt, Params: params})
	if err != nil {
		return fail("plugin %s: %v", p.desc.Name, err)
	}
	env := append(pluginEnv(call), "CELEROOT_TASK="+p.desc.Name, "CELEROOT_TASK_ID="+sub.TaskID,
		"CELEROOT_TASK_ATTEMPT="+strconv.FormatInt(attempt, 10))
	env = append(env, paramEnv(params)...)
	return runArgvInput(ctx, []string{p.path, call}, env, bytes.NewReader(append(input, '\n')), sub.Timeout(), stdout, stderr)
}

// pluginInput is what a plugin reads on stdin when it runs.
type pluginInput struct {
	Protocol int            `json:"protocol"`
	Call     string         `json:"call"`
	Task     string         `json:"task"`
	TaskID   string         `json:"task_id"`
	Attempt  int64          `json:"attempt"`
	Params   map[string]any `json:"params"`
}

func pluginEnv(call string) []string {
	return []string{EnvPluginProtocol + "=" + strconv.Itoa(schema.PluginProtocol), EnvPluginCall + "=" + call}
}

// cappedBuffer keeps the first max bytes written to it and notes whether
// more came; writes never fail, so the writer is never blocked.
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func pathErr(err error) string {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// oneLine joins the lines of s and bounds its length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
