package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// Bundle is what one config revision holds: the Cluster and the task
// catalog, in canonical form, as stored in a config.applied event.
type Bundle struct {
	Cluster *Cluster `json:"cluster,omitempty"`
	// Tasks sorted by name.
	Tasks []*Task `json:"tasks,omitempty"`
}

// Bundle returns the canonical JSON of the set (the Cluster and the Tasks
// sorted by name, each in canonical form) and its hex SHA-256: the same
// configuration, however formatted or split into files, gives the same
// bytes and hash.
func (s *Set) Bundle() (doc []byte, hash string, err error) {
	var parts struct {
		Cluster json.RawMessage   `json:"cluster,omitempty"`
		Tasks   []json.RawMessage `json:"tasks,omitempty"`
	}
	if s.Cluster != nil {
		if parts.Cluster, err = Canonical(s.Cluster); err != nil {
			return nil, "", err
		}
	}
	tasks := append([]*Task(nil), s.Tasks...)
	sort.SliceStable(tasks, func(i, j int) bool { return tasks[i].Metadata.Name < tasks[j].Metadata.Name })
	for _, t := range tasks {
		b, err := Canonical(t)
		if err != nil {
			return nil, "", err
		}
		parts.Tasks = append(parts.Tasks, b)
	}
	doc, err = json.Marshal(parts)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(doc)
	return doc, hex.EncodeToString(sum[:]), nil
}

// ParseBundle reads a stored bundle.
func ParseBundle(doc string) (*Bundle, error) {
	var b Bundle
	if err := json.Unmarshal([]byte(doc), &b); err != nil {
		return nil, fmt.Errorf("schema: stored configuration is not a bundle: %w", err)
	}
	return &b, nil
}

// Set returns the bundle's documents as a Set (for Diff and Validate).
func (b *Bundle) Set() *Set {
	s := newSet()
	s.Cluster = b.Cluster
	s.Tasks = b.Tasks
	return s
}

// Task returns the catalog task called name, or nil.
func (b *Bundle) Task(name string) *Task {
	for _, t := range b.Tasks {
		if t.Metadata.Name == name {
			return t
		}
	}
	return nil
}

// GroupsOf returns the worker groups a worker with this role and these
// labels belongs to: same role, and every label of the group's selector.
func (c *Cluster) GroupsOf(role string, labels map[string]string) []WorkerGroup {
	if c == nil {
		return nil
	}
	var out []WorkerGroup
	for _, g := range c.Spec.Workers {
		if g.Role != role {
			continue
		}
		match := true
		for k, v := range g.Selector.Labels {
			if labels[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, g)
		}
	}
	return out
}

// JSONSchema returns the JSON Schema of a document kind (KindCluster or
// KindTask), or of a plugin's description (KindPlugin), for editors and
// other tools.
func JSONSchema(kind string) ([]byte, error) {
	switch kind {
	case KindCluster:
		return schemaFiles.ReadFile("cluster.schema.json")
	case KindTask:
		return schemaFiles.ReadFile("task.schema.json")
	case KindPlugin:
		return schemaFiles.ReadFile("plugin.schema.json")
	}
	return nil, fmt.Errorf("schema: no kind %q; the kinds are %s, %s and %s (a plugin's description)", kind, KindCluster, KindTask, KindPlugin)
}

// TasksFor returns the catalog tasks a worker with this role and labels
// runs: the tasks its worker groups list, and every catalog task that no
// group lists (a task named by groups is reserved to them; one named by
// none runs anywhere). Built-in tasks are not included. Sorted.
func (b *Bundle) TasksFor(role string, labels map[string]string) []string {
	listed := map[string]bool{}
	mine := map[string]bool{}
	if b.Cluster != nil {
		for _, g := range b.Cluster.Spec.Workers {
			for _, t := range g.Tasks {
				listed[t] = true
			}
		}
		for _, g := range b.Cluster.GroupsOf(role, labels) {
			for _, t := range g.Tasks {
				mine[t] = true
			}
		}
	}
	var out []string
	for _, t := range b.Tasks {
		if n := t.Metadata.Name; mine[n] || !listed[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
