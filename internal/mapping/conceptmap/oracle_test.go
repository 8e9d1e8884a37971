package conceptmap_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// cernerCodeSet matches Oracle Health's proprietary code systems.
var cernerCodeSet = regexp.MustCompile(`^https://fhir\.cerner\.com/[^/]+/codeSet/[0-9]+$`)

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

// oracleUse is one CodeableConcept of a fixture holding a proprietary coding
// and the standard codings beside it.
type oracleUse struct {
	file     string
	prop     coding
	standard []coding
}

// oracleUses walks every Oracle Health fixture for CodeableConcepts that
// pair a proprietary coding with standard codings.
func oracleUses(t *testing.T) []oracleUse {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repo.Shared(t, "fixtures/vendors/oracle-health"), "*.json"))
	if err != nil || len(files) < 200 {
		t.Fatalf("Oracle Health fixtures: %d files (%v)", len(files), err)
	}
	var uses []oracleUse
	var walk func(file string, v any)
	walk = func(file string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if arr, ok := x["coding"].([]any); ok {
				var props, std []coding
				for _, c := range arr {
					m, _ := c.(map[string]any)
					cd := coding{}
					cd.System, _ = m["system"].(string)
					cd.Code, _ = m["code"].(string)
					cd.Display, _ = m["display"].(string)
					switch {
					case cd.System == "" || cd.Code == "":
					case cernerCodeSet.MatchString(cd.System):
						props = append(props, cd)
					default:
						std = append(std, cd)
					}
				}
				if len(std) > 0 {
					for _, p := range props {
						uses = append(uses, oracleUse{file: filepath.Base(file), prop: p, standard: std})
					}
				}
			}
			for _, y := range x {
				walk(file, y)
			}
		case []any:
			for _, y := range x {
				walk(file, y)
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(f, v)
	}
	return uses
}

// oracleConflicts are proprietary codes Oracle's own examples pair with
// unrelated standard codes; the shipped map leaves them out. The test
// checks that each still conflicts in the fixtures and that every conflict
// there is listed.
var oracleConflicts = map[string]string{
	"72|703535": "paired with hemoglobin (LOINC 718-7) in r4_observation_entered_in_error_status.json and r4_observation_patient_bundle.json, " +
		"and with axillary temperature (8328-7, 8310-5) in r4_observation_bundle.json and r4_observation_entry.json",
}

func codeSetKey(c coding) string {
	return c.System[strings.LastIndexByte(c.System, '/')+1:] + "|" + c.Code
}

