package schema

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("# padding padding padding padding\n"), 10<<20/34+1) // > 10 MB
	if len(big) < 10<<20 {
		t.Fatalf("test input is %d bytes", len(big))
	}
	_, errs := Load("big.yaml", bytes.NewReader(big))
	want := &Error{File: "big.yaml", Msg: "the input is larger than 4194304 bytes (4 MiB)", Hint: "split it into several files in one directory"}
	if len(errs) != 1 || !cmp.Equal(errs[0], want) {
		t.Errorf("Load(10 MB) = %v, want %v", errs, want)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs = LoadPath(path, nil)
	if len(errs) != 1 || errs[0].File != path || !strings.Contains(errs[0].Msg, "larger than 4194304") {
		t.Errorf("LoadPath(10 MB file) = %v, want one error saying it is too large", errs)
	}

	// Exactly MaxFileSize is fine.
	ok := append([]byte("apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata: {name: x}\nspec: {}\n#"), bytes.Repeat([]byte("x"), MaxFileSize)...)
	ok = ok[:MaxFileSize]
	if _, errs := Load("max.yaml", bytes.NewReader(ok)); len(errs) != 0 {
		t.Errorf("Load(%d bytes) = %v, want no error", len(ok), errs)
	}
}

func TestLoadPath(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b-task.yml", task+"  action:\n    command: [\"true\"]\n")
	write("a-cluster.yaml", cluster+"  workers: []\n")
	write("c.json", `{"apiVersion": "celeroot.io/v1", "kind": "Task", "metadata": {"name": "j"}, "spec": {"action": {"command": ["true"]}}}`)
	write("notes.txt", "not read")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}

	set, errs := LoadPath(dir, nil)
	if len(errs) != 0 {
		t.Fatalf("LoadPath(dir) errors:%s", errorStrings(errs))
	}
	if set.Cluster == nil || set.Cluster.File != filepath.Join(dir, "a-cluster.yaml") {
		t.Errorf("LoadPath(dir).Cluster = %+v, want the cluster of a-cluster.yaml", set.Cluster)
	}
	var got []string
	for _, tk := range set.Tasks {
		got = append(got, tk.Metadata.Name+"@"+filepath.Base(tk.File))
	}
	if want := []string{"t@b-task.yml", "j@c.json"}; !cmp.Equal(got, want) {
		t.Errorf("LoadPath(dir) tasks = %v, want %v (sorted by file name)", got, want)
	}

	set, errs = LoadPath("-", strings.NewReader(cluster+"  workers: []\n"))
	if len(errs) != 0 || set.Cluster == nil || set.Cluster.File != "<stdin>" {
		t.Errorf("LoadPath(-) = %+v, %v; want a cluster from <stdin>", set.Cluster, errs)
	}
	_, errs = LoadPath("-", strings.NewReader(""))
	if len(errs) != 1 || errs[0].Error() != "<stdin>: no documents (hint: the file is empty or holds only comments; add a kind: Cluster or kind: Task document)" {
		t.Errorf("LoadPath(-) of nothing = %v", errs)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, errs = LoadPath(missing, nil)
	if len(errs) != 1 || errs[0].Error() != missing+": cannot read: no such file or directory" {
		t.Errorf("LoadPath(missing) = %v", errs)
	}

	empty := t.TempDir()
	_, errs = LoadPath(empty, nil)
	if len(errs) != 1 || errs[0].Error() != empty+": no .yaml, .yml or .json files in the directory" {
		t.Errorf("LoadPath(empty dir) = %v", errs)
	}
}

func TestMergeTwoClusters(t *testing.T) {
	a, errs := Load("a.yaml", strings.NewReader(cluster+"  workers: []\n"))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	b, errs := Load("b.yaml", strings.NewReader("# second\n"+cluster+"  workers: []\n"))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	errs = a.Merge(b)
	want := "b.yaml:3:7: /kind: a second Cluster document; a configuration has one (the first is at a.yaml:2:7) (hint: validate each cluster on its own)"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("Merge() = %v, want %s", errs, want)
	}
	if a.Cluster.File != "a.yaml" {
		t.Errorf("after Merge, Cluster is from %s, want a.yaml", a.Cluster.File)
	}
}

