package ctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/celeroot/celeroot/streams/streamstest"
)

// examplesDir is the repository's examples folder.
func examplesDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// The seed's cluster.yaml validates, diffs and applies unchanged (with the
// example catalog); bad documents append nothing; an identical apply is
// unchanged; rollback makes a new revision; schedules are listed and
// exported as crontab lines.
func TestConfigAndSchedulesCLI(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ex := examplesDir(t)
			cluster := streamstest.ClusterName(t)
			env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
			files := []string{"-f", filepath.Join(ex, "cluster.yaml"), "-f", filepath.Join(ex, "catalog")}

			out, errOut, code := run(t, env, append([]string{"config", "validate"}, files...)...)
			if code != 0 || !strings.Contains(out, "valid: cluster production (2 worker groups, 2 schedules)") {
				t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
			}
			// --cluster (from the environment) differs from metadata.name.
			if _, errOut, code = run(t, env, append([]string{"config", "apply"}, files...)...); code != 2 || !strings.Contains(errOut, `describe cluster "production"`) {
				t.Fatalf("apply with a different --cluster: exit %d, %s", code, errOut)
			}
			// The documents' cluster is "production"; keep tests apart by
			// renaming it in a copy.
			dir := t.TempDir()
			seed, err := os.ReadFile(filepath.Join(ex, "cluster.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			own := filepath.Join(dir, "cluster.yaml")
			if err := os.WriteFile(own, []byte(strings.Replace(string(seed), "name: production", "name: "+cluster, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			files = []string{"-f", own, "-f", filepath.Join(ex, "catalog")}

			if out, _, code = run(t, env, append([]string{"config", "diff"}, files...)...); code != 1 || !strings.Contains(out, "+ worker group webservers") {
				t.Fatalf("diff before the first apply: exit %d\n%s", code, out)
			}
			if out, errOut, code = run(t, env, append([]string{"config", "apply", "--expect-revision", "0", "-m", "first"}, files...)...); code != 0 || !strings.Contains(out, "applied revision 1") {
				t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
			}
			if out, _, code = run(t, env, append([]string{"config", "diff"}, files...)...); code != 0 || !strings.Contains(out, "no differences with revision 1") {
				t.Fatalf("diff after apply: exit %d\n%s", code, out)
			}
			if out, _, code = run(t, env, append([]string{"config", "apply"}, files...)...); code != 0 || !strings.Contains(out, "unchanged") {
				t.Fatalf("identical apply: exit %d\n%s", code, out)
			}
			// A bad document: every problem reported, nothing appended.
			bad := filepath.Join(dir, "bad.yaml")
			os.WriteFile(bad, []byte(strings.Replace(strings.Replace(string(seed), "name: production", "name: "+cluster, 1), "replicas: 2", "replicas: -2", 1)), 0o644)
			_, errOut, code = run(t, env, "config", "apply", "-f", bad, "-f", filepath.Join(ex, "catalog"))
			if code != 1 || !strings.Contains(errOut, "bad.yaml:16:17: /spec/workers/0/replicas") || !strings.Contains(errOut, "nothing was applied") {
				t.Fatalf("bad apply: exit %d\n%s", code, errOut)
			}
			if out, _, _ = run(t, env, "config", "history"); strings.Count(out, "\n") != 2 {
				t.Fatalf("history after a bad apply:\n%s", out)
			}
			// Two applies racing from revision 1: exactly one wins.
			v2 := filepath.Join(dir, "v2.yaml")
			v3 := filepath.Join(dir, "v3.yaml")
			base := strings.Replace(string(seed), "name: production", "name: "+cluster, 1)
			os.WriteFile(v2, []byte(strings.Replace(base, `cron: "0 2 * * *"`, `cron: "0 4 * * *"`, 1)), 0o644)
			os.WriteFile(v3, []byte(strings.Replace(base, `cron: "0 2 * * *"`, `cron: "0 5 * * *"`, 1)), 0o644)
			var wg sync.WaitGroup
			codes := make([]int, 2)
			errs := make([]string, 2)
			for i, f := range []string{v2, v3} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i], codes[i] = runNoEnv("config", "apply", "--redis", srv.URL, "--expect-revision", "1", "-f", f)
				}()
			}
			wg.Wait()
			if codes[0]+codes[1] != 1 || !strings.Contains(errs[0]+errs[1], "not 1: someone applied in between") {
				t.Fatalf("racing applies: exit codes %v, stderr %q", codes, errs)
			}
			if out, _, code = run(t, env, "config", "rollback", "--to", "1"); code != 0 || !strings.Contains(out, "applied revision 3") {
				t.Fatalf("rollback: exit %d\n%s", code, out)
			}
			if out, _, _ = run(t, env, "config", "show", "--revision", "3", "-o", "json"); !strings.Contains(out, `"cron": "0 2 * * *"`) {
				t.Errorf("revision 3 is not revision 1's content:\n%.400s", out)
			}
			out, _, code = run(t, env, "cluster", "status")
			if code != 0 || !strings.Contains(out, "Config revision:  3") || !strings.Contains(out, "webserver  2 (missing 2)") {
				t.Errorf("cluster status:\n%s", out)
			}
			out, _, code = run(t, env, "task", "catalog")
			if code != 0 || !strings.Contains(out, "install-package          package  package*:string") {
				t.Errorf("task catalog:\n%s", out)
			}
			out, _, code = run(t, env, "schedules", "export", "--crontab")
			if code != 0 || !strings.Contains(out, `0 2 * * * root celeroot task run check-security-updates --target role:all`) ||
				!strings.Contains(out, `0 3 * * 0 root celeroot task run backup-configurations --target role:database`) {
				t.Errorf("crontab export:\n%s", out)
			}
			out, _, code = run(t, env, "schedules", "list")
			if code != 0 || !strings.Contains(out, "security-updates") || !strings.Contains(out, "backup-configs") {
				t.Errorf("schedules list:\n%s", out)
			}
			if _, errOut, code = run(t, env, "schedules", "trigger", "no-such"); code == 0 || !strings.Contains(errOut, "security-updates") {
				t.Errorf("trigger of an unknown schedule: exit %d, %s", code, errOut)
			}
		})
	}
}
