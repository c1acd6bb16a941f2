package schema

import (
	"strings"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"0", 0, ""},
		{"1073741824", 1 << 30, ""},
		{"1Ki", 1024, ""},
		{"512Mi", 512 << 20, ""},
		{"1Gi", 1 << 30, ""},
		{"2Ti", 2 << 40, ""},
		{"1K", 1000, ""},
		{"2M", 2_000_000, ""},
		{"2G", 2_000_000_000, ""},
		{"3T", 3_000_000_000_000, ""},
		{"007Mi", 7 << 20, ""},
		{"9223372036854775807", 9223372036854775807, ""},
		{"8388607Ti", 8388607 << 40, ""},
		{"", 0, "empty quantity"},
		{"1Gb", 0, `unknown unit "Gb"; did you mean 1Gi (powers of 1024) or 1G (powers of 1000)?`},
		{"1gi", 0, `unknown unit "gi"; did you mean 1Gi`},
		{"1k", 0, `unknown unit "k"; did you mean 1Ki`},
		{"1GiB", 0, `unknown unit "GiB"`},
		{"1Pi", 0, `unknown unit "Pi"; use Ki, Mi, Gi, Ti`},
		{"1.5Gi", 0, "fractions are not supported"},
		{"1 Gi", 0, "remove the space"},
		{"-1Gi", 0, `quantity "-1Gi" is negative`},
		{"+1Gi", 0, "does not start with a number"},
		{"lots", 0, `quantity "lots" does not start with a number`},
		{"Gi", 0, "does not start with a number"},
		{"9223372036854775808", 0, "too large"},
		{"8388608Ti", 0, "too large"},
		{"99999999999999999999999Ki", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseQuantity(tt.in)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseQuantity(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseQuantity(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
		}
	}
}
