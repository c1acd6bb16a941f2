package schema

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// docError is a semantic error and the document it is about.
type docError struct {
	doc *rawDoc
	err *Error
}

// checker runs the checks a JSON Schema cannot express.
type checker struct {
	set     *Set
	raws    map[Document]*rawDoc
	catalog map[string]bool
	tasks   map[string]*Task // declared tasks by name (the first of duplicates)
	known   []string         // every task name, for suggestions
	errs    []docError
}

func check(set *Set, raws map[Document]*rawDoc, catalog map[string]bool) []docError {
	c := &checker{set: set, raws: raws, catalog: catalog, tasks: map[string]*Task{}}
	seen := map[string]*Task{}
	for _, t := range set.Tasks {
		name := t.Metadata.Name
		if first, dup := seen[name]; dup && name != "" {
			d := c.raw(t)
			c.add(d, "/metadata/name", false, "rename one of them, or remove one",
				"task %q is declared twice (first at %s)", name, c.where(first, "/metadata/name"))
			continue
		}
		seen[name] = t
		c.tasks[name] = t
	}
	for name := range c.tasks {
		c.known = append(c.known, name)
	}
	for name, ok := range catalog {
		if ok {
			c.known = append(c.known, name)
		}
	}
	sort.Strings(c.known)
	for _, t := range set.Tasks {
		c.task(t)
	}
	if set.Cluster != nil {
		c.cluster(set.Cluster)
	}
	return c.errs
}

func (c *checker) raw(doc Document) *rawDoc {
	if d, ok := c.raws[doc]; ok {
		return d
	}
	return c.set.rawOf(doc)
}

func (c *checker) add(d *rawDoc, ptr string, keyErr bool, hint, format string, args ...any) {
	c.errs = append(c.errs, docError{d, d.errorAt(ptr, keyErr, hint, format, args...)})
}

// where renders the position of ptr in doc as file:line:col.
func (c *checker) where(doc Document, ptr string) string {
	d := c.raw(doc)
	p := d.at(ptr, false)
	if p.line == 0 {
		return d.file
	}
	return fmt.Sprintf("%s:%d:%d", d.file, p.line, p.col)
}

// line renders the position of ptr in d as "line N".
func line(d *rawDoc, ptr string) string {
	if p := d.at(ptr, false); p.line > 0 {
		return "line " + strconv.Itoa(p.line)
	}
	return ptr
}

func (c *checker) taskExists(name string) bool {
	_, ok := c.tasks[name]
	return ok || c.catalog[name]
}

func (c *checker) unknownTask(d *rawDoc, ptr, name string) {
	hint := "declare it with a kind: Task document, or use a built-in task"
	if m := suggest(name, c.known); m != "" {
		hint = fmt.Sprintf("did you mean %s?", m)
	}
	c.add(d, ptr, false, hint, "unknown task %q", name)
}

// duration checks the duration string at ptr, if it is set.
func (c *checker) duration(d *rawDoc, ptr string, positive bool) {
	v, ok := d.lookup(ptr)
	s, isStr := v.(string)
	if !ok || !isStr {
		return
	}
	dur, err := time.ParseDuration(s)
	switch {
	case err != nil:
		c.add(d, ptr, false, "use a duration such as 30s, 5m or 1h30m", "%q is not a duration", s)
	case dur < 0:
		c.add(d, ptr, false, "use 0s or a positive duration", "must not be negative, found %q", s)
	case positive && dur == 0:
		c.add(d, ptr, false, "use a positive duration such as 10m", "must be longer than 0")
	}
}

