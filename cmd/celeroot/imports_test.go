package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// importRules says which packages of the module each package may import,
// by path relative to the module root. A pattern ending in "/..." matches
// the directory and everything below it. A package takes the rule of its
// exact path if there is one, else of the longest matching "/..." pattern;
// a package with no rule is a failure, so every new package gets one.
//
// The layers, from the bottom: events (the event types) and schema (the
// configuration documents) know nothing of the rest, though schema's
// internal generators may read events; streams is the Redis data plane;
// projections fold the streams into views; agent runs on the hosts; ctl is
// the command line; cmd/celeroot only calls ctl. examples is embedded
// example configuration, which celeroot dev (ctl) applies.
//
// The tests of a package may also import the package itself, the test
// helpers (see isHelper) and the fixture packages below.
var importRules = map[string]rule{
	"events":              {},
	"schema":              {may: []string{"schema/internal/..."}},
	"schema/internal/...": {may: []string{"events", "schema", "schema/internal/..."}},
	"streams":             {may: []string{"events", "schema", "streams/..."}, redis: true},
	"streams/...":         {may: []string{"events", "schema", "streams/..."}, redis: true},
	"streams/streamstest": {may: []string{"events", "schema", "streams"}, redis: true},
	"projections":         {may: []string{"events", "streams"}, redis: true},
	"agent":               {may: []string{"events", "schema", "streams", "projections"}, redis: true},
	"ctl":                 {may: []string{"events", "schema", "streams", "projections", "agent", "examples"}, redis: true},
	"examples":            {},
	"cmd/celeroot":        {may: []string{"ctl"}},
}

// fixtures are data packages that any test may import.
var fixtures = []string{"examples"}

// rule is what one package may import.
type rule struct {
	// may lists the module packages (patterns) it may import.
	may []string
	// redis allows importing the go-redis client.
	redis bool
}

// goRedis is the import path prefix of the Redis client library.
const goRedis = "github.com/redis/go-redis/"

// listedPackage is what 'go list -json' tells of a package.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

func TestImportDirection(t *testing.T) {
	root, modPath := moduleRoot(t)
	watchSources(t, root)
	pkgs := listPackages(t, root)
	listed := map[string]bool{}
	for _, p := range pkgs {
		listed[p.ImportPath] = true
	}
	for _, want := range []string{"events", "streams", "ctl", "cmd/celeroot"} {
		if !listed[modPath+"/"+want] {
			t.Fatalf("go list ./... in %s did not list %s/%s; is this the module root?", root, modPath, want)
		}
	}
	for _, v := range checkImports(modPath, pkgs) {
		t.Error(v)
	}
}

