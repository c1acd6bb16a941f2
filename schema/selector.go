package schema

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Selector matches workers by role, hostname or any label: a worker
// matches when it has every key with the given value.
type Selector map[string]string

// Selector keys with a meaning of their own; every other key is a label.
const (
	SelectorRole     = "role"
	SelectorHostname = "hostname"
)

// String renders the selector as k=v pairs sorted by key, the form
// ParseSelector reads.
func (s Selector) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(s[k])
	}
	return b.String()
}

// Targets says where a schedule runs: on every worker (All, written
// "targets: all"), or on the workers that match Selector (written as a
// mapping, "targets: {role: database}").
type Targets struct {
	All      bool
	Selector Selector
}

// MarshalJSON writes "all" or the selector mapping.
func (t Targets) MarshalJSON() ([]byte, error) {
	if t.All {
		return []byte(`"all"`), nil
	}
	if t.Selector == nil {
		return []byte(`{}`), nil
	}
	return json.Marshal(map[string]string(t.Selector))
}

// UnmarshalJSON reads "all" or a selector mapping. Other values leave t
// empty; the validator reports them.
func (t *Targets) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = Targets{All: s == "all"}
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		sel := Selector{}
		for k, v := range m {
			if s, ok := v.(string); ok {
				sel[k] = s
			}
		}
		*t = Targets{Selector: sel}
	}
	return nil
}

// ParseSelector parses a label selector as given on the command line:
// comma-separated key=value pairs such as "tier=web,environment=production".
// Spaces around keys and values are ignored. Keys and values follow
// LabelPattern; a key may appear once. The keys role and hostname select by
// role and hostname, any other key selects by label.
func ParseSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty selector; use key=value pairs such as tier=web,env=prod")
	}
	out := map[string]string{}
	for i, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			return nil, fmt.Errorf("selector %q: empty pair %d (a stray comma?)", s, i+1)
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("selector %q: %q has no '='; use key=value", s, pair)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.HasSuffix(k, "!") {
			return nil, fmt.Errorf("selector %q: only key=value is supported, not key!=value", s)
		}
		if strings.HasPrefix(v, "=") {
			return nil, fmt.Errorf("selector %q: %q: use a single '='", s, pair)
		}
		if k == "" {
			return nil, fmt.Errorf("selector %q: %q has an empty key", s, pair)
		}
		if v == "" {
			return nil, fmt.Errorf("selector %q: key %q has an empty value", s, k)
		}
		if !labelRE.MatchString(k) {
			return nil, fmt.Errorf("selector %q: key %q is not %s", s, k, patternHelp[LabelPattern])
		}
		if !labelRE.MatchString(v) {
			return nil, fmt.Errorf("selector %q: value %q of %s is not %s", s, v, k, patternHelp[LabelPattern])
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("selector %q: key %q given twice", s, k)
		}
		out[k] = v
	}
	return out, nil
}