func TestLoadDefaults(t *testing.T) {
	src := cluster + schedule + "      targets: all\n    - name: catchup\n      cron: \"@hourly\"\n      task: apt-management\n      targets: all\n      missed: all\n" +
		"---\n" + task + "  action:\n    shell: {script: \"exit 0\"}\n"
	set, errs := Load("d.yaml", strings.NewReader(src))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	s := set.Cluster.Spec.Schedules
	if s[0].Timezone != "UTC" || s[0].Overlap != "allow" || s[0].Missed != "skip" || s[0].MissedWindow.Duration != 0 || s[0].Splay.Duration != 0 {
		t.Errorf("schedule defaults = %+v", s[0])
	}
	if s[1].MissedWindow.Duration != DefaultMissedWindow {
		t.Errorf("missedWindow with missed: all = %v, want %v", s[1].MissedWindow, DefaultMissedWindow)
	}
	spec := set.Tasks[0].Spec
	if spec.Timeout.Duration != DefaultTimeout || spec.Retry.MaxAttempts != 1 || spec.Retry.Backoff.Duration != DefaultBackoff ||
		spec.Retry.MaxBackoff.Duration != DefaultMaxBackoff || spec.Action.Shell.Interpreter != "/bin/sh" {
		t.Errorf("task defaults = %+v, shell %+v", spec, spec.Action.Shell)
	}
}

func TestYAMLFeatures(t *testing.T) {
	// Anchors, aliases, merge keys, block scalars and tags all load, and
	// errors inside aliased values point at the anchor's text.
	src := cluster +
		"  workers:\n" +
		"    - &base\n" + // 7
		"      name: web\n" +
		"      role: webserver\n" +
		"      replicas: 2\n" +
		"      tasks: [apt-management]\n" +
		"    - <<: *base\n" + // 12
		"      name: web2\n" +
		"    - name: db\n" +
		"      role: !!str database\n" +
		"      replicas: !!int 1\n" +
		"      tasks: *tasks\n"
	_, errs := loadAndValidate(t, newValidator(t), "f.yaml", src, seedCatalog)
	want := "f.yaml:17:14: /spec/workers/2/tasks: unknown alias *tasks (hint: define the anchor (&tasks) before this alias)"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("errors = %s\nwant %s", errorStrings(errs), want)
	}

	src = cluster +
		"  workers:\n" +
		"    - &base\n" +
		"      name: web\n" +
		"      role: webserver\n" +
		"      replicas: -2\n" + // 10
		"    - <<: *base\n" +
		"      name: web2\n"
	_, errs = loadAndValidate(t, newValidator(t), "f.yaml", src, nil)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	wantErrs := []string{
		"f.yaml:10:17: /spec/workers/0/replicas: must be >= 0, got -2",
		"f.yaml:10:17: /spec/workers/1/replicas: must be >= 0, got -2",
	}
	if !cmp.Equal(got, wantErrs) {
		t.Errorf("errors = %v\nwant %v", got, wantErrs)
	}

	set, errs := Load("f.yaml", strings.NewReader(task+"  description: >-\n    folded\n    text\n  action:\n    shell:\n      script: |\n        echo one\n        echo two\n"))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got, want := set.Tasks[0].Spec.Description, "folded text"; got != want {
		t.Errorf("folded description = %q, want %q", got, want)
	}
	if got, want := set.Tasks[0].Spec.Action.Shell.Script, "echo one\necho two\n"; got != want {
		t.Errorf("literal script = %q, want %q", got, want)
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a: &a [x, x, x, x, x, x, x, x, x, x]\n")
	prev := "a"
	for _, c := range "bcdefgh" {
		name := string(c)
		b.WriteString(name + ": &" + name + " [")
		for i := 0; i < 10; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = name
	}
	_, errs := Load("bomb.yaml", strings.NewReader(b.String()))
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "more than 1048576 values") {
		t.Errorf("Load(alias bomb) = %v, want one error about too many values", errs)
	}
}

func TestDeepNesting(t *testing.T) {
	for _, src := range []string{
		"a: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n",
		"a: " + strings.Repeat("[", 2000000),
		strings.Repeat("- ", 200000) + "x\n",
	} {
		_, errs := Load("deep.yaml", strings.NewReader(src))
		if len(errs) != 1 || !strings.Contains(errs[0].Msg, "nested more than 64 deep") {
			t.Errorf("Load(%.20q...) = %v, want one error about nesting", src, errs)
		}
	}
}

func TestDeepBlockNesting(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 600; i++ {
		b.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	_, errs := Load("deep.yaml", strings.NewReader(b.String()))
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "nested more than 512 deep") || errs[0].Line != 513 {
		t.Errorf("Load(600 nested mappings) = %v, want one error at line 513", errs)
	}
}

func TestCRLFAndBOM(t *testing.T) {
	v := newValidator(t)
	crlf := "\ufeff" + strings.ReplaceAll(seedClusterYAML, "\n", "\r\n")
	if _, errs := loadAndValidate(t, v, "crlf.yaml", crlf, seedCatalog); len(errs) != 0 {
		t.Errorf("seed with BOM and CRLF:%s", errorStrings(errs))
	}
	src := "\ufeff" + strings.ReplaceAll(cluster+worker+"      replicas: -1\n", "\n", "\r\n")
	_, errs := loadAndValidate(t, v, "crlf.yaml", src, nil)
	want := "crlf.yaml:9:17: /spec/workers/0/replicas: must be >= 0, got -1"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("errors = %s\nwant %s", errorStrings(errs), want)
	}
}
