package events

import (
	"math/rand/v2"
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
