package v2fhir

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

// The embedded specs load, and cover exactly the supported triggers.
func TestEmbeddedSpecsLoad(t *testing.T) {
	cat, err := LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range cat.Messages {
		got = append(got, s.MessageCode+"^"+s.TriggerEvent)
	}
	want := "ADT^A01 ADT^A02 ADT^A03 ADT^A04 ADT^A08 ADT^A11 ADT^A13 ADT^A28 ADT^A31 ADT^A40 MDM^T02 ORU^R01 " +
		"SIU^S12 SIU^S13 SIU^S14 SIU^S15 SIU^S17 SIU^S26"
	if strings.Join(got, " ") != want {
		t.Errorf("messages:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if len(Specs()) != len(cat.Messages) {
		t.Errorf("Specs() has %d, the catalog %d", len(Specs()), len(cat.Messages))
	}
}

// The exported description says message → segment → field → element,
// data type map and table, for the mapping document.
func TestSpecForDescribesTheRules(t *testing.T) {
	s, ok := SpecFor("adt", "a01")
	if !ok {
		t.Fatal("SpecFor(adt, a01) not found")
	}
	if s.Structure != "ADT_A01" || s.Source.File != "specs/messages/ADT_A01.yaml" || s.Source.Line == 0 {
		t.Errorf("spec = %+v", s)
	}
	var pat *ResourceSpec
	for i := range s.Resources {
		if s.Resources[i].Name == "patient" {
			pat = &s.Resources[i]
		}
	}
	if pat == nil || pat.Type != "Patient" || pat.Segment != "PID" || pat.Map == nil || pat.Map.Name != "PID[Patient]" {
		t.Fatalf("patient resource = %+v", pat)
	}
	if len(pat.Include) != 2 || pat.Include[0].Map.Name != "PD1[Patient]" {
		t.Errorf("patient includes = %+v", pat.Include)
	}
	var gender, ident *Rule
	for _, r := range pat.Map.Rules {
		if len(r.From) == 1 && r.From[0] == "PID-8" {
			gender = r
		}
		if len(r.From) == 1 && r.From[0] == "PID-3" {
			ident = r
		}
	}
	if gender == nil || gender.Path != "gender" || gender.As != "code" || gender.Table == nil || gender.Table.Name != "AdministrativeSex" || gender.Table.V2 != "0001" {
		t.Errorf("PID-8 rule = %+v", gender)
	}
	if ident == nil || ident.Path != "identifier[]" || ident.Map == nil || ident.Map.Name != "CX[Identifier]" || len(ident.Map.Rules) == 0 {
		t.Errorf("PID-3 rule = %+v", ident)
	}
	var enc *ResourceSpec
	for i := range s.Resources {
		if s.Resources[i].Name == "encounter" {
			enc = &s.Resources[i]
		}
	}
	if enc == nil || len(enc.EventRules) != 1 || enc.EventRules[0].Value != `"in-progress"` {
		t.Errorf("A01 encounter event rules = %+v", enc)
	}
	a11, _ := SpecFor("ADT", "A11")
	for _, r := range a11.Resources {
		if r.Name == "encounter" && (len(r.EventRules) != 1 || r.EventRules[0].Value != `"entered-in-error"`) {
			t.Errorf("A11 encounter event rules = %+v", r.EventRules)
		}
	}
	if _, ok := SpecFor("ADT", "A99"); ok {
		t.Error("SpecFor(ADT, A99) found something")
	}
}

// specFiles copies the embedded specs into a map file system, so tests can
// add broken files.
func specFiles(t *testing.T) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(specFS, "specs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(specFS, p)
		if err != nil {
			return err
		}
		m[p] = &fstest.MapFile{Data: data}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Broken specs are refused with the file and line of the problem.
func TestSpecErrorsNameFileAndLine(t *testing.T) {
	segMap := func(rule string) string {
		return "maps:\n  - name: PID[RelatedPerson]\n    segment: PID\n    resource: RelatedPerson\n    rules:\n" + rule
	}
	cases := []struct {
		name, file, data, want string
	}{
		{"unknown segment", "specs/segments/zz.yaml",
			"maps:\n  - name: ZZZ[Patient]\n    segment: ZZZ\n    resource: Patient\n    rules:\n      - {from: ZZZ-1, path: gender, as: code}\n",
			"specs/segments/zz.yaml:2: map ZZZ[Patient]: unknown segment \"ZZZ\""},
		{"unknown field", "specs/segments/zz.yaml",
			segMap("      - {from: PID-3, path: \"identifier[]\", map: \"CX[Identifier]\"}\n      - {from: PID-99, path: gender, as: code}\n"),
			"specs/segments/zz.yaml:7: from PID-99: unknown field PID-99"},
		{"unknown component", "specs/segments/zz.yaml",
			segMap("      - {from: PID-3-42, path: gender, as: code}\n"),
			"specs/segments/zz.yaml:6: from PID-3-42: PID-3-42: CX has no component 42"},
		{"unknown datatype map", "specs/segments/zz.yaml",
			segMap("      - {from: PID-5, path: \"name[]\", map: \"XPN[Nonsense]\"}\n"),
			"specs/segments/zz.yaml:6: map: unknown data type map \"XPN[Nonsense]\""},
		{"map of another type", "specs/segments/zz.yaml",
			segMap("      - {from: PID-5, path: \"name[]\", map: \"CX[Identifier]\"}\n"),
			"specs/segments/zz.yaml:6: map CX[Identifier] reads CX, but the value here is XPN"},
		{"unknown table", "specs/segments/zz.yaml",
			segMap("      - {from: PID-8, path: gender, as: code, table: NoSuchTable}\n"),
			"specs/segments/zz.yaml:6: table: unknown table \"NoSuchTable\""},
		{"unknown conversion", "specs/segments/zz.yaml",
			segMap("      - {from: PID-7, path: birthDate, as: datum}\n"),
			"specs/segments/zz.yaml:6: as: unknown conversion \"datum\""},
		{"unknown key", "specs/segments/zz.yaml",
			segMap("      - from: PID-7\n        path: birthDate\n        az: date\n"),
			"specs/segments/zz.yaml:8: unknown key \"az\""},
		{"bad condition", "specs/segments/zz.yaml",
			segMap("      - {from: PID-7, path: birthDate, as: date, when: \"PID-7 sometimes\"}\n"),
			"specs/segments/zz.yaml:6: when: condition \"PID-7 sometimes\": unknown test \"sometimes\""},
		{"bad path", "specs/segments/zz.yaml",
			segMap("      - {from: PID-7, path: \"birth date\", as: date}\n"),
			"specs/segments/zz.yaml:6: path \"birth date\": bad element name"},
		{"unknown data type in a map name", "specs/datatypes/zz.yaml",
			"maps:\n  - name: QQ[Identifier]\n    rules:\n      - {comp: 1, path: value, as: string}\n",
			"specs/datatypes/zz.yaml:2: map QQ[Identifier]: unknown data type \"QQ\""},
		{"component beyond the data type", "specs/datatypes/zz.yaml",
			"maps:\n  - name: HD[Identifier]\n    rules:\n      - {comp: 9, path: value, as: string}\n",
			"specs/datatypes/zz.yaml:4: comp 9: HD has no component 9"},
		{"unknown resource in a message", "specs/messages/ZZZ_Z01.yaml",
			"code: ZZZ\ntriggers:\n  Z01: {description: test}\nresources:\n  - name: patient\n    type: Patient\n    segment: PID\n    map: \"PID[Patient]\"\n    key: [[PID-3-1]]\n    rules:\n      - {path: link, ref: nobody}\n",
			"specs/messages/ZZZ_Z01.yaml:11: ref/refs: no resource \"nobody\" in this message spec"},
		{"unknown segment map in a message", "specs/messages/ZZZ_Z01.yaml",
			"code: ZZZ\ntriggers:\n  Z01: {description: test}\nresources:\n  - name: patient\n    type: Patient\n    segment: PID\n    map: \"PID[Nobody]\"\n    key: [[PID-3-1]]\n",
			"specs/messages/ZZZ_Z01.yaml:5: resource \"patient\": unknown segment map \"PID[Nobody]\""},
		{"trigger defined twice", "specs/messages/ZZZ_A01.yaml",
			"code: ADT\ntriggers:\n  A01: {description: again}\nresources:\n  - name: patient\n    type: Patient\n    segment: PID\n    map: \"PID[Patient]\"\n    key: [[PID-3-1]]\n",
			"specs/messages/ZZZ_A01.yaml:3: ADT^A01 is also defined at specs/messages/ADT_A01.yaml"},
		{"yaml syntax", "specs/tables/zz.yaml", "tables: [\n", "specs/tables/zz.yaml: yaml:"},
		{"table entry without target", "specs/tables/zz.yaml",
			"tables:\n  - name: Zed\n    map:\n      - {code: A}\n",
			"specs/tables/zz.yaml:4: table Zed: an entry needs code and to"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := specFiles(t)
			files[c.file] = &fstest.MapFile{Data: []byte(c.data)}
			_, err := loadSpecs(files, "specs")
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error does not say %q:\n%v", c.want, err)
			}
		})
	}
}

// A rule that names a segment the catalogue lacks cannot slip through the
// message spec's keys either.
func TestMessageKeyPartsAreChecked(t *testing.T) {
	files := specFiles(t)
	files["specs/messages/ZZZ_Z01.yaml"] = &fstest.MapFile{Data: []byte(
		"code: ZZZ\ntriggers:\n  Z01: {description: test}\nresources:\n  - name: patient\n    type: Patient\n    segment: PID\n    map: \"PID[Patient]\"\n    key: [[PID-3-1, QQQ-1]]\n")}
	_, err := loadSpecs(files, "specs")
	if err == nil || !strings.Contains(err.Error(), "specs/messages/ZZZ_Z01.yaml:5: key part \"QQQ-1\": unknown segment QQQ") {
		t.Errorf("err = %v", err)
	}
}
