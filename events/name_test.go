package events

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strconv"
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
// one of numberTypes, by the JSON key of the one top-level field that
// holds the free-form values (a payload without that key in its JSON is
// decoded without keeping numbers).
func TestNumberTypesCoverFreeFormFields(t *testing.T) {
	for typ, newPayload := range registry {
		rt := reflect.TypeOf(newPayload()).Elem()
		var keys []string
		for i := range rt.NumField() {
			f := rt.Field(i)
			if f.IsExported() && hasInterface(f.Type, map[reflect.Type]bool{}) {
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				keys = append(keys, strconv.Quote(name))
			}
		}
		key, listed := numberTypes[typ]
		switch {
		case len(keys) == 0 && listed:
			t.Errorf("%s: in numberTypes but has no free-form (interface) field", typ)
		case len(keys) > 1:
			t.Errorf("%s: free-form values in %v; numberTypes names one key a payload", typ, keys)
		case len(keys) == 1 && key != keys[0]:
			t.Errorf("%s: free-form values in %s, numberTypes has %q; keep them in step", typ, keys[0], key)
		}
	}
}

// A submission whose parameters hold large integers keeps them exact,
// and one without parameters decodes as before.
func TestDecodeKeepsParameterNumbers(t *testing.T) {
	src := Source{Cluster: "c", Actor: "a"}
	for _, p := range []TaskSubmitted{
		{TaskID: "t1", Task: "command", Argv: []string{"--params", "9007199254740993"}, Route: RouteQueue, Target: "web"},
		{TaskID: "t2", Task: "pkg", Params: map[string]any{"n": json.Number("9007199254740993"), "nested": map[string]any{"m": json.Number("12345678901234567890")}}, Route: RouteQueue, Target: "web"},
	} {
		fields, err := Encode(src.New(p))
		if err != nil {
			t.Fatal(err)
		}
		e, err := Decode(toValues(t, fields))
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Payload.(TaskSubmitted); !reflect.DeepEqual(got, p) {
			t.Errorf("decoded %#v, want %#v", got, p)
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
