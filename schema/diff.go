package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Op says what happened to an item between two configurations.
type Op string

// Ops.
const (
	Added   Op = "added"
	Removed Op = "removed"
	Changed Op = "changed"
)

// FieldChange is one changed field: its dotted path relative to the item
// ("selector.labels.tier", "replicas") and its old and new values as JSON
// ("" when absent).
type FieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old,omitempty"`
	New   string `json:"new,omitempty"`
}

// WorkerGroupDiff is what changed in one worker group, by name.
type WorkerGroupDiff struct {
	Name   string        `json:"name"`
	Op     Op            `json:"op"`
	Fields []FieldChange `json:"fields,omitempty"`
	// Tasks the group gained and lost.
	TasksAdded   []string `json:"tasksAdded,omitempty"`
	TasksRemoved []string `json:"tasksRemoved,omitempty"`
}

// ScheduleDiff is what changed in one schedule, by name.
type ScheduleDiff struct {
	Name   string        `json:"name"`
	Op     Op            `json:"op"`
	Fields []FieldChange `json:"fields,omitempty"`
}

// QueueDiff is what changed in one queue, by name.
type QueueDiff struct {
	Name            string   `json:"name"`
	Op              Op       `json:"op"`
	PatternsAdded   []string `json:"patternsAdded,omitempty"`
	PatternsRemoved []string `json:"patternsRemoved,omitempty"`
}

// ClusterDiff summarizes what applying a new Cluster changes: worker
// groups, schedules and queues matched by name, and field changes of the
// rest. Defaults are applied to both sides first, so spelling out a default
// is not a change. Values are compared as written ("1Gi" and "1024Mi"
// differ), so a diff is empty exactly when the Hash of both is the same.
// Lists are sorted by name.
type ClusterDiff struct {
	// Changes of metadata (name, labels, annotations).
	Metadata  []FieldChange     `json:"metadata,omitempty"`
	Redis     []FieldChange     `json:"redis,omitempty"`
	Workers   []WorkerGroupDiff `json:"workers,omitempty"`
	Schedules []ScheduleDiff    `json:"schedules,omitempty"`
	Queues    []QueueDiff       `json:"queues,omitempty"`
	// Changes of spec.targets, compared as a whole list.
	Targets []FieldChange `json:"targets,omitempty"`
	// Changes of spec.retention, with the defaults filled in.
	Retention []FieldChange `json:"retention,omitempty"`
}

// Empty reports whether nothing changed.
func (d ClusterDiff) Empty() bool {
	return len(d.Metadata) == 0 && len(d.Redis) == 0 && len(d.Workers) == 0 &&
		len(d.Schedules) == 0 && len(d.Queues) == 0 && len(d.Targets) == 0 && len(d.Retention) == 0
}

// Diff compares two versions of a cluster. Either may be nil: a nil old
// cluster adds everything, a nil new one removes everything.
func Diff(old, new *Cluster) ClusterDiff {
	o, n := withDefaults(old), withDefaults(new)
	var d ClusterDiff
	d.Metadata = fieldChanges("", toJSON(o.Metadata), toJSON(n.Metadata))
	d.Redis = fieldChanges("", toJSON(o.Spec.Redis), toJSON(n.Spec.Redis))

	ow, nw := byName(o.Spec.Workers, func(w WorkerGroup) string { return w.Name }), byName(n.Spec.Workers, func(w WorkerGroup) string { return w.Name })
	for _, name := range unionKeys(ow, nw) {
		a, inOld := ow[name]
		b, inNew := nw[name]
		wd := WorkerGroupDiff{Name: name}
		switch {
		case !inOld:
			wd.Op, wd.TasksAdded = Added, sortedCopy(b.Tasks)
		case !inNew:
			wd.Op, wd.TasksRemoved = Removed, sortedCopy(a.Tasks)
		default:
			wd.Op = Changed
			wd.TasksAdded, wd.TasksRemoved = setDiff(a.Tasks, b.Tasks)
			a.Tasks, b.Tasks = nil, nil
			wd.Fields = fieldChanges("", toJSON(a), toJSON(b))
			if len(wd.Fields) == 0 && len(wd.TasksAdded) == 0 && len(wd.TasksRemoved) == 0 {
				continue
			}
		}
		d.Workers = append(d.Workers, wd)
	}

	oldSched, newSched := byName(o.Spec.Schedules, func(s Schedule) string { return s.Name }), byName(n.Spec.Schedules, func(s Schedule) string { return s.Name })
	for _, name := range unionKeys(oldSched, newSched) {
		a, inOld := oldSched[name]
		b, inNew := newSched[name]
		sd := ScheduleDiff{Name: name}
		switch {
		case !inOld:
			sd.Op = Added
		case !inNew:
			sd.Op = Removed
		default:
			sd.Op = Changed
			sd.Fields = fieldChanges("", toJSON(a), toJSON(b))
			if len(sd.Fields) == 0 {
				continue
			}
		}
		d.Schedules = append(d.Schedules, sd)
	}

	for _, name := range unionKeys(o.Spec.Queues, n.Spec.Queues) {
		a, inOld := o.Spec.Queues[name]
		b, inNew := n.Spec.Queues[name]
		qd := QueueDiff{Name: name}
		switch {
		case !inOld:
			qd.Op, qd.PatternsAdded = Added, sortedCopy(b)
		case !inNew:
			qd.Op, qd.PatternsRemoved = Removed, sortedCopy(a)
		default:
			qd.Op = Changed
			qd.PatternsAdded, qd.PatternsRemoved = setDiff(a, b)
			if len(qd.PatternsAdded) == 0 && len(qd.PatternsRemoved) == 0 {
				continue
			}
		}
		d.Queues = append(d.Queues, qd)
	}

	if a, b := jsonText(o.Spec.Targets), jsonText(n.Spec.Targets); a != b {
		d.Targets = []FieldChange{{Field: "targets", Old: a, New: b}}
	}
	d.Retention = fieldChanges("", toJSON(o.Spec.Retention.WithDefaults()), toJSON(n.Spec.Retention.WithDefaults()))
	return d
}

