package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/mapping/coverage"
	"github.com/mediflow/mediflow/internal/mapping/mapdoc"
)

// mappingFlags choose the mapping a doc or coverage run uses: a practice of
// the configuration (its EHR vendor comes from its first connection), or a
// vendor profile alone; plus the vendor version and the practice's
// overrides, which the configuration has no keys for yet.
type mappingFlags struct {
	cfgPath, practice, vendor, version, overrides, profiles string
}

func (f *mappingFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.cfgPath, "config", "mediflow.yaml", "configuration `file` (read with --practice)")
	fs.StringVar(&f.practice, "practice", "", "practice `id` from the configuration")
	fs.StringVar(&f.vendor, "vendor", "", "EHR vendor profile `name` (without --practice; with it, must match the practice's connection)")
	fs.StringVar(&f.version, "vendor-version", "", "the EHR's software `version` (\"May 2026\", \"5.0.1.698\"; default: the newest release the profile knows)")
	fs.StringVar(&f.overrides, "overrides", "", "the practice's mapping overrides: a YAML `file`, or a folder with overrides.yaml and conceptmaps/")
	fs.StringVar(&f.profiles, "profiles", "", "use the profiles in `DIR` instead of the shipped ones")
}

// mappingTarget is what the flags chose.
type mappingTarget struct {
	cfg      *config.Config   // nil without --practice
	practice *config.Practice // nil without --practice
	vendor   string
	version  string
	set      *mapping.Set
}

