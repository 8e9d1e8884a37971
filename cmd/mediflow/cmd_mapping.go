package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/profiles"
)

// mappingCmd groups the data-mapping tools. Each subcommand is one entry of
// subs.
func mappingCmd() *command {
	return &command{
		name:    "mapping",
		summary: "data mapping tools (EHR data → canonical FHIR): document, coverage, tests",
		long: `The mapping profiles turn each EHR's data into one canonical FHIR R4
shape (docs/mapping.md). Each subcommand has its own --help.`,
		subs: []*command{
			mappingDocCmd(),
			mappingCoverageCmd(),
			mappingTestCmd(),
		},
	}
}

// profilesFS returns the shipped profiles, or a folder given with
// --profiles (for working on the profiles themselves).
func profilesFS(dir string) (fs.FS, error) {
	if dir == "" {
		return profiles.FS, nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("profiles: %s is not a folder", dir)
	}
	return os.DirFS(dir), nil
}

func mappingTestCmd() *command {
	return &command{
		name:    "test",
		summary: "run a practice's mapping test cases against its overrides",
		usage:   "DIR",
		long: `Runs the test cases of a practice's mapping overrides, like unit tests
for configuration. DIR holds:

  overrides.yaml   the practice's rules (same format as the shipped
                   profiles; optional: without it the shipped rules are tested)
  conceptmaps/     the practice's own code tables (FHIR ConceptMap JSON; optional)
  cases/*.yaml     one test case per file

A case names the EHR, gives one resource as that EHR sends it, and says
what the canonical result must hold:

  name: mobile numbers are stored in E.164
  vendor: epic
  version: May 2026                 # optional
  input: patient.json               # a file beside the case, or the resource inline
  expect:                           # FHIRPath assertions; each must give true
    - Patient.telecom.where(system = 'phone').value.first() = '+14695550100'
    - Patient.identifier.where(type.coding.code = 'MR').system = 'urn:oid:2.16.840.1.113883.3.9999'

"expect: expected.json" compares the whole canonical resource instead (the
profile-version tag is ignored); "expectError: text" expects the mapping to
fail with that text; "direction: out" tests write-back.

Prints PASS or FAIL per case with the reasons (file:line), then a summary.
Exits 1 when a case fails or the overrides do not load (the error names the
file and line), 2 on a usage error.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			profDir := fs.String("profiles", "", "use the profiles in `DIR` instead of the shipped ones")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) != 1 {
					return usagef("mapping test takes exactly one DIR")
				}
				fsys, err := profilesFS(*profDir)
				if err != nil {
					return err
				}
				results, err := mapping.RunCases(ctx, fsys, args[0])
				if err != nil {
					return err
				}
				failed := 0
				for _, r := range results {
					if r.Passed() {
						fmt.Fprintf(env.stdout, "PASS  %s\n", r.Name)
						continue
					}
					failed++
					fmt.Fprintf(env.stdout, "FAIL  %s\n", r.Name)
					for _, f := range r.Failures {
						fmt.Fprintf(env.stdout, "      %s\n", f)
					}
				}
				fmt.Fprintf(env.stdout, "%d passed, %d failed\n", len(results)-failed, failed)
				if failed > 0 {
					return fmt.Errorf("%d of %d cases failed", failed, len(results))
				}
				return nil
			}
		},
	}
}
