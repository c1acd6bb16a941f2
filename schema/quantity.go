package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Quantity is an amount of memory as written in a document: a number of
// bytes, or a number followed by a unit (see ParseQuantity).
type Quantity string

// Bytes returns the quantity in bytes.
func (q Quantity) Bytes() (int64, error) { return ParseQuantity(string(q)) }

// UnmarshalJSON accepts a string or a JSON number (an unquoted
// "memory: 1073741824" in YAML). Other values leave q empty; the validator
// reports them.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	var v any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil
	}
	switch v := v.(type) {
	case string:
		*q = Quantity(v)
	case json.Number:
		*q = Quantity(v.String())
	}
	return nil
}

var quantityUnits = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// ParseQuantity parses a byte quantity: a whole number of bytes
// ("1073741824"), or a whole number followed by a binary unit Ki, Mi, Gi,
// Ti (powers of 1024) or a decimal unit K, M, G, T (powers of 1000):
// "512Mi", "1Gi", "2G". Signs, fractions, spaces and other units are
// errors, as is a value over math.MaxInt64 bytes.
func ParseQuantity(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty quantity; use a number of bytes or a value such as 512Mi or 1Gi")
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], s[i:]
	if num == "" {
		if s[0] == '-' {
			return 0, fmt.Errorf("quantity %q is negative", s)
		}
		return 0, fmt.Errorf("quantity %q does not start with a number; use a value such as 512Mi or 1Gi", s)
	}
	mult := int64(1)
	if unit != "" {
		mult = 0
		for _, u := range quantityUnits {
			if unit == u.suffix {
				mult = u.mult
				break
			}
		}
		if mult == 0 {
			return 0, fmt.Errorf("quantity %q: %s", s, unitProblem(num, unit))
		}
	}
	var n int64
	for _, c := range num {
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, fmt.Errorf("quantity %q is too large", s)
		}
		n = n*10 + d
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("quantity %q is too large", s)
	}
	return n * mult, nil
}

// unitProblem explains an unknown unit, guessing what was meant.
func unitProblem(num, unit string) string {
	switch {
	case strings.HasPrefix(unit, "."):
		return "fractions are not supported; use a smaller unit (1536Mi, not 1.5Gi)"
	case strings.HasPrefix(unit, " "):
		return "remove the space between the number and the unit"
	}
	p := strings.ToUpper(unit[:1])
	looksLikeUnit := strings.Contains("KMGT", p) &&
		(len(unit) == 1 || len(unit) <= 3 && strings.ContainsAny(unit[1:], "bBiI"))
	if looksLikeUnit {
		return fmt.Sprintf("unknown unit %q; did you mean %s%si (powers of 1024) or %s%s (powers of 1000)?", unit, num, p, num, p)
	}
	return fmt.Sprintf("unknown unit %q; use Ki, Mi, Gi, Ti (powers of 1024) or K, M, G, T (powers of 1000)", unit)
}
