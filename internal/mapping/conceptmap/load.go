package conceptmap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
)

// EquivalenceValueSet is the R4 value set of ConceptMap target equivalences.
const EquivalenceValueSet = "http://hl7.org/fhir/ValueSet/concept-map-equivalence"

// The JSON shape read from a file: the ConceptMap elements this package
// uses, and those it refuses to ignore silently.
type rawMap struct {
	ResourceType string     `json:"resourceType"`
	URL          string     `json:"url"`
	Version      string     `json:"version"`
	Name         string     `json:"name"`
	Title        string     `json:"title"`
	Status       string     `json:"status"`
	Publisher    string     `json:"publisher"`
	Description  string     `json:"description"`
	Group        []rawGroup `json:"group"`
}

type rawGroup struct {
	Extension     []rawExtension `json:"extension"`
	Source        string         `json:"source"`
	SourceVersion string         `json:"sourceVersion"`
	Target        string         `json:"target"`
	TargetVersion string         `json:"targetVersion"`
	Element       []rawElement   `json:"element"`
	Unmapped      *rawUnmapped   `json:"unmapped"`
}

type rawExtension struct {
	URL         string  `json:"url"`
	ValueString *string `json:"valueString"`
}

type rawElement struct {
	Code    string      `json:"code"`
	Display string      `json:"display"`
	Target  []rawTarget `json:"target"`
}

type rawTarget struct {
	Code        string            `json:"code"`
	Display     string            `json:"display"`
	Equivalence string            `json:"equivalence"`
	Comment     string            `json:"comment"`
	DependsOn   []json.RawMessage `json:"dependsOn"`
	Product     []json.RawMessage `json:"product"`
}

type rawUnmapped struct {
	Mode    string `json:"mode"`
	Code    string `json:"code"`
	Display string `json:"display"`
	URL     string `json:"url"`
}

// Load reads every *.json file of dir in fsys as a FHIR R4 ConceptMap and
// returns them as a Set. Each file must be a valid R4 resource (checked
// with package validate) and a usable table: a unique url; groups with
// source and target; elements with a code, listed once per group, each with
// targets whose equivalence is an R4 ConceptMapEquivalence, with a code
// unless unmatched or disjoint, and with a comment when narrower or inexact
// (R4 invariant cmd-1); an unmapped rule of mode provided, or fixed with a
// code (cmd-2). dependsOn, product and unmapped mode other-map are refused:
// a translation here depends on the code alone. All problems of all files
// are reported, each error naming its file ("dir/x.json:12:5: ..." for JSON
// syntax, "dir/x.json: group[0].element[3]: ..." otherwise). A dir without
// maps gives an empty Set; a missing dir is an error.
func Load(fsys fs.FS, dir string) (*Set, error) {
	if _, err := fs.Stat(fsys, dir); err != nil {
		return nil, fmt.Errorf("conceptmap: %w", err)
	}
	files, err := fs.Glob(fsys, path.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("conceptmap: %w", err)
	}
	slices.Sort(files)
	set := &Set{byURL: make(map[string]*Map, len(files))}
	v := validate.New(model.R4(), validate.WithMaxIssues(20))
	var errs []error
	for _, file := range files {
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		m, ferrs := parseMap(v, file, data)
		errs = append(errs, ferrs...)
		if m == nil {
			continue
		}
		if prev, dup := set.byURL[m.url]; dup {
			errs = append(errs, fmt.Errorf("%s: url %s is also the url of %s", file, m.url, prev.file))
			continue
		}
		set.byURL[m.url] = m
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("conceptmap: %w", errors.Join(errs...))
	}
	set.sort()
	return set, nil
}