// TestImportRulesCatchViolations checks the checker itself on made-up
// packages, so a rule table that allows everything cannot go unnoticed.
func TestImportRulesCatchViolations(t *testing.T) {
	const mod = "example.com/m"
	pkgs := []listedPackage{
		{ImportPath: mod + "/events", Imports: []string{"fmt", mod + "/streams"}, XTestImports: []string{mod + "/examples"}},
		{ImportPath: mod + "/examples", Imports: []string{"embed"}},
		{ImportPath: mod + "/agent", Imports: []string{mod + "/examples"}},
		{ImportPath: mod + "/streams", Imports: []string{mod + "/events", mod + "/schema", goRedis + "v9"},
			XTestImports: []string{mod + "/streams", mod + "/streams/streamstest", "testing"}},
		{ImportPath: mod + "/streams/streamstest", Imports: []string{mod + "/streams", goRedis + "v9"}},
		{ImportPath: mod + "/projections", Imports: []string{mod + "/agent", mod + "/streams/streamstest"}},
		{ImportPath: mod + "/ctl", Imports: []string{mod + "/agent", goRedis + "v9"},
			XTestImports: []string{mod + "/ctl", mod + "/streams/streamstest"}},
		{ImportPath: mod + "/cmd/celeroot", Imports: []string{mod + "/ctl", mod + "/streams", goRedis + "v9"}},
		{ImportPath: mod + "/schema", TestImports: []string{mod + "/events"}, XTestImports: []string{mod + "/schema/internal/gen"}},
		{ImportPath: mod + "/schema/internal/gen", Imports: []string{mod + "/events", mod + "/schema"}},
		{ImportPath: mod + "/schema/internal/gen/cmd", Imports: []string{mod + "/schema/internal/gen", mod + "/ctl"}},
		{ImportPath: mod + "/newpkg", Imports: []string{"fmt"}},
	}
	got := checkImports(mod, pkgs)
	want := []string{
		"agent imports examples: not allowed (agent may import: events, schema, streams, projections)",
		"cmd/celeroot imports github.com/redis/go-redis/v9: not allowed (only agent, ctl, projections, streams, streams/..., streams/streamstest may use the Redis client)",
		"cmd/celeroot imports streams: not allowed (cmd/celeroot may import: ctl)",
		"events imports streams: not allowed (events may import: nothing of the module)",
		"newpkg: no import rule; add one to importRules in cmd/celeroot/imports_test.go",
		"projections imports agent: not allowed (projections may import: events, streams)",
		"projections imports streams/streamstest: not allowed (test helpers are for _test.go files only)",
		"schema (tests) imports events: not allowed (schema's tests may import: schema/internal/..., schema, examples, test helpers)",
		"schema/internal/gen/cmd imports ctl: not allowed (schema/internal/gen/cmd may import: events, schema, schema/internal/...)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// checkImports returns one message per import that breaks importRules,
// sorted. modPath is the module path.
func checkImports(modPath string, pkgs []listedPackage) []string {
	rel := func(p string) (string, bool) {
		if p == modPath {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, modPath+"/")
		return r, ok
	}
	helpers := map[string]bool{}
	for _, p := range pkgs {
		if r, ok := rel(p.ImportPath); ok && isHelper(r) {
			helpers[r] = true
		}
	}
	var redisOK []string
	for pat, r := range importRules {
		if r.redis {
			redisOK = append(redisOK, pat)
		}
	}
	sort.Strings(redisOK)

	var out []string
	for _, p := range pkgs {
		name, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		if p.Error != nil {
			out = append(out, name+": cannot be loaded: "+p.Error.Err)
			continue
		}
		r, ok := ruleFor(name)
		if !ok {
			out = append(out, name+": no import rule; add one to importRules in cmd/celeroot/imports_test.go")
			continue
		}
		check := func(imports []string, tests bool) {
			who, allowed := name, name+" may import: "+describe(r.may)
			if tests {
				who = name + " (tests)"
				allowed = name + "'s tests may import: " + strings.Join(slices.Concat(r.may, []string{name}, fixtures, []string{"test helpers"}), ", ")
			}
			for _, imp := range imports {
				if strings.HasPrefix(imp, goRedis) {
					if !r.redis {
						out = append(out, who+" imports "+imp+": not allowed (only "+strings.Join(redisOK, ", ")+" may use the Redis client)")
					}
					continue
				}
				dep, ok := rel(imp)
				if !ok {
					continue
				}
				switch {
				case helpers[dep] && tests:
					// Test helpers serve every test.
				case helpers[dep]:
					out = append(out, who+" imports "+dep+": not allowed (test helpers are for _test.go files only)")
				case tests && (dep == name || matchesAny(fixtures, dep)):
				case matchesAny(r.may, dep):
				default:
					out = append(out, who+" imports "+dep+": not allowed ("+allowed+")")
				}
			}
		}
		check(p.Imports, false)
		check(append(append([]string(nil), p.TestImports...), p.XTestImports...), true)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// ruleFor returns the rule of a package (path relative to the module).
func ruleFor(name string) (rule, bool) {
	if r, ok := importRules[name]; ok {
		return r, true
	}
	best, found := "", false
	for pat := range importRules {
		if strings.HasSuffix(pat, "/...") && match(pat, name) && len(pat) > len(best) {
			best, found = pat, true
		}
	}
	return importRules[best], found
}

// match reports whether a package path matches a pattern.
func match(pat, name string) bool {
	if base, ok := strings.CutSuffix(pat, "/..."); ok {
		return name == base || strings.HasPrefix(name, base+"/")
	}
	return name == pat
}

func matchesAny(pats []string, name string) bool {
	for _, p := range pats {
		if match(p, name) {
			return true
		}
	}
	return false
}

func describe(may []string) string {
	if len(may) == 0 {
		return "nothing of the module"
	}
	return strings.Join(may, ", ")
}

// isHelper reports whether a package is a test helper, such as
// streams/streamstest: its name is its parent's plus "test".
func isHelper(name string) bool {
	dir, base := filepath.Dir(name), filepath.Base(name)
	return dir != "." && base == filepath.Base(dir)+"test"
}

// moduleRoot returns the directory and path of the main module.
func moduleRoot(t *testing.T) (dir, path string) {
	t.Helper()
	out := goCmd(t, ".", "list", "-m", "-f", "{{.Dir}}\n{{.Path}}")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] == "" || lines[1] == "" {
		t.Fatalf("go list -m: unexpected output %q", out)
	}
	return lines[0], lines[1]
}

func listPackages(t *testing.T, root string) []listedPackage {
	t.Helper()
	out := goCmd(t, root, "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports,Error", "./...")
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("go list -json: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// watchSources reads every directory of the module and stats every Go
// file, so that go test's result cache, which tracks the files a test
// touches (not those its go list child reads), is invalidated by any change
// to the module's imports.
func watchSources(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root {
			if n := d.Name(); n == "testdata" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatalf("read the module's sources: %v", err)
	}
}

// goCmd runs the go command in dir and returns its standard output.
func goCmd(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		if goroot := os.Getenv("GOROOT"); goroot != "" {
			gobin = filepath.Join(goroot, "bin", "go")
		} else {
			t.Fatalf("the go command is not on PATH: %v", err)
		}
	}
	cmd := exec.Command(gobin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}
