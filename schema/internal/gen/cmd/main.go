// Command cmd writes the JSON Schema files of package schema into the
// current directory. "go generate ./schema/..." runs it from schema/.
package main

import (
	"fmt"
	"os"

	"github.com/celeroot/celeroot/schema/internal/gen"
)

func main() {
	files, err := gen.Generate(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	for _, name := range gen.Files {
		if err := os.WriteFile(name, files[name], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}