func (c *checker) cluster(cl *Cluster) {
	d := c.raw(cl)
	spec := &cl.Spec
	roles := map[string]bool{}
	var roleList []string
	for _, w := range spec.Workers {
		if w.Role != "" && !roles[w.Role] {
			roles[w.Role] = true
			roleList = append(roleList, w.Role)
		}
	}
	sort.Strings(roleList)

	if spec.Redis.Memory != "" {
		if _, err := ParseQuantity(string(spec.Redis.Memory)); err != nil {
			c.add(d, "/spec/redis/memory", false, "", "%v", err)
		}
	}

	for _, f := range []struct {
		name string
		d    Duration
	}{{"events", spec.Retention.Events}, {"heartbeats", spec.Retention.Heartbeats}, {"tasks", spec.Retention.Tasks},
		{"workers", spec.Retention.Workers}, {"scheduleEvents", spec.Retention.ScheduleEvents}} {
		ptr := "/spec/retention/" + f.name
		c.duration(d, ptr, true)
		if f.d.Duration > 0 && f.d.Duration < MinRetention {
			c.add(d, ptr, false, fmt.Sprintf("use at least %s", MinRetention), "retention %s is too short", f.d.Duration)
		}
	}

	names := map[string]string{}
	for i, w := range spec.Workers {
		ptr := fmt.Sprintf("/spec/workers/%d", i)
		if first, dup := names[w.Name]; dup && w.Name != "" {
			c.add(d, ptr+"/name", false, "worker group names must be unique", "duplicate worker group name %q (first at %s)", w.Name, line(d, first))
		} else {
			names[w.Name] = ptr + "/name"
		}
		seen := map[string]bool{}
		for j, task := range w.Tasks {
			tp := fmt.Sprintf("%s/tasks/%d", ptr, j)
			if seen[task] {
				c.add(d, tp, false, "remove the repeated entry", "task %q is listed twice", task)
				continue
			}
			seen[task] = true
			if task != "" && !c.taskExists(task) {
				c.unknownTask(d, tp, task)
			}
		}
	}

	names = map[string]string{}
	for i := range spec.Schedules {
		c.schedule(d, i, &spec.Schedules[i], names, roles, roleList)
	}

	for _, q := range sortedKeys(spec.Queues) {
		ptr := pointerJoin("/spec/queues", q)
		role, any := QueueRole(q)
		if !any && role != "" && !roles[role] {
			c.add(d, ptr, true, roleHint(role, roleList, "queue "+q),
				"queue %q is served by role %q, but no worker group has that role", q, role)
		}
		for j, p := range spec.Queues[q] {
			if _, err := path.Match(p, ""); err != nil {
				c.add(d, fmt.Sprintf("%s/%d", ptr, j), false, "use * ? and [a-z] as in shell globs", "task pattern %q is malformed", p)
			}
		}
	}

	names = map[string]string{}
	for i, t := range spec.Targets {
		ptr := fmt.Sprintf("/spec/targets/%d", i)
		if t.Name != "" {
			if first, dup := names[t.Name]; dup {
				c.add(d, ptr+"/name", false, "target names must be unique", "duplicate target name %q (first at %s)", t.Name, line(d, first))
			} else {
				names[t.Name] = ptr + "/name"
			}
		}
		c.selectorRole(d, ptr+"/selector", t.Selector, roles, roleList)
	}
}

func (c *checker) schedule(d *rawDoc, i int, s *Schedule, names map[string]string, roles map[string]bool, roleList []string) {
	ptr := fmt.Sprintf("/spec/schedules/%d", i)
	if first, dup := names[s.Name]; dup && s.Name != "" {
		c.add(d, ptr+"/name", false, "schedule names must be unique", "duplicate schedule name %q (first at %s)", s.Name, line(d, first))
	} else {
		names[s.Name] = ptr + "/name"
	}
	if s.Cron != "" {
		if _, err := parseCron(s.Cron); err != nil {
			c.add(d, ptr+"/cron", false, `five fields: minute hour day-of-month month day-of-week, such as "0 2 * * *", or @daily`,
				"invalid cron expression %q: %v", s.Cron, err)
		}
	}
	if _, err := loadLocation(s.Timezone); err != nil {
		c.add(d, ptr+"/timezone", false, "", "%v", err)
	}
	c.duration(d, ptr+"/splay", false)
	c.duration(d, ptr+"/missedWindow", true)
	if _, set := d.lookup(ptr + "/missedWindow"); set && s.Missed != MissedAll {
		c.add(d, ptr+"/missedWindow", true, "remove missedWindow, or set missed: all",
			"missedWindow applies only to missed: all")
	}
	if s.Task != "" && !c.taskExists(s.Task) {
		c.unknownTask(d, ptr+"/task", s.Task)
	}
	if !s.Targets.All {
		c.selectorRole(d, ptr+"/targets", s.Targets.Selector, roles, roleList)
	}
	if t, ok := c.tasks[s.Task]; ok {
		_, errs := t.checkValues(d, ptr+"/params", func(name string) string {
			return "add " + name + " under params"
		})
		for _, e := range errs {
			c.errs = append(c.errs, docError{d, e})
		}
	}
}

// selectorRole checks that a selector's role is the role of a worker group.
func (c *checker) selectorRole(d *rawDoc, ptr string, sel Selector, roles map[string]bool, roleList []string) {
	role, ok := sel[SelectorRole]
	if !ok || roles[role] {
		return
	}
	c.add(d, pointerJoin(ptr, SelectorRole), false, roleHint(role, roleList, "the selector"),
		"no worker group has role %q", role)
}

func roleHint(role string, roles []string, what string) string {
	if m := suggest(role, roles); m != "" {
		return fmt.Sprintf("did you mean %s?", m)
	}
	if len(roles) == 0 {
		return "add a worker group with role " + role + " to spec.workers"
	}
	return fmt.Sprintf("add a worker group with role %s, or change %s to one of: %s", role, what, strings.Join(roles, ", "))
}

