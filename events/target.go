package events

import (
	"fmt"
	"strings"
)

// Target is a parsed --target: every worker (All), the workers of one role
// (Role), or one worker by its hostname (Host). Exactly one is set.
type Target struct {
	All  bool
	Role string
	Host string
}

// ParseTarget parses the --target of task run and schedules: "all" (or the
// crontab form "role:all"), "role:<role>", or a worker's hostname.
func ParseTarget(s string) (Target, error) {
	switch {
	case s == "":
		return Target{}, fmt.Errorf("empty target: give a hostname, role:<role> or all")
	case s == "all" || s == "role:all":
		return Target{All: true}, nil
	case strings.HasPrefix(s, "role:"):
		role := strings.TrimPrefix(s, "role:")
		if role == "" {
			return Target{}, fmt.Errorf("role: names no role: give role:<role>, such as role:webserver, or all")
		}
		if err := ValidateName("role", role); err != nil {
			return Target{}, err
		}
		return Target{Role: role}, nil
	}
	if err := ValidateName("hostname", s); err != nil {
		return Target{}, fmt.Errorf("%v (or use role:<role> or all)", err)
	}
	return Target{Host: s}, nil
}

// FanOut reports whether the target may name several workers.
func (t Target) FanOut() bool { return t.Host == "" }

// String is the target's canonical form: all, role:<role> or the hostname.
func (t Target) String() string {
	switch {
	case t.All:
		return "all"
	case t.Role != "":
		return "role:" + t.Role
	}
	return t.Host
}
