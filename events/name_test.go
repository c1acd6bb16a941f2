package events

import (
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// nameRE is the rule ValidateName implements by hand.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

func TestValidNameMatchesRule(t *testing.T) {
	cases := []string{"", "a", "A", "0", "-", ".", "a-", "-a", "a.b", "web01", "web_01", "a b", "a:b", "{a}",
		"a\x00b", "é", "ab\n", strings.Repeat("a", 253), strings.Repeat("a", 254), "01JBQ9ZB7W8V2G6Y0M4XK2R3TN"}
	const alphabet = "aZ09._-:{} \xff"
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := r.IntN(8)
		var b strings.Builder
		for range n {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, c := range cases {
		if got, want := validName(c), nameRE.MatchString(c); got != want {
			t.Errorf("validName(%q) = %v, want %v", c, got, want)
		}
	}
}

// Every payload with a free-form value decodes its numbers exactly: it is
// one of numberTypes.
func TestNumberTypesCoverFreeFormFields(t *testing.T) {
	for typ, newPayload := range registry {
		rt := reflect.TypeOf(newPayload()).Elem()
		if hasInterface(rt, map[reflect.Type]bool{}) != numberTypes[typ] {
			t.Errorf("%s: has a free-form (interface) field = %v, in numberTypes = %v; keep them in step",
				typ, hasInterface(rt, map[reflect.Type]bool{}), numberTypes[typ])
		}
	}
}

func hasInterface(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return hasInterface(t.Elem(), seen)
	case reflect.Map:
		return hasInterface(t.Key(), seen) || hasInterface(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && hasInterface(f.Type, seen) {
				return true
			}
		}
	}
	return false
}
