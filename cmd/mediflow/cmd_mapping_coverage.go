package main

import (
	"context"
	"flag"
	"fmt"
	"iter"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/mapping/coverage"
)

// openPracticeStore opens the SQLite store of the target's configuration
// to read the practice's data. It does not create a store that is not
// there.
func openPracticeStore(ctx context.Context, t *mappingTarget) (coverage.StoreReader, func(), error) {
	if t.practice == nil || t.cfg == nil {
		return nil, nil, usagef("reading stored data needs --practice (and --config)")
	}
	if d := t.cfg.Store.Driver; d != "" && d != "sqlite" {
		return nil, nil, fmt.Errorf("store driver %q: only the sqlite store is available in this build", d)
	}
	path := t.cfg.Abs(t.cfg.Store.Path)
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("no store at %s (store.path of %s): %w", path, t.cfg.File, err)
	}
	st, err := openSQLite(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { st.Close() }, nil
}

func mappingCoverageCmd() *command {
	return &command{
		name:    "coverage",
		summary: "run the mappings over real data and report per element what was filled, kept, empty or failed",
		long: `Maps real data with a practice's rules and reports, per canonical element,
how often it was populated, kept as the EHR sent it, left empty, failed (with
the reasons, grouped) or skipped; the codes the code tables did not map, with
counts; up to three masked examples; and totals per resource type.

The data is the practice's stored raw data (--practice, --config: the newest
raw FHIR pages of each connection, --max-pages of them, and its inbound HL7 v2
messages) or a folder (--input DIR) of FHIR Bundles (.json), NDJSON (.ndjson)
and HL7 v2 files (.hl7). With --input, give the EHR with --vendor or take the
practice's with --practice. Nothing is written to the store.

Examples are masked: names, identifier values, addresses, phone numbers, birth
dates (but the year) and free text never appear in the report.

Formats: html (one self-contained page) and json.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			var mf mappingFlags
			mf.define(fs)
			input := fs.String("input", "", "map the files in `DIR` instead of the stored data")
			format := fs.String("format", "html", "output format: html or json")
			out := fs.String("out", "", "write to `FILE` instead of standard output")
			maxPages := fs.Int("max-pages", coverage.DefaultMaxRaw, "stored raw pages read per connection, newest first")
			maxHL7 := fs.Int("max-hl7", 0, "stored HL7 v2 messages read, oldest first (0: all)")
			examples := fs.Int("examples", coverage.DefaultExamples, "masked examples per element (0: none)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("mapping coverage takes no arguments")
				}
				if !slices.Contains(coverage.Formats(), *format) {
					return usagef("--format must be one of %s, not %q", strings.Join(coverage.Formats(), ", "), *format)
				}
				if *input == "" && mf.practice == "" {
					return usagef("give --practice ID (stored data) or --input DIR with --vendor NAME")
				}
				if *maxPages <= 0 || *maxHL7 < 0 || *examples < 0 {
					return usagef("--max-pages must be positive, --max-hl7 and --examples not negative")
				}
				t, err := mf.load(env)
				if err != nil {
					return err
				}
				conv, err := t.hl7Converter()
				if err != nil {
					return fmt.Errorf("HL7 v2 specs: %w", err)
				}
				opts := coverage.Options{
					TimeZone: t.timeZone(), MaxExamples: *examples, VendorVersion: t.version,
					Generated: time.Now(), MediflowVersion: version,
				}
				if opts.MaxExamples == 0 {
					opts.MaxExamples = -1
				}
				if t.practice != nil {
					opts.Practice = t.practice.ID
				}
				var items iter.Seq2[coverage.Item, error]
				if *input != "" {
					items = coverage.FromDir(*input, conv)
					opts.Input = "folder " + *input
				} else {
					st, closeStore, err := openPracticeStore(ctx, t)
					if err != nil {
						return err
					}
					defer closeStore()
					items = coverage.FromStore(ctx, st, t.practice.ID, coverage.StoreOptions{
						Connections: connectionNames(t.practice), MaxRaw: *maxPages, HL7: conv, MaxHL7: *maxHL7,
					})
					opts.Input = fmt.Sprintf("stored data of practice %s (newest %d raw pages per connection, inbound HL7 v2 messages)", t.practice.ID, *maxPages)
				}
				rep, err := coverage.Run(ctx, t.set, items, opts)
				if err != nil {
					return err
				}
				w, done, err := openOut(env, *out)
				if err != nil {
					return err
				}
				err = coverage.Write(w, rep, *format)
				if derr := done(err != nil); err == nil {
					err = derr
				}
				return err
			}
		},
	}
}
