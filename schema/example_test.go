package schema_test

import (
	"fmt"
	"strings"

	"github.com/celeroot/celeroot/schema"
)

func Example() {
	v, err := schema.NewValidator()
	if err != nil {
		panic(err)
	}
	src := `apiVersion: celeroot.io/v1
kind: Cluster
metadata:
  name: prod
spec:
  workers:
    - name: web
      role: webserver
      replica: 2
      tasks: [apt-managment]
`
	set, errs := schema.Load("cluster.yaml", strings.NewReader(src))
	errs = append(errs, v.Validate(set, map[string]bool{"apt-management": true})...)
	for _, e := range errs {
		fmt.Println(e)
	}
	// Output:
	// cluster.yaml:7:7: /spec/workers/0/replicas: missing required field "replicas" (hint: add replicas: number of agents expected in the group)
	// cluster.yaml:9:7: /spec/workers/0/replica: unknown field "replica" (hint: did you mean replicas?)
	// cluster.yaml:10:15: /spec/workers/0/tasks/0: unknown task "apt-managment" (hint: did you mean apt-management?)
}

func ExampleTask_ValidateParams() {
	set, _ := schema.Load("install-package.yaml", strings.NewReader(`apiVersion: celeroot.io/v1
kind: Task
metadata:
  name: install-package
spec:
  params:
    package:
      schema: {type: string, pattern: "^[a-z0-9][a-z0-9+.-]*$"}
      required: true
  action:
    package: {name: "{{ .params.package }}"}
`))
	task := set.Tasks[0]
	params, _ := task.ValidateParams(map[string]string{"package": "nginx"})
	fmt.Println(params)
	_, errs := task.ValidateParams(map[string]string{"package": "nginx; rm -rf /"})
	fmt.Println(errs[0])
	// Output:
	// map[package:nginx]
	// /params/package: must be a string matching the pattern ^[a-z0-9][a-z0-9+.-]*$, found "nginx; rm -rf /"
}

func ExampleParseSelector() {
	sel, err := schema.ParseSelector("tier=web,environment=production")
	fmt.Println(sel, err)
	_, err = schema.ParseSelector("tier=web,tier=db")
	fmt.Println(err)
	// Output:
	// map[environment:production tier:web] <nil>
	// selector "tier=web,tier=db": key "tier" given twice
}

func ExampleDiff() {
	load := func(replicas string) *schema.Cluster {
		set, _ := schema.Load("c.yaml", strings.NewReader(`apiVersion: celeroot.io/v1
kind: Cluster
metadata: {name: prod}
spec:
  workers:
    - {name: web, role: webserver, replicas: `+replicas+`}
`))
		return set.Cluster
	}
	d := schema.Diff(load("2"), load("3"))
	fmt.Print(d.String())
	fmt.Println(schema.Diff(load("2"), load("2")).Empty())
	// Output:
	// ~ worker group web: replicas: 2 -> 3
	// true
}

func ExampleQueueRole() {
	fmt.Println(schema.QueueRole("webserver_queue"))
	fmt.Println(schema.QueueRole("all_queue"))
	// Output:
	// webserver false
	//  true
}