func (c *checker) task(t *Task) {
	d := c.raw(t)
	spec := &t.Spec
	c.params(d, "/spec/params", spec.Params)
	c.action(d, "/spec/action", &spec.Action, spec.Params)
	if spec.Check != nil {
		c.action(d, "/spec/check", spec.Check, spec.Params)
	}
	c.duration(d, "/spec/timeout", true)
	c.duration(d, "/spec/retry/backoff", false)
	c.duration(d, "/spec/retry/maxBackoff", false)
	if r := spec.Retry; r.Backoff.Duration > r.MaxBackoff.Duration {
		c.add(d, "/spec/retry/backoff", false, "lower backoff or raise maxBackoff",
			"backoff %v is longer than maxBackoff %v", r.Backoff.Duration, r.MaxBackoff.Duration)
	}
}

// params checks parameter declarations at at (a task's /spec/params, a
// plugin's /params): each schema compiles, a default matches it, and a
// required parameter has no default.
func (c *checker) params(d *rawDoc, at string, params Params) {
	for _, name := range sortedKeys(params) {
		p := params[name]
		ptr := pointerJoin(at, name)
		if p.Schema == nil {
			continue // required by the schema
		}
		sch, docs, err := compileParam(p.Schema)
		if err != nil {
			sub, msg := schemaProblem(err)
			c.add(d, ptr+"/schema"+sub, false, "see https://json-schema.org/understanding-json-schema/", "%s", msg)
			continue
		}
		if p.Required && p.Default != nil {
			c.add(d, ptr+"/default", true, "drop required, or drop the default", "a required parameter cannot have a default")
		}
		if dv, ok := d.lookup(ptr + "/default"); ok && p.Default != nil {
			var ve *jsonschema.ValidationError
			if err := validateValue(sch, dv); errors.As(err, &ve) {
				tr := &translator{doc: d, prefix: ptr + "/default", schemas: docs, hint: "make the default match the parameter's schema"}
				tr.walk(ve)
				for _, e := range tr.errs {
					c.errs = append(c.errs, docError{d, e})
				}
			}
		}
	}
}

// refsIn checks the parameter references of a string: only
// {{ .params.NAME }}, naming a declared parameter.
func (c *checker) refsIn(d *rawDoc, ptr, s string, params Params) []string {
	_, names, err := refs(s)
	if err != nil {
		c.add(d, ptr, false, "only {{ .params.NAME }} substitutions are allowed here", "%v", err)
		return nil
	}
	for _, n := range names {
		c.paramRef(d, ptr, n, params)
	}
	return names
}

func (c *checker) paramRef(d *rawDoc, ptr, name string, params Params) {
	if _, ok := params[name]; ok {
		return
	}
	declared := sortedKeys(params)
	hint := "declare it under spec.params"
	if m := suggest(name, declared); m != "" {
		hint = fmt.Sprintf("did you mean %s?", m)
	}
	c.add(d, ptr, false, hint, "reference to undeclared parameter %q", name)
}

func (c *checker) action(d *rawDoc, ptr string, a *Action, params Params) {
	for j, arg := range a.Command {
		ap := fmt.Sprintf("%s/command/%d", ptr, j)
		names := c.refsIn(d, ap, arg, params)
		if j == 0 && len(names) > 0 {
			c.add(d, ap, false, "name the program; pass parameters as its arguments",
				"the program to run must not come from a parameter")
		}
	}
	if sh := a.Shell; sh != nil {
		if sh.Interpreter != "" && !strings.HasPrefix(sh.Interpreter, "/") {
			c.add(d, ptr+"/shell/interpreter", false, "use an absolute path such as /bin/sh", "interpreter %q is not an absolute path", sh.Interpreter)
		}
		if strings.Contains(sh.Script, "{{") {
			c.add(d, ptr+"/shell/script", false, "read parameters from the environment: $CELEROOT_PARAM_NAME",
				"a shell script is not a template; parameters are passed as environment variables")
		}
	}
	if p := a.Package; p != nil {
		c.refsIn(d, ptr+"/package/name", p.Name, params)
	}
	if s := a.Service; s != nil {
		c.refsIn(d, ptr+"/service/name", s.Name, params)
	}
	if f := a.File; f != nil {
		c.refsIn(d, ptr+"/file/path", f.Path, params)
		if f.Template != nil {
			c.template(d, ptr+"/file/template", *f.Template, params)
		}
	}
}

// paramsInTemplate finds .params.NAME in a template.
var paramsInTemplate = regexp.MustCompile(`\.params\.([A-Za-z0-9_]+)`)

func (c *checker) template(d *rawDoc, ptr, text string, params Params) {
	if _, err := template.New("file").Option("missingkey=error").Parse(text); err != nil {
		msg := strings.TrimPrefix(err.Error(), "template: ")
		c.add(d, ptr, false, "see https://pkg.go.dev/text/template", "invalid template: %s", msg)
		return
	}
	seen := map[string]bool{}
	for _, m := range paramsInTemplate.FindAllStringSubmatch(text, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			c.paramRef(d, ptr, m[1], params)
		}
	}
}
