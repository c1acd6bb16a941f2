package schema

import (
	"strings"
	"sync"
	"testing"
)

func TestValidateConcurrent(t *testing.T) {
	v := newValidator(t)
	set, errs := Load("c.yaml", strings.NewReader(cluster+worker+"      replicas: -1\n"))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs := v.Validate(set, nil); len(errs) != 1 {
				t.Errorf("Validate() = %v, want one error", errs)
			}
		}()
	}
	wg.Wait()
}

func TestValidateBuiltInGo(t *testing.T) {
	// A Set assembled in Go, without files: errors have pointers but no
	// positions.
	set := &Set{
		Cluster: &Cluster{APIVersion: APIVersion, Kind: KindCluster, Metadata: Metadata{Name: "prod"},
			Spec: ClusterSpec{Workers: []WorkerGroup{{Name: "web", Role: "webserver", Replicas: -1, Tasks: []string{"nope"}}}}},
	}
	errs := newValidator(t).Validate(set, nil)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		"/spec/workers/0/replicas: must be >= 0, got -1",
		`/spec/workers/0/tasks/0: unknown task "nope" (hint: declare it with a kind: Task document, or use a built-in task)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDuplicateTasks(t *testing.T) {
	v := newValidator(t)
	a, _ := Load("a.yaml", strings.NewReader(task+"  action:\n    command: [\"true\"]\n"))
	b, _ := Load("b.yaml", strings.NewReader(task+"  action:\n    command: [\"false\"]\n"))
	if errs := a.Merge(b); len(errs) != 0 {
		t.Fatal(errs)
	}
	errs := v.Validate(a, nil)
	want := `b.yaml:4:9: /metadata/name: task "t" is declared twice (first at a.yaml:4:9) (hint: rename one of them, or remove one)`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("Validate() = %s\nwant %s", errorStrings(errs), want)
	}
}
