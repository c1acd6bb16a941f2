package schema

import (
	"regexp"
	"strings"
	"testing"
)

func TestPatterns(t *testing.T) {
	tests := []struct {
		pattern   string
		match, no []string
	}{
		{NamePattern, []string{"production", "web-1", "a"}, []string{"Prod", "web_1", "-web", "web-", strings.Repeat("a", 64)}},
		{RolePattern, []string{"webserver", "web_server", "db-1"}, []string{"Web", "_web", "web."}},
		{QueuePattern, []string{"webserver_queue", "all_queue", "web_server_queue"}, []string{"_queue", "webserver", "webserver-queue"}},
		{TaskNamePattern, []string{"apt-management", "webserver_tasks.reload", "a"}, []string{"Apt", "-apt", "apt.", "apt management"}},
		{TaskGlobPattern, []string{"webserver_tasks.*", "db_tasks.[a-c]?", "*"}, []string{"Web*", "a b", ""}},
		{ParamNamePattern, []string{"package", "dest_dir", "a1"}, []string{"Package", "1a", "dest-dir", "_a"}},
		{LabelPattern, []string{"tier", "web", "celeroot.io/zone", "A1"}, []string{"", "web tier", "-x", "x-", strings.Repeat("x", 64)}},
		{DurationPattern, []string{"0", "30s", "1h30m", "1.5h", "100ms", "2µs"}, []string{"-1s", "30", "1d", "s", ""}},
		{QuantityPattern, []string{"0", "1073741824", "1Gi", "512Mi", "2G"}, []string{"1Gb", "-1Gi", "1.5Gi", "lots", ""}},
		{ModePattern, []string{"0644", "644", "1777"}, []string{"0o644", "888", "64"}},
		{AbsPathPattern, []string{"/etc/motd", "{{ .params.path }}"}, []string{"etc/motd", ""}},
	}
	for _, tt := range tests {
		re := regexp.MustCompile(tt.pattern)
		if patternHelp[tt.pattern] == "" {
			t.Errorf("pattern %s has no help text", tt.pattern)
		}
		for _, s := range tt.match {
			if !re.MatchString(s) {
				t.Errorf("%s does not match %q", tt.pattern, s)
			}
		}
		for _, s := range tt.no {
			if re.MatchString(s) {
				t.Errorf("%s matches %q", tt.pattern, s)
			}
		}
	}
}
