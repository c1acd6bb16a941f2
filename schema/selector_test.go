package schema

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{"tier=web", map[string]string{"tier": "web"}, ""},
		{"tier=web,environment=production", map[string]string{"tier": "web", "environment": "production"}, ""},
		{" tier = web , role=webserver ", map[string]string{"tier": "web", "role": "webserver"}, ""},
		{"hostname=webserver01", map[string]string{"hostname": "webserver01"}, ""},
		{"celeroot.io/zone=eu-west-1a", map[string]string{"celeroot.io/zone": "eu-west-1a"}, ""},
		{"", nil, "empty selector"},
		{"   ", nil, "empty selector"},
		{"tier", nil, `"tier" has no '='`},
		{"=web", nil, "empty key"},
		{"tier=", nil, `key "tier" has an empty value`},
		{"tier=web,", nil, "empty pair 2"},
		{",tier=web", nil, "empty pair 1"},
		{"tier=web,tier=db", nil, `key "tier" given twice`},
		{"tier==web", nil, "use a single '='"},
		{"tier!=web", nil, "only key=value is supported"},
		{"ti er=web", nil, `key "ti er" is not`},
		{"tier=we;b", nil, `value "we;b" of tier is not`},
		{"-tier=web", nil, `key "-tier" is not`},
		{"tier=" + strings.Repeat("x", 64), nil, "is not 1-63"},
		{"tier=wéb", nil, `value "wéb"`},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if tt.wantErr == "" {
			if err != nil || !cmp.Equal(got, tt.want) {
				t.Errorf("ParseSelector(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseSelector(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
		}
	}
}

func TestSelectorString(t *testing.T) {
	s := Selector{"tier": "web", "role": "webserver"}
	if got, want := s.String(), "role=webserver,tier=web"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	back, err := ParseSelector(s.String())
	if err != nil || !cmp.Equal(Selector(back), s) {
		t.Errorf("ParseSelector(String()) = %v, %v; want %v", back, err, s)
	}
}