// Every proprietary coding of Oracle Health's published examples that has a
// standard coding beside it translates to that standard coding, whatever
// the tenant in its system URL; the map holds nothing the examples do not
// show.
func TestOracleFixturesTranslate(t *testing.T) {
	m := mustGet(t, shipped(t), "oracle-health-codesets")
	uses := oracleUses(t)
	if len(uses) < 100 {
		t.Fatalf("only %d proprietary+standard pairs found in the fixtures", len(uses))
	}

	// Conflicts: a code shown with different displays and with standard
	// codings of one system that share nothing (the same code given to two
	// concepts). Disjoint codings under one display are synonyms (SNOMED CT
	// has two codes for dietary protein; examples of different years use
	// either) and both stay in the map.
	type shown struct {
		display string
		std     []string
	}
	seen := map[string][]shown{}
	union := map[string][]string{}
	for _, u := range uses {
		sh := shown{display: u.prop.Display}
		for _, s := range u.standard {
			sh.std = append(sh.std, s.System+"|"+s.Code)
		}
		key := codeSetKey(u.prop)
		seen[key] = append(seen[key], sh)
		union[key] = append(union[key], sh.std...)
	}
	sysOf := func(s string) string { return s[:strings.LastIndexByte(s, '|')] }
	found := map[string]bool{}
	for key, list := range seen {
		for i := range list {
			for j := range i {
				a, b := list[i], list[j]
				if a.display != b.display && sysOf(a.std[0]) == sysOf(b.std[0]) &&
					!slices.ContainsFunc(a.std, func(s string) bool { return slices.Contains(b.std, s) }) {
					found[key] = true
				}
			}
		}
	}
	for key := range found {
		if _, ok := oracleConflicts[key]; !ok {
			t.Errorf("codeSet|code %s is paired with unrelated standard codes in different examples; list it in oracleConflicts and leave it out of the map", key)
		}
	}
	for key := range oracleConflicts {
		if !found[key] {
			t.Errorf("oracleConflicts lists %s, but the fixtures no longer contradict themselves on it", key)
		}
	}

	pairs := map[string]bool{} // prop system|code|std system|std code, by codeSet
	checked := 0
	for _, u := range uses {
		key := codeSetKey(u.prop)
		all := m.TranslateAll(u.prop.System, u.prop.Code)
		if _, conflict := oracleConflicts[key]; conflict {
			if len(all) != 0 {
				t.Errorf("%s: conflicting code %s translates to %+v", u.file, key, all)
			}
			continue
		}
		for _, s := range u.standard {
			pairs[key+"|"+s.System+"|"+s.Code] = true
			if !slices.ContainsFunc(all, func(tg conceptmap.Target) bool { return tg.System == s.System && tg.Code == s.Code }) {
				t.Errorf("%s: %s|%s does not translate to %s|%s (got %+v)", u.file, u.prop.System, u.prop.Code, s.System, s.Code, all)
			}
			checked++
		}
		// Translate picks one target: one the examples pair with this code.
		if best, ok := m.Translate(u.prop.System, u.prop.Code); !ok || !slices.Contains(union[key], best.System+"|"+best.Code) {
			t.Errorf("%s: Translate(%s|%s) = %+v, %v; not a coding the examples pair with it", u.file, u.prop.System, u.prop.Code, best, ok)
		}
	}
	// The map holds only pairs the examples show.
	var extra []string
	for _, g := range m.Groups() {
		cs := g.Source[strings.LastIndexByte(g.Source, '/')+1:]
		for _, e := range g.Elements {
			for _, tg := range e.Targets {
				if !pairs[cs+"|"+e.Code+"|"+g.Target+"|"+tg.Code] {
					extra = append(extra, cs+"|"+e.Code+" → "+g.Target+"|"+tg.Code)
				}
			}
		}
	}
	sort.Strings(extra)
	for _, x := range extra {
		t.Errorf("the map has a pair no fixture shows: %s", x)
	}
	t.Logf("%d proprietary codings with %d standard codings checked against %d map elements", len(uses), checked, m.Len())
}

// The domain maps repeat some Oracle Health groups (so one rule can use one
// map for every vendor); those rows agree with oracle-health-codesets or
// with a documented translation through v2.
func TestDomainMapsAgreeWithOracleMap(t *testing.T) {
	set := shipped(t)
	oracle := mustGet(t, set, "oracle-health-codesets")
	// encounter-class maps codeSet 71 to v3 ActCode, which Oracle's examples
	// reach through v2 patient class; compose the two.
	class := mustGet(t, set, "encounter-class")
	for _, m := range set.All() {
		if m == oracle {
			continue
		}
		for _, g := range m.Groups() {
			if !cernerCodeSet.MatchString(g.Source) {
				continue
			}
			for _, e := range g.Elements {
				for _, tg := range e.Targets {
					want := oracle.TranslateAll(g.Source, e.Code)
					if m == class {
						var via []conceptmap.Target
						for _, v := range want {
							if t2, ok := class.Translate(v.System, v.Code); ok {
								via = append(via, t2)
							}
						}
						want = via
					}
					if !slices.ContainsFunc(want, func(o conceptmap.Target) bool { return o.System == tg.System && o.Code == tg.Code }) {
						t.Errorf("%s: %s|%s → %s|%s disagrees with oracle-health-codesets (%+v)", m.URL(), g.Source, e.Code, tg.System, tg.Code, want)
					}
				}
			}
		}
	}
}