// parseMap checks and converts one file; it returns a nil map when the file
// has errors.
func parseMap(v *validate.Validator, file string, data []byte) (*Map, []error) {
	var raw rawMap
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, []error{jsonError(file, data, err)}
	}
	var errs []error
	fail := func(where, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if where != "" {
			msg = where + ": " + msg
		}
		errs = append(errs, fmt.Errorf("%s: %s", file, msg))
	}
	if raw.ResourceType != "ConceptMap" {
		fail("", "resourceType is %q, want ConceptMap", raw.ResourceType)
		return nil, errs
	}
	for _, is := range v.Validate(data) {
		if is.Severity == validate.SeverityError {
			fail(is.Path, "not valid FHIR R4: %s", is.Message)
		}
	}
	if raw.URL == "" {
		fail("", "url is missing: a rule names its table by url")
	}
	if len(raw.Group) == 0 {
		fail("", "no group")
	}
	equivalences, _ := model.R4().ValueSetCodes(EquivalenceValueSet)
	m := &Map{url: raw.URL, version: raw.Version, name: raw.Name, title: raw.Title, description: raw.Description,
		status: raw.Status, publisher: raw.Publisher, file: file}
	for gi, rg := range raw.Group {
		gp := fmt.Sprintf("group[%d]", gi)
		g := group{Group: Group{Source: rg.Source, SourceVersion: rg.SourceVersion, Target: rg.Target,
			TargetVersion: rg.TargetVersion}, index: make(map[string]int, len(rg.Element))}
		if rg.Source == "" {
			fail(gp, "source is missing")
		}
		if rg.Target == "" {
			fail(gp, "target is missing")
		}
		for xi, x := range rg.Extension {
			if x.URL != SourcePatternExtension {
				continue
			}
			if x.ValueString == nil || strings.TrimSpace(*x.ValueString) == "" {
				fail(fmt.Sprintf("%s.extension[%d]", gp, xi), "a source pattern needs a valueString")
				continue
			}
			p := *x.ValueString
			if rg.Source != "" && !matchPattern(p, rg.Source) {
				fail(fmt.Sprintf("%s.extension[%d]", gp, xi), "source pattern %q does not match the group's own source %s", p, rg.Source)
			}
			g.SourcePatterns = append(g.SourcePatterns, p)
		}
		if len(rg.Element) == 0 && rg.Unmapped == nil {
			fail(gp, "no element and no unmapped rule: the group maps nothing")
		}
		for ei, re := range rg.Element {
			ep := fmt.Sprintf("%s.element[%d]", gp, ei)
			if re.Code == "" {
				fail(ep, "code is missing")
				continue
			}
			if j, dup := g.index[re.Code]; dup {
				fail(ep, "code %q is listed again (first at element[%d]); give one element several targets instead", re.Code, j)
				continue
			}
			if len(re.Target) == 0 {
				fail(ep, "no target: say \"unmatched\" explicitly when a code has no counterpart")
			}
			e := Element{Code: re.Code, Display: re.Display}
			for ti, rt := range re.Target {
				tp := fmt.Sprintf("%s.target[%d]", ep, ti)
				switch {
				case !slices.Contains(equivalences, rt.Equivalence):
					fail(tp, "equivalence %q is not in %s (%s)", rt.Equivalence, EquivalenceValueSet, strings.Join(equivalences, ", "))
				case rt.Code == "" && rt.Equivalence != EquivalenceUnmatched && rt.Equivalence != EquivalenceDisjoint:
					fail(tp, "code is missing (only an unmatched or disjoint target has none)")
				case rt.Comment == "" && (rt.Equivalence == EquivalenceNarrower || rt.Equivalence == EquivalenceInexact):
					fail(tp, "a %s target needs a comment saying how it differs (R4 invariant cmd-1)", rt.Equivalence)
				}
				if len(rt.DependsOn) > 0 || len(rt.Product) > 0 {
					fail(tp, "dependsOn and product are not supported: a translation here depends on the code alone")
				}
				e.Targets = append(e.Targets, Target{System: rg.Target, Code: rt.Code, Display: rt.Display,
					Equivalence: rt.Equivalence, Comment: rt.Comment})
			}
			g.index[re.Code] = len(g.Elements)
			g.Elements = append(g.Elements, e)
		}
		if u := rg.Unmapped; u != nil {
			up := gp + ".unmapped"
			switch u.Mode {
			case UnmappedProvided:
			case UnmappedFixed:
				if u.Code == "" {
					fail(up, "mode fixed needs a code (R4 invariant cmd-2)")
				}
			case "other-map":
				fail(up, "mode other-map is not supported: name the other map in the mapping rule instead")
			default:
				fail(up, "mode %q is not provided, fixed or other-map", u.Mode)
			}
			g.UnmappedMode, g.UnmappedCode, g.UnmappedDisplay = u.Mode, u.Code, u.Display
		}
		m.groups = append(m.groups, g)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

// jsonError names the file and, for syntax and type errors, the line and
// column (1-based) where decoding stopped.
func jsonError(file string, data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 {
		return fmt.Errorf("%s: %w", file, err)
	}
	line, col := position(data, off)
	return fmt.Errorf("%s:%d:%d: %w", file, line, col, err)
}

// position gives the 1-based line and column (in bytes) of the byte that
// stopped the decoder (encoding/json reports offsets just past it), or of
// the end of the data when it ended too early.
func position(data []byte, off int64) (line, col int) {
	at := len(data)
	if off < int64(len(data)) {
		at = int(max(off-1, 0))
	}
	before := data[:at]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = at - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}