// String renders the diff one change per line, kubectl style:
// "+ worker group db", "~ schedule backup: cron "0 3 * * 0" -> "0 4 * * 0"".
func (d ClusterDiff) String() string {
	var b strings.Builder
	fields := func(prefix string, fs []FieldChange) {
		for _, f := range fs {
			fmt.Fprintf(&b, "~ %s%s: %s -> %s\n", prefix, f.Field, orNone(f.Old), orNone(f.New))
		}
	}
	fields("metadata.", d.Metadata)
	fields("redis.", d.Redis)
	fields("retention.", d.Retention)
	for _, w := range d.Workers {
		switch w.Op {
		case Added:
			fmt.Fprintf(&b, "+ worker group %s\n", w.Name)
		case Removed:
			fmt.Fprintf(&b, "- worker group %s\n", w.Name)
		default:
			fields("worker group "+w.Name+": ", w.Fields)
			for _, t := range w.TasksAdded {
				fmt.Fprintf(&b, "+ worker group %s: task %s\n", w.Name, t)
			}
			for _, t := range w.TasksRemoved {
				fmt.Fprintf(&b, "- worker group %s: task %s\n", w.Name, t)
			}
		}
	}
	for _, s := range d.Schedules {
		switch s.Op {
		case Added:
			fmt.Fprintf(&b, "+ schedule %s\n", s.Name)
		case Removed:
			fmt.Fprintf(&b, "- schedule %s\n", s.Name)
		default:
			fields("schedule "+s.Name+": ", s.Fields)
		}
	}
	for _, q := range d.Queues {
		switch q.Op {
		case Added:
			fmt.Fprintf(&b, "+ queue %s\n", q.Name)
		case Removed:
			fmt.Fprintf(&b, "- queue %s\n", q.Name)
		default:
			for _, p := range q.PatternsAdded {
				fmt.Fprintf(&b, "+ queue %s: %s\n", q.Name, p)
			}
			for _, p := range q.PatternsRemoved {
				fmt.Fprintf(&b, "- queue %s: %s\n", q.Name, p)
			}
		}
	}
	fields("", d.Targets)
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// withDefaults returns a copy of c with defaults applied; an empty
// cluster for nil.
func withDefaults(c *Cluster) *Cluster {
	out := &Cluster{}
	if c == nil {
		return out
	}
	if roundTrip(c, out) != nil {
		return out
	}
	out.setDefaults()
	return out
}

// toJSON returns v as plain JSON values.
func toJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	out, _ := decodeJSON(b)
	return out
}

func jsonText(v any) string {
	x := toJSON(v)
	if x == nil {
		return ""
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(x) != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// fieldChanges compares two JSON values field by field; lists and scalars
// are compared whole.
func fieldChanges(path string, a, b any) []FieldChange {
	ma, aMap := a.(map[string]any)
	mb, bMap := b.(map[string]any)
	if aMap && bMap {
		var out []FieldChange
		for _, k := range unionKeys(ma, mb) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			out = append(out, fieldChanges(p, ma[k], mb[k])...)
		}
		return out
	}
	ta, tb := jsonText(a), jsonText(b)
	if ta == tb {
		return nil
	}
	if path == "" {
		path = "(all)"
	}
	return []FieldChange{{Field: path, Old: ta, New: tb}}
}

func byName[T any](items []T, name func(T) string) map[string]T {
	m := make(map[string]T, len(items))
	for _, it := range items {
		if _, dup := m[name(it)]; !dup {
			m[name(it)] = it
		}
	}
	return m
}

func unionKeys[V any](a, b map[string]V) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string]V{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// setDiff returns the items of b missing from a, and of a missing from b,
// sorted.
func setDiff(a, b []string) (added, removed []string) {
	in := func(s []string, x string) bool {
		for _, y := range s {
			if y == x {
				return true
			}
		}
		return false
	}
	for _, x := range b {
		if !in(a, x) && !in(added, x) {
			added = append(added, x)
		}
	}
	for _, x := range a {
		if !in(b, x) && !in(removed, x) {
			removed = append(removed, x)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}
