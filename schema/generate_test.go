package schema_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/schema/internal/gen"
)

// TestSchemaUpToDate regenerates the JSON Schema files into a temporary
// directory and compares them with the checked-in ones.
func TestSchemaUpToDate(t *testing.T) {
	files, err := gen.Generate(".")
	if err != nil {
		t.Fatalf("Generate() = %v", err)
	}
	dir := t.TempDir()
	for _, name := range gen.Files {
		fresh := filepath.Join(dir, name)
		if err := os.WriteFile(fresh, files[name], 0o644); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(fresh)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("schema/%s: %v; run make schema", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("schema/ out of date; run make schema (schema/%s differs from %s)", name, fresh)
		}
	}
	if gen.ClusterID != schema.ClusterSchemaID || gen.TaskID != schema.TaskSchemaID || gen.PluginID != schema.PluginSchemaID {
		t.Errorf("generator ids %s, %s, %s differ from the package's %s, %s, %s", gen.ClusterID, gen.TaskID, gen.PluginID,
			schema.ClusterSchemaID, schema.TaskSchemaID, schema.PluginSchemaID)
	}
}
