package schema

import (
	"testing"
)

// seedClusterYAML is the cluster.yaml of the architecture document, byte
// for byte. examples/cluster.yaml must stay identical to it and valid.
const seedClusterYAML = `# cluster.yaml
apiVersion: celeroot.io/v1
kind: Cluster
metadata:
  name: production

spec:
  redis:
    replicas: 3
    memory: "1Gi"
    persistence: true

  workers:
    - name: webservers
      role: webserver
      replicas: 2
      selector:
        labels:
          tier: web
      tasks:
        - apt-management
        - nginx-config

    - name: databases
      role: database
      replicas: 1
      selector:
        labels:
          tier: data
      tasks:
        - apt-management
        - mysql-management

  schedules:
    - name: security-updates
      cron: "0 2 * * *"
      task: check-security-updates
      targets: all

    - name: backup-configs
      cron: "0 3 * * 0"
      task: backup-configurations
      targets:
        role: database
`

func TestSeedClusterIsTheExample(t *testing.T) {
	if got := readFile(t, "../examples/cluster.yaml"); got != seedClusterYAML {
		t.Errorf("examples/cluster.yaml differs from the seed's cluster.yaml")
	}
}

func TestExamplesValidate(t *testing.T) {
	v := newValidator(t)

	// The seed's cluster.yaml with the example catalog: no errors.
	set, errs := LoadPath("../examples/cluster.yaml", nil)
	cat, more := LoadPath("../examples/catalog", nil)
	errs = append(errs, more...)
	errs = append(errs, set.Merge(cat)...)
	errs = append(errs, v.Validate(set, nil)...)
	if len(errs) != 0 {
		t.Errorf("examples/cluster.yaml + examples/catalog:%s", errorStrings(errs))
	}
	if got, want := len(set.Tasks), 8; got != want {
		t.Errorf("catalog has %d tasks, want %d", got, want)
	}

	// The seed's cluster.yaml alone, with its tasks known as built-ins.
	set, errs = Load("cluster.yaml", stringsReader(seedClusterYAML))
	errs = append(errs, v.Validate(set, seedCatalog)...)
	if len(errs) != 0 {
		t.Errorf("seed cluster.yaml:%s", errorStrings(errs))
	}
	c := set.Cluster
	if c.Metadata.Name != "production" || len(c.Spec.Workers) != 2 || len(c.Spec.Schedules) != 2 ||
		!c.Spec.Schedules[0].Targets.All || c.Spec.Schedules[1].Targets.Selector["role"] != "database" {
		t.Errorf("seed cluster decoded as %+v", c)
	}
	if n, err := c.Spec.Redis.Memory.Bytes(); err != nil || n != 1<<30 {
		t.Errorf("redis memory = %d, %v; want 1Gi", n, err)
	}

	// The routing example is a cluster of its own.
	set, errs = LoadPath("../examples/routing.yaml", nil)
	errs = append(errs, v.Validate(set, nil)...)
	if len(errs) != 0 {
		t.Errorf("examples/routing.yaml:%s", errorStrings(errs))
	}
	if q, ok := set.Cluster.Spec.Queues.QueueFor("database_tasks.vacuum"); !ok || q != "database_queue" {
		t.Errorf("QueueFor(database_tasks.vacuum) = %q, %v", q, ok)
	}
	if got := len(set.Cluster.Spec.Targets); got != 2 {
		t.Errorf("routing example has %d targets, want 2", got)
	}

	// Both clusters in one configuration is an error.
	set, _ = LoadPath("../examples/cluster.yaml", nil)
	routing, _ := LoadPath("../examples/routing.yaml", nil)
	if errs := set.Merge(routing); len(errs) != 1 {
		t.Errorf("Merge(two clusters) = %v, want one error", errs)
	}
}
