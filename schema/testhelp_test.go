package schema

import (
	"os"
	"sort"
	"strings"
	"testing"
)

// seedCatalog names the tasks the seed's cluster.yaml uses, for tests that
// validate a cluster without the example catalog.
var seedCatalog = map[string]bool{
	"apt-management": true, "nginx-config": true, "mysql-management": true,
	"check-security-updates": true, "backup-configurations": true,
}

func newValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := NewValidator()
	if err != nil {
		t.Fatalf("NewValidator() = %v", err)
	}
	return v
}

// loadAndValidate loads src as one file and validates it, returning load
// and validation errors in position order.
func loadAndValidate(t testing.TB, v *Validator, name, src string, catalog map[string]bool) (*Set, []*Error) {
	t.Helper()
	set, errs := Load(name, strings.NewReader(src))
	errs = append(errs, v.Validate(set, catalog)...)
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Col < errs[j].Col
	})
	return set, errs
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func errorStrings(errs []*Error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n\t")
		b.WriteString(e.Error())
	}
	return b.String()
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
