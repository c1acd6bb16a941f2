package schema

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustCluster(t *testing.T, src string) *Cluster {
	t.Helper()
	set, errs := Load("c.yaml", strings.NewReader(src))
	if errs = append(errs, newValidator(t).Validate(set, seedCatalog)...); len(errs) != 0 {
		t.Fatalf("cluster:%s", errorStrings(errs))
	}
	return set.Cluster
}

func TestDiff(t *testing.T) {
	old := mustCluster(t, seedClusterYAML)
	edited := strings.NewReplacer(
		"replicas: 3\n", "replicas: 5\n", // redis
		"      replicas: 2\n", "      replicas: 4\n", // webservers
		"        - nginx-config\n", "        - nginx-config\n        - check-security-updates\n",
		"          tier: data\n", "          tier: db\n",
		"        - mysql-management\n", "",
		`cron: "0 3 * * 0"`, `cron: "0 4 * * 0"`,
	).Replace(seedClusterYAML)
	edited += `    - name: cleanup
      cron: "@weekly"
      task: apt-management
      targets: all
      params: {action: autoremove}
  queues:
    all_queue: ["system_tasks.*"]
`
	got := Diff(old, mustCluster(t, edited))
	want := ClusterDiff{
		Redis: []FieldChange{{Field: "replicas", Old: "3", New: "5"}},
		Workers: []WorkerGroupDiff{
			{Name: "databases", Op: Changed, Fields: []FieldChange{{Field: "selector.labels.tier", Old: `"data"`, New: `"db"`}}, TasksRemoved: []string{"mysql-management"}},
			{Name: "webservers", Op: Changed, Fields: []FieldChange{{Field: "replicas", Old: "2", New: "4"}}, TasksAdded: []string{"check-security-updates"}},
		},
		Schedules: []ScheduleDiff{
			{Name: "backup-configs", Op: Changed, Fields: []FieldChange{{Field: "cron", Old: `"0 3 * * 0"`, New: `"0 4 * * 0"`}}},
			{Name: "cleanup", Op: Added},
		},
		Queues: []QueueDiff{{Name: "all_queue", Op: Added, PatternsAdded: []string{"system_tasks.*"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Diff() mismatch (-want +got):\n%s", diff)
	}
	if got.Empty() {
		t.Errorf("Empty() = true for a diff with changes")
	}
	wantText := `~ redis.replicas: 3 -> 5
~ worker group databases: selector.labels.tier: "data" -> "db"
- worker group databases: task mysql-management
~ worker group webservers: replicas: 2 -> 4
+ worker group webservers: task check-security-updates
~ schedule backup-configs: cron: "0 3 * * 0" -> "0 4 * * 0"
+ schedule cleanup
+ queue all_queue
`
	if got.String() != wantText {
		t.Errorf("String() =\n%s\nwant\n%s", got.String(), wantText)
	}
}

func TestDiffUnchanged(t *testing.T) {
	old := mustCluster(t, seedClusterYAML)
	// Defaults spelt out, quotes dropped: no change.
	same := strings.NewReplacer(
		`memory: "1Gi"`, `memory: 1Gi`,
		"      targets: all\n", "      targets: all\n      timezone: UTC\n      overlap: allow\n      missed: skip\n      splay: 0s\n",
	).Replace(seedClusterYAML)
	if d := Diff(old, mustCluster(t, same)); !d.Empty() {
		t.Errorf("Diff(equivalent) = %+v, want empty", d)
	}
	if Hash(old) != Hash(mustCluster(t, same)) {
		t.Errorf("Hash differs where Diff is empty")
	}
	if d := Diff(old, old); !d.Empty() {
		t.Errorf("Diff(c, c) = %+v, want empty", d)
	}
}

func TestDiffFromNothing(t *testing.T) {
	c := mustCluster(t, seedClusterYAML)
	d := Diff(nil, c)
	if len(d.Workers) != 2 || d.Workers[0].Op != Added || len(d.Schedules) != 2 || d.Schedules[1].Op != Added {
		t.Errorf("Diff(nil, c) = %+v", d)
	}
	if got, want := d.Workers[1].TasksAdded, []string{"apt-management", "nginx-config"}; !cmp.Equal(got, want) {
		t.Errorf("Diff(nil, c) webservers tasks = %v, want %v", got, want)
	}
	d = Diff(c, nil)
	if len(d.Workers) != 2 || d.Workers[0].Op != Removed || d.Metadata[0].Field != "name" {
		t.Errorf("Diff(c, nil) = %+v", d)
	}
}

func TestHashStable(t *testing.T) {
	a := mustCluster(t, seedClusterYAML)
	// The same configuration written differently: flow style, other key
	// order, comments, quoting, defaults spelt out.
	b := mustCluster(t, `{kind: Cluster, apiVersion: "celeroot.io/v1", metadata: {name: production},
  spec: {
    # the same workers
    workers: [
      {role: webserver, name: webservers, replicas: 2, tasks: [apt-management, nginx-config], selector: {labels: {tier: web}}},
      {name: databases, role: database, replicas: 1, selector: {labels: {tier: data}}, tasks: ["apt-management", 'mysql-management']}],
    redis: {memory: 1Gi, persistence: true, replicas: 3},
    schedules: [
      {name: security-updates, cron: "0 2 * * *", task: check-security-updates, targets: all, timezone: UTC, overlap: allow},
      {name: backup-configs, cron: "0 3 * * 0", task: backup-configurations, targets: {role: database}, missed: skip}]}}`)
	if ha, hb := Hash(a), Hash(b); ha != hb || len(ha) != 64 {
		ca, _ := Canonical(a)
		cb, _ := Canonical(b)
		t.Errorf("Hash differs for the same configuration:\n%s\n%s", ca, cb)
	}
	c := mustCluster(t, strings.Replace(seedClusterYAML, "replicas: 2", "replicas: 3", 1))
	if Hash(a) == Hash(c) {
		t.Errorf("Hash is the same for different configurations")
	}

	t1 := catalogTask(t, "apt-management")
	t2 := *t1
	t2.Spec.Retry.MaxBackoff = Duration{} // unset: the default applies
	t2.File = "elsewhere.yaml"
	if Hash(t1) != Hash(&t2) {
		t.Errorf("Hash of a task depends on unset defaults or its file")
	}

	got, err := Canonical(mustCluster(t, "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata: {name: prod, annotations: {note: \"<&>\"}}\n"+
		"spec:\n  workers:\n    - {name: w, role: r, replicas: 0, selector: {labels: {z: \"1\", a: b}}}\n"))
	want := `{"apiVersion":"celeroot.io/v1","kind":"Cluster","metadata":{"annotations":{"note":"<&>"},"name":"prod"},"spec":{"workers":[{"name":"w","replicas":0,"role":"r","selector":{"labels":{"a":"b","z":"1"}}}]}}`
	if err != nil || string(got) != want {
		t.Errorf("Canonical() = %s, %v\nwant %s", got, err, want)
	}
}
