package mapping

import (
	"context"
	"errors"
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mediflow/mediflow/profiles"
)

// testProfiles is a small profile tree: the shipped code tables, a canonical
// layer and one vendor ("acme"), with files replaced or added by extra.
func testProfiles(t *testing.T, extra map[string]string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	maps, err := fs.Glob(profiles.FS, "conceptmaps/*.json")
	if err != nil || len(maps) == 0 {
		t.Fatalf("conceptmaps: %v", err)
	}
	for _, m := range maps {
		b, err := fs.ReadFile(profiles.FS, m)
		if err != nil {
			t.Fatal(err)
		}
		fsys[m] = &fstest.MapFile{Data: b}
	}
	base := map[string]string{
		"canonical/profile.yaml": "name: canonical\nversion: 3\nparams:\n  mrnSystem: \"\"\n  timeZone: UTC\n",
		"canonical/patient.yaml": `resource: Patient
rules:
  - id: patient.gender
    target: gender
    transform: [trim]
    rationale: Gender is tidied.
  - id: patient.birthDate
    target: birthDate
    transform: [date]
    rationale: Dates are dates.
`,
		"acme/profile.yaml": "name: acme\nversion: 7\ntitle: Acme EHR\nreleases:\n  - versions: \">= 2.0\"\n    note: new\n",
	}
	for k, v := range base {
		fsys[k] = &fstest.MapFile{Data: []byte(v)}
	}
	for k, v := range extra {
		if v == "" {
			delete(fsys, k)
			continue
		}
		fsys[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return fsys
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	for _, c := range []struct {
		name    string
		file    string
		content string
		want    []string // each must appear in the error
	}{
		{"unknown key", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    sourc: gender\n    rationale: r\n",
			[]string{`acme/patient.yaml:5: unknown key "sourc" in a rule (hint: did you mean source?)`}},
		{"unknown element in a source", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    source: \"name.where(use = 'official').famly\"\n    rationale: r\n",
			[]string{"acme/patient.yaml:5: rule x: source:", "famly", "hint: check the element name against the FHIR R4 definition of HumanName"}},
		{"unknown element in an element-path source", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    source: gendr\n    rationale: r\n",
			[]string{"acme/patient.yaml:5: rule x: source: gendr: Patient has no element gendr"}},
		{"bad target", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: name.family\n    rationale: r\n",
			[]string{"acme/patient.yaml:4: rule x: target: name.family: name repeats; select the elements with each: name"}},
		{"choice target", "acme/observation.yaml", "resource: Observation\nrules:\n  - id: x\n    target: value\n    rationale: r\n",
			[]string{"acme/observation.yaml:4:", "has several types; name one (valueQuantity)"}},
		{"FHIRPath syntax", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    condition: \"gender = \"\n    rationale: r\n",
			[]string{"acme/patient.yaml:5: rule x: condition:"}},
		{"unknown transform", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    transform: [trimm]\n    rationale: r\n",
			[]string{`acme/patient.yaml:5: rule x: unknown transform "trimm" (hint: did you mean trim?)`}},
		{"transform argument", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    transform:\n      - code: {map: http://nosuch}\n    rationale: r\n",
			[]string{"acme/patient.yaml:6: rule x: transform code: no ConceptMap with url http://nosuch"}},
		{"no rationale", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n",
			[]string{"acme/patient.yaml:3: rule x has no rationale"}},
		{"no id", "acme/patient.yaml", "resource: Patient\nrules:\n  - target: gender\n    rationale: r\n",
			[]string{"acme/patient.yaml:3: rule without id"}},
		{"unknown resource", "acme/patient.yaml", "resource: Patinet\nrules: []\n",
			[]string{`acme/patient.yaml:1: unknown resource type "Patinet" (hint: did you mean Patient?)`}},
		{"each over primitives", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    each: name.given\n    target: $this\n    rationale: r\n",
			[]string{"acme/patient.yaml:4: rule x: each selects string values"}},
		{"bad direction", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    direction: sideways\n    rationale: r\n",
			[]string{`acme/patient.yaml:5: rule x: unknown direction "sideways"`}},
		{"disabling nothing", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: nosuch\n    enabled: false\n    rationale: r\n",
			[]string{"acme/patient.yaml:3: rule nosuch disables a rule that does not exist"}},
		{"after nothing", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    after: nosuch\n    rationale: r\n",
			[]string{`acme/patient.yaml:5: rule x: after: no rule "nosuch"`}},
		{"invalid YAML", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n   target: gender\n",
			[]string{"acme/patient.yaml:2: invalid YAML", "hint: check the indentation"}},
		{"no version", "acme/profile.yaml", "name: acme\n", []string{"acme/profile.yaml: profile acme has no version"}},
		{"wrong name", "acme/profile.yaml", "name: other\nversion: 1\n", []string{`acme/profile.yaml:1: profile name "other" in folder "acme"`}},
		{"bad range", "acme/patient.yaml", "resource: Patient\nrules:\n  - id: x\n    target: gender\n    versions: \">= soon\"\n    rationale: r\n",
			[]string{"acme/patient.yaml:5: rule x:", "hint: write ranges like"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(testProfiles(t, map[string]string{c.file: c.content}), "acme", "")
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadReportsEveryError(t *testing.T) {
	_, err := Load(testProfiles(t, map[string]string{
		"acme/patient.yaml": "resource: Patient\nrules:\n  - id: a\n    target: gendr\n    rationale: r\n  - id: b\n    target: gender\n",
	}), "acme", "")
	if err == nil || !strings.Contains(err.Error(), "patient.yaml:4:") || !strings.Contains(err.Error(), "patient.yaml:6:") {
		t.Errorf("want both errors: %v", err)
	}
}

func TestLoadArguments(t *testing.T) {
	fsys := testProfiles(t, nil)
	if _, err := Load(fsys, "nosuch", ""); !errors.Is(err, ErrUnknownVendor) || !strings.Contains(err.Error(), "acme") {
		t.Errorf("unknown vendor: %v", err)
	}
	if _, err := Load(fsys, "acme", "sometime"); !errors.Is(err, ErrBadVersion) {
		t.Errorf("bad version: %v", err)
	}
	if _, err := Load(fsys, "canonical", ""); !errors.Is(err, ErrUnknownVendor) {
		t.Errorf("canonical as vendor: %v", err)
	}
}

func TestLayering(t *testing.T) {
	fsys := testProfiles(t, map[string]string{
		"acme/patient.yaml": `resource: Patient
rules:
  - id: patient.gender
    source: "extension('http://acme/sex').value"
    rationale: Acme keeps sex in an extension.
  - id: acme.early
    before: patient.gender
    target: active
    transform: [{constant: true}]
    rationale: Acme patients are active.
  - id: acme.old
    versions: "< 2.0"
    target: deceasedBoolean
    transform: [{constant: false}]
    rationale: Old Acme releases only.
notAvailable:
  - element: Patient.maritalStatus
    note: Acme has none.
  - element: Patient.photo
    note: Old releases only.
    versions: "< 2.0"
`,
	})
	practice := Source{Name: "practice.yaml", Data: []byte(`name: sunrise
params:
  mrnSystem: urn:sunrise
resources:
  - resource: Patient
    rules:
      - id: patient.birthDate
        enabled: false
        rationale: Sunrise does not want birth dates touched.
      - id: sunrise.mrn
        after: patient.gender
        target: identifier
        source: "%mrnSystem"
        transform: [{constant: {value: {system: "%mrnSystem", value: "1"}}}]
        rationale: test
`)}
	set, err := Load(fsys, "acme", "2.1", practice)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range set.Rules("Patient") {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, " "); got != "acme.early patient.gender sunrise.mrn" {
		t.Errorf("rules: %s", got)
	}
	g := set.Rules("Patient")[1]
	if g.Source != "extension('http://acme/sex').value" || g.Target != "gender" || len(g.Steps) != 1 || g.Layer != "acme" ||
		strings.Join(g.Layers, ",") != "canonical,acme" || g.Rationale != "Acme keeps sex in an extension." || g.Pos.File != "acme/patient.yaml" {
		t.Errorf("merged rule: %+v", g)
	}
	if n := set.NotAvailable("Patient"); len(n) != 1 || n[0].Element != "Patient.maritalStatus" {
		t.Errorf("notes for 2.1: %+v", n)
	}
	if v := set.Version(); !regexp.MustCompile(`^acme@7 \+ canonical@3 \+ sunrise@[0-9a-f]{12}$`).MatchString(v) {
		t.Errorf("version %q", v)
	}
	if set.Params()["mrnSystem"] != "urn:sunrise" {
		t.Errorf("params: %v", set.Params())
	}
	if l := set.Layers(); len(l) != 3 || l[1].Title != "Acme EHR" || l[1].Releases[0].Note != "new" || l[2].Name != "sunrise" {
		t.Errorf("layers: %+v", l)
	}
	// An old release gets the versioned rule and note.
	old, err := Load(fsys, "acme", "1.9")
	if err != nil {
		t.Fatal(err)
	}
	if rs := old.Rules("Patient"); len(rs) != 4 || rs[3].ID != "acme.old" || len(old.NotAvailable("Patient")) != 2 {
		t.Errorf("1.9: %d rules, %d notes", len(rs), len(old.NotAvailable("Patient")))
	}
	// Changing the practice file changes the version.
	practice.Data = append(practice.Data, '\n')
	set2, err := Load(fsys, "acme", "2.1", practice)
	if err != nil {
		t.Fatal(err)
	}
	if set2.Version() == set.Version() {
		t.Error("a different practice file gave the same version")
	}
	// A practice's own code tables are part of its version.
	withMaps := practice
	withMaps.ConceptMaps = fstest.MapFS{"x.json": fsys["conceptmaps/marital-status.json"]}
	set3, err := Load(fsys, "acme", "2.1", withMaps)
	if err != nil {
		t.Fatal(err)
	}
	if set3.Version() == set2.Version() {
		t.Error("practice code tables did not change the version")
	}
	// A practice may not invent parameters.
	_, err = Load(fsys, "acme", "", Source{Name: "p.yaml", Data: []byte("params:\n  mrnSystm: x\n")})
	if err == nil || !strings.Contains(err.Error(), `p.yaml:2: unknown parameter "mrnSystm"`) {
		t.Errorf("unknown parameter: %v", err)
	}
}

func TestShippedProfilesLoad(t *testing.T) {
	vendors, err := Vendors(profiles.FS)
	if err != nil {
		t.Fatal(err)
	}
	want := "athenahealth eclinicalworks epic generic nextgen oracle-health veradigm"
	if got := strings.Join(vendors, " "); got != want {
		t.Errorf("vendors %q, want %q", got, want)
	}
	for _, v := range vendors {
		set, err := Load(profiles.FS, v, "")
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		types := set.ResourceTypes()
		for _, rt := range []string{"Patient", "Practitioner", "Appointment", "Coverage", "Encounter", "Observation", "Condition", "AllergyIntolerance"} {
			if len(set.Rules(rt)) < 2 {
				t.Errorf("%s: %s has %d rules", v, rt, len(set.Rules(rt)))
			}
			found := false
			for _, x := range types {
				found = found || x == rt
			}
			if !found {
				t.Errorf("%s: no rules for %s", v, rt)
			}
		}
		for _, rt := range append(types, "Resource") {
			for _, r := range set.Rules(rt) {
				if len(r.Rationale) < 20 {
					t.Errorf("%s: rule %s has no real rationale: %q", v, r.ID, r.Rationale)
				}
			}
		}
		if l := set.Layers(); l[1].Title == "" || l[1].Description == "" {
			t.Errorf("%s: profile has no title or description", v)
		}
	}
}

func TestMapAfterLoadUsesContext(t *testing.T) {
	set, err := Load(profiles.FS, "generic", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := set.Map(ctx, []byte(`{"resourceType":"Patient"}`), MapOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