// load reads the configuration (secrets are not resolved: nothing here
// connects anywhere) and loads the mapping set.
func (f *mappingFlags) load(env *cliEnv) (*mappingTarget, error) {
	t := &mappingTarget{vendor: f.vendor, version: f.version}
	if f.practice != "" {
		data, err := os.ReadFile(f.cfgPath)
		if err != nil {
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		cfg, err := config.Parse(f.cfgPath, data, config.WithEnv(env.getenv))
		if err != nil {
			return nil, err
		}
		p, ok := cfg.Practice(f.practice)
		if !ok {
			ids := make([]string, 0, len(cfg.Practices))
			for _, p := range cfg.Practices {
				ids = append(ids, p.ID)
			}
			return nil, usagef("%s has no practice %q (practices: %s)", f.cfgPath, f.practice, strings.Join(ids, ", "))
		}
		t.cfg, t.practice = cfg, p
		cv := "generic" // a practice with HL7 v2 listeners only
		if len(p.Connections) > 0 {
			cv = p.Connections[0].Vendor
		}
		switch {
		case t.vendor == "":
			t.vendor = cv
		case t.vendor != cv && len(p.Connections) > 0:
			return nil, usagef("--vendor %s, but practice %s connects to %s", t.vendor, p.ID, cv)
		}
	} else if t.vendor == "" {
		return nil, usagef("give --practice ID (with --config FILE) or --vendor NAME")
	}
	fsys, err := profilesFS(f.profiles)
	if err != nil {
		return nil, err
	}
	var srcs []mapping.Source
	if f.overrides != "" {
		src, err := readOverrides(f.overrides)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	t.set, err = mapping.Load(fsys, t.vendor, t.version, srcs...)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// readOverrides reads a practice's overrides: a YAML file, or a folder with
// overrides.yaml (optional) and conceptmaps/ (optional), as mapping test
// reads them.
func readOverrides(path string) (mapping.Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return mapping.Source{}, fmt.Errorf("overrides: %w", err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return mapping.Source{}, fmt.Errorf("overrides: %w", err)
		}
		return mapping.Source{Name: path, Data: data}, nil
	}
	file := filepath.Join(path, "overrides.yaml")
	src := mapping.Source{Name: file}
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		src.Data = data
	case !errors.Is(err, fs.ErrNotExist):
		return mapping.Source{}, fmt.Errorf("overrides: %w", err)
	}
	if st, err := os.Stat(filepath.Join(path, "conceptmaps")); err == nil && st.IsDir() {
		src.ConceptMaps = os.DirFS(filepath.Join(path, "conceptmaps"))
	}
	return src, nil
}

// timeZone returns the practice's time zone from the profile parameter
// timeZone (nil when unset or unknown).
func (t *mappingTarget) timeZone() *time.Location {
	name := t.set.Params()["timeZone"]
	if name == "" {
		return nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil
	}
	return loc
}

// hl7Converter converts HL7 v2 messages in the practice's time zone.
func (t *mappingTarget) hl7Converter() (*v2fhir.Converter, error) {
	return v2fhir.New(v2fhir.Options{TimeZone: t.timeZone()})
}

// openOut returns the writer for --out (standard output when empty) and
// a function that finishes it: it closes the file, or removes it when the
// command failed.
func openOut(env *cliEnv, path string) (io.Writer, func(failed bool) error, error) {
	if path == "" || path == "-" {
		return env.stdout, func(bool) error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("create %w", err)
	}
	return f, func(failed bool) error {
		err := f.Close()
		if failed {
			os.Remove(path)
			return nil
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}, nil
}

func mappingDocCmd() *command {
	return &command{
		name:    "doc",
		summary: "generate a practice's data-mapping document (Markdown, HTML or CSV)",
		long: `Writes the data-mapping document for a practice's EHR and version: every
canonical element mediflow fills, where it comes from, the transforms and their
purpose, defaults, whether it is required, why, and which layer (canonical,
vendor, practice) set the rule at which file and line; the code tables in full;
what this EHR cannot provide; which data classes are read and which can be
written back and how; and, when the practice receives HL7 v2, how messages
become FHIR resources. The document is generated from the same loaded rules the
engine runs.

The practice comes from the configuration (--practice, --config): its EHR is
the vendor of its first connection. Without a practice, --vendor documents a
vendor profile alone. The configuration has no keys for the EHR version and
the practice's overrides yet: give them with --vendor-version and --overrides.

--sample DIR fills the example column from FHIR Bundles (.json), NDJSON
(.ndjson) or HL7 v2 files (.hl7) in DIR; --sample store from the practice's
stored raw data. Examples are masked: names, identifier values, addresses,
phone numbers, birth dates (but the year) and free text never appear.

Formats: md (Markdown), html (one self-contained page) and csv (one row per
element).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			var mf mappingFlags
			mf.define(fs)
			format := fs.String("format", "md", "output format: md, html or csv")
			out := fs.String("out", "", "write to `FILE` instead of standard output")
			sample := fs.String("sample", "", "example data: a `DIR` of .json/.ndjson/.hl7 files, or \"store\" for the practice's stored data")
			withHL7 := fs.Bool("hl7", false, "include the HL7 v2 conversion (default: when the practice has HL7 v2 listeners)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("mapping doc takes no arguments")
				}
				if !slices.Contains(mapdoc.Formats(), *format) {
					return usagef("--format must be one of %s, not %q", strings.Join(mapdoc.Formats(), ", "), *format)
				}
				t, err := mf.load(env)
				if err != nil {
					return err
				}
				in := mapdoc.Input{
					Vendor: t.vendor, VendorVersion: t.version, Set: t.set,
					TimeZone: t.timeZone(), Generated: time.Now(), MediflowVersion: version,
				}
				hl7 := *withHL7
				if p := t.practice; p != nil {
					in.PracticeID, in.PracticeName = p.ID, p.Name
					hl7 = hl7 || len(p.HL7Listeners) > 0
				}
				if hl7 {
					if in.HL7, err = v2fhir.LoadCatalog(); err != nil {
						return fmt.Errorf("HL7 v2 specs: %w", err)
					}
				}
				if t.practice != nil {
					in.Reads = mapdoc.ReadsFromConfig(t.practice, in.HL7)
				}
				if *sample != "" {
					if in.Samples, in.SampleSource, err = docSamples(ctx, env, t, *sample); err != nil {
						return err
					}
				}
				w, done, err := openOut(env, *out)
				if err != nil {
					return err
				}
				err = mapdoc.Generate(in, *format, w)
				if derr := done(err != nil); err == nil {
					err = derr
				}
				return err
			}
		},
	}
}

// docSamples reads up to mapdoc.MaxSamples resources from a folder or the
// practice's store.
func docSamples(ctx context.Context, env *cliEnv, t *mappingTarget, from string) ([][]byte, string, error) {
	conv, err := t.hl7Converter()
	if err != nil {
		return nil, "", fmt.Errorf("HL7 v2 specs: %w", err)
	}
	var items iter.Seq2[coverage.Item, error]
	var source string
	if from == "store" {
		st, closeStore, err := openPracticeStore(ctx, t)
		if err != nil {
			return nil, "", err
		}
		defer closeStore()
		items = coverage.FromStore(ctx, st, t.practice.ID, coverage.StoreOptions{Connections: connectionNames(t.practice), MaxRaw: 20, HL7: conv, MaxHL7: 200})
		source = "the practice's stored data"
	} else {
		items = coverage.FromDir(from, conv)
		source = "the sample folder " + from
	}
	var out [][]byte
	skipped := 0
	for it, err := range items {
		if err != nil {
			return nil, "", err
		}
		if it.Resource == nil {
			skipped++
			continue
		}
		out = append(out, it.Resource)
		if len(out) == mapdoc.MaxSamples {
			break
		}
	}
	if skipped > 0 {
		fmt.Fprintf(env.stderr, "mapping doc: %d sample inputs could not be read (run mapping coverage on them for the reasons)\n", skipped)
	}
	return out, source, nil
}

func connectionNames(p *config.Practice) []string {
	var out []string
	for _, c := range p.Connections {
		out = append(out, c.Name)
	}
	return out
}
