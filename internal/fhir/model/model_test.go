package model_test

import (
	"regexp"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

func TestVersion(t *testing.T) {
	m := model.R4()
	if m.Version() != "4.0.1" {
		t.Errorf("Version = %q", m.Version())
	}
	if m.Source() == "" {
		t.Error("no Source")
	}
}

func TestKnownKindBase(t *testing.T) {
	m := model.R4()
	cases := []struct {
		typ  string
		kind model.Kind
		base string
	}{
		{"Patient", model.KindResource, "DomainResource"},
		{"DomainResource", model.KindResource, "Resource"},
		{"Resource", model.KindResource, ""},
		{"Bundle", model.KindResource, "Resource"},
		{"HumanName", model.KindComplex, "Element"},
		{"Age", model.KindComplex, "Quantity"},
		{"BackboneElement", model.KindComplex, "Element"},
		{"Element", model.KindComplex, ""},
		{"Patient.contact", model.KindBackbone, "BackboneElement"},
		{"Timing.repeat", model.KindBackbone, "Element"},
		{"Questionnaire.item", model.KindBackbone, "BackboneElement"},
		{"date", model.KindPrimitive, "Element"},
		{"code", model.KindPrimitive, "string"},
		{"id", model.KindPrimitive, "string"},
		{"markdown", model.KindPrimitive, "string"},
		{"url", model.KindPrimitive, "uri"},
		{"positiveInt", model.KindPrimitive, "integer"},
		{"xhtml", model.KindPrimitive, "Element"},
	}
	for _, c := range cases {
		if !m.Known(c.typ) {
			t.Errorf("%s: not Known", c.typ)
		}
		if got := m.Kind(c.typ); got != c.kind {
			t.Errorf("Kind(%s) = %v, want %v", c.typ, got, c.kind)
		}
		if got := m.Base(c.typ); got != c.base {
			t.Errorf("Base(%s) = %q, want %q", c.typ, got, c.base)
		}
	}
	for _, typ := range []string{"", "patient", "Patient.bogus", "Questionnaire.item.item", "SimpleQuantity", "System.String", "SubscriptionStatus", "MetadataResource"} {
		if m.Known(typ) || m.Kind(typ) != model.KindUnknown || m.Base(typ) != "" || m.Type(typ) != nil {
			t.Errorf("%q is known", typ)
		}
	}
}

func TestIsA(t *testing.T) {
	m := model.R4()
	yes := [][2]string{
		{"Patient", "Patient"}, {"Patient", "DomainResource"}, {"Patient", "Resource"},
		{"DomainResource", "Resource"}, {"Bundle", "Resource"},
		{"Age", "Quantity"}, {"Age", "Element"}, {"Duration", "Quantity"},
		{"code", "string"}, {"id", "string"}, {"url", "uri"}, {"canonical", "uri"},
		{"unsignedInt", "integer"}, {"Patient.contact", "BackboneElement"}, {"Patient.contact", "Element"},
	}
	no := [][2]string{
		{"Patient", "Element"}, {"Bundle", "DomainResource"}, {"Quantity", "Age"},
		{"string", "code"}, {"uri", "string"}, {"HumanName", "Resource"}, {"bogus", "bogus"}, {"Patient", "bogus"},
	}
	for _, c := range yes {
		if !m.IsA(c[0], c[1]) {
			t.Errorf("%s is not a %s", c[0], c[1])
		}
	}
	for _, c := range no {
		if m.IsA(c[0], c[1]) {
			t.Errorf("%s is a %s", c[0], c[1])
		}
	}
}

func TestPrimitive(t *testing.T) {
	m := model.R4()
	want := map[string]string{
		"boolean": "Boolean", "integer": "Integer", "positiveInt": "Integer", "unsignedInt": "Integer",
		"decimal": "Decimal", "string": "String", "code": "String", "id": "String", "markdown": "String",
		"uri": "String", "url": "String", "canonical": "String", "oid": "String", "uuid": "String",
		"base64Binary": "String", "xhtml": "String", "date": "Date", "dateTime": "DateTime",
		"instant": "DateTime", "time": "Time",
		"HumanName": "", "Patient": "", "Patient.contact": "", "bogus": "",
	}
	for typ, w := range want {
		if got := m.Primitive(typ); got != w {
			t.Errorf("Primitive(%s) = %q, want %q", typ, got, w)
		}
	}
	var prims []string
	for typ := range want {
		if m.Kind(typ) == model.KindPrimitive {
			prims = append(prims, typ)
		}
	}
	if len(prims) != 20 {
		t.Errorf("%d primitive types in the table, want R4's 20", len(prims))
	}
}

// Every primitive but xhtml carries its R4 regex, and each compiles.
func TestPatterns(t *testing.T) {
	m := model.R4()
	for _, typ := range []string{"boolean", "integer", "positiveInt", "unsignedInt", "decimal", "string", "code", "id",
		"markdown", "uri", "url", "canonical", "oid", "uuid", "base64Binary", "date", "dateTime", "instant", "time"} {
		p := m.Type(typ).Pattern()
		if p == "" {
			t.Errorf("%s: no pattern", typ)
			continue
		}
		if _, err := regexp.Compile("^(?:" + p + ")$"); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
	re := regexp.MustCompile("^(?:" + m.Type("date").Pattern() + ")$")
	for s, ok := range map[string]bool{"2024": true, "2024-02": true, "2024-02-29": true, "0000": false, "2024-13": false, "24-01-01": false} {
		if re.MatchString(s) != ok {
			t.Errorf("date pattern on %q: want %v", s, ok)
		}
	}
}

func TestChild(t *testing.T) {
	m := model.R4()
	c, ok := m.Child("Patient", "birthDate")
	if !ok || c.Name != "birthDate" || !slices.Equal(c.Types, []string{"date"}) || c.Min != 0 || c.Max != 1 || c.Choice || c.Array || c.Binding != nil {
		t.Errorf("Patient.birthDate = %+v, %v", c, ok)
	}
	c, ok = m.Child("Patient", "name")
	if !ok || c.Max != -1 || !c.Array || !slices.Equal(c.Types, []string{"HumanName"}) {
		t.Errorf("Patient.name = %+v, %v", c, ok)
	}
	c, ok = m.Child("Patient", "gender")
	if !ok || c.Binding == nil || c.Binding.Strength != "required" || c.Binding.ValueSet != "http://hl7.org/fhir/ValueSet/administrative-gender" {
		t.Errorf("Patient.gender = %+v, %v", c, ok)
	}
	c, ok = m.Child("Patient", "contact")
	if !ok || !slices.Equal(c.Types, []string{"Patient.contact"}) || !c.Array {
		t.Errorf("Patient.contact = %+v, %v", c, ok)
	}
	c, ok = m.Child("Patient.contact", "name")
	if !ok || !slices.Equal(c.Types, []string{"HumanName"}) || c.Max != 1 {
		t.Errorf("Patient.contact.name = %+v, %v", c, ok)
	}
	c, ok = m.Child("Questionnaire.item", "item")
	if !ok || !slices.Equal(c.Types, []string{"Questionnaire.item"}) || c.Max != -1 {
		t.Errorf("Questionnaire.item.item = %+v, %v", c, ok)
	}
	c, ok = m.Child("Observation", "status")
	if !ok || c.Min != 1 || c.Max != 1 {
		t.Errorf("Observation.status = %+v, %v", c, ok)
	}
	// Inherited elements are found on resources, types and backbones.
	for _, tc := range [][2]string{{"Patient", "id"}, {"Patient", "meta"}, {"Patient", "text"}, {"Patient", "contained"},
		{"Patient", "extension"}, {"Patient.contact", "id"}, {"Patient.contact", "modifierExtension"},
		{"HumanName", "extension"}, {"date", "extension"}, {"Bundle", "id"}} {
		if _, ok := m.Child(tc[0], tc[1]); !ok {
			t.Errorf("%s.%s not found", tc[0], tc[1])
		}
	}
	if c, _ := m.Child("Patient", "id"); !slices.Equal(c.Types, []string{"id"}) {
		t.Errorf("Patient.id types %v, want [id]", c.Types)
	}
	if c, _ := m.Child("HumanName", "id"); !slices.Equal(c.Types, []string{"string"}) {
		t.Errorf("HumanName.id types %v, want [string]", c.Types)
	}
	if c, _ := m.Child("Extension", "url"); !slices.Equal(c.Types, []string{"uri"}) || c.Min != 1 {
		t.Errorf("Extension.url = %+v", c)
	}
	for _, tc := range [][2]string{{"Patient", "bogus"}, {"Patient", "valueQuantity"}, {"Observation", "valueFoo"},
		{"Observation", "valuequantity"}, {"Bogus", "id"}, {"Patient", "modifierExtension2"}, {"date", "value"}, {"Bundle", "text"}} {
		if c, ok := m.Child(tc[0], tc[1]); ok {
			t.Errorf("%s.%s found: %+v", tc[0], tc[1], c)
		}
	}
}

func TestChoice(t *testing.T) {
	m := model.R4()
	c, ok := m.Child("Observation", "value")
	if !ok || !c.Choice || c.Name != "value" {
		t.Fatalf("Observation.value = %+v, %v", c, ok)
	}
	want := []string{"Quantity", "CodeableConcept", "string", "boolean", "integer", "Range", "Ratio", "SampledData", "time", "dateTime", "Period"}
	if got := slices.Sorted(slices.Values(c.Types)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("Observation.value[x] types %v, want %v", c.Types, want)
	}
	for _, typ := range want {
		name := "value" + string(typ[0]&^0x20) + typ[1:]
		c, ok := m.Child("Observation", name)
		if !ok || c.Name != "value" || !c.Choice || !slices.Equal(c.Types, []string{typ}) || c.Max != 1 {
			t.Errorf("Child(Observation, %s) = %+v, %v", name, c, ok)
		}
	}
	// The narrowed Types does not let callers write into the shared slice.
	c, _ = m.Child("Observation", "valueQuantity")
	if cap(c.Types) != 1 {
		t.Errorf("narrowed Types has capacity %d", cap(c.Types))
	}
	c, ok = m.Child("Patient", "deceasedDateTime")
	if !ok || !slices.Equal(c.Types, []string{"dateTime"}) {
		t.Errorf("Patient.deceasedDateTime = %+v, %v", c, ok)
	}
	c, ok = m.Child("Observation.component", "valueCodeableConcept")
	if !ok || !slices.Equal(c.Types, []string{"CodeableConcept"}) {
		t.Errorf("Observation.component.valueCodeableConcept = %+v, %v", c, ok)
	}

	// Type.Lookup and ChildType agree with Child.
	ot := m.Type("Observation")
	i, j, ok := ot.Lookup("valueQuantity")
	if !ok || ot.Children()[i].Name != "value" || ot.Children()[i].Types[j] != "Quantity" || ot.ChildType(i, j).Name() != "Quantity" {
		t.Errorf("Lookup(valueQuantity) = %d, %d, %v", i, j, ok)
	}
	if i, j, ok := ot.Lookup("value"); !ok || j != -1 || ot.Children()[i].Name != "value" {
		t.Errorf("Lookup(value) = %d, %d, %v", i, j, ok)
	}
	if i, j, ok := ot.Lookup("subject"); !ok || j != -1 || ot.ChildType(i, 0).Name() != "Reference" {
		t.Errorf("Lookup(subject) = %d, %d, %v", i, j, ok)
	}
}

func TestChildren(t *testing.T) {
	m := model.R4()
	ch := m.Children("Patient")
	var names []string
	for _, c := range ch {
		names = append(names, c.Name)
	}
	wantPrefix := []string{"id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension", "identifier", "active", "name"}
	if len(names) < len(wantPrefix) || !slices.Equal(names[:len(wantPrefix)], wantPrefix) {
		t.Errorf("Patient children start %v, want %v", names, wantPrefix)
	}
	if !slices.Contains(names, "link") || !slices.Contains(names, "deceased") || slices.Contains(names, "deceasedBoolean") {
		t.Errorf("Patient children %v", names)
	}
	if m.Children("bogus") != nil {
		t.Error("children of an unknown type")
	}
	// Every element of every type is consistent.
	for _, r := range m.Resources() {
		checkType(t, m, r, map[string]bool{})
	}
}

func checkType(t *testing.T, m *model.Model, typ string, seen map[string]bool) {
	if seen[typ] {
		return
	}
	seen[typ] = true
	for _, c := range m.Children(typ) {
		if c.Name == "" || len(c.Types) == 0 || c.Min < 0 || (c.Max != -1 && c.Max < c.Min) || (len(c.Types) > 1 && !c.Choice) {
			t.Errorf("%s.%s: %+v", typ, c.Name, c)
		}
		if c.Max > 1 || c.Max == -1 {
			if !c.Array {
				t.Errorf("%s.%s: max %d but not an array", typ, c.Name, c.Max)
			}
		}
		for _, ct := range c.Types {
			if !m.Known(ct) {
				t.Errorf("%s.%s: unknown type %s", typ, c.Name, ct)
			}
			checkType(t, m, ct, seen)
		}
	}
}

func TestResources(t *testing.T) {
	m := model.R4()
	rs := m.Resources()
	if !sort.StringsAreSorted(rs) {
		t.Error("not sorted")
	}
	for _, r := range []string{"Patient", "Observation", "Bundle", "Questionnaire", "Resource", "DomainResource", "Parameters", "Binary"} {
		if !slices.Contains(rs, r) {
			t.Errorf("%s missing", r)
		}
	}
	for _, r := range rs {
		if m.Kind(r) != model.KindResource {
			t.Errorf("%s is a %v", r, m.Kind(r))
		}
	}
	if len(rs) != 148 { // the 146 concrete R4 resource types of the definitions + Resource and DomainResource
		t.Errorf("%d resource types", len(rs))
	}
	if !m.Type("Resource").Abstract() || !m.Type("DomainResource").Abstract() || m.Type("Patient").Abstract() {
		t.Error("abstract flags")
	}
}

func TestValueSets(t *testing.T) {
	m := model.R4()
	codes, ok := m.ValueSetCodes("http://hl7.org/fhir/ValueSet/administrative-gender")
	if !ok || !slices.Equal(codes, []string{"male", "female", "other", "unknown"}) {
		t.Errorf("administrative-gender = %v, %v", codes, ok)
	}
	codes, ok = m.ValueSetCodes("http://hl7.org/fhir/ValueSet/observation-status")
	if !ok || !slices.Contains(codes, "final") || !slices.Contains(codes, "entered-in-error") {
		t.Errorf("observation-status = %v, %v", codes, ok)
	}
	// Bound to a CodeableConcept: the codes come from a CodeSystem.
	codes, ok = m.ValueSetCodes("http://hl7.org/fhir/ValueSet/condition-clinical")
	if !ok || !slices.Contains(codes, "active") || !slices.Contains(codes, "resolved") {
		t.Errorf("condition-clinical = %v, %v", codes, ok)
	}
	// From v3-codesystems.json.
	codes, ok = m.ValueSetCodes("http://terminology.hl7.org/ValueSet/v3-ConfidentialityClassification")
	if !ok || !slices.Equal(codes, []string{"U", "L", "M", "N", "R", "V"}) {
		t.Errorf("v3-ConfidentialityClassification = %v, %v", codes, ok)
	}
	for _, url := range []string{"http://hl7.org/fhir/ValueSet/mimetypes", "http://hl7.org/fhir/ValueSet/ucum-units",
		"http://hl7.org/fhir/ValueSet/marital-status", "bogus"} {
		if _, ok := m.ValueSetCodes(url); ok {
			t.Errorf("%s enumerable", url)
		}
		if _, ok := m.ValueSetContains(url, "", "x"); ok {
			t.Errorf("%s enumerable", url)
		}
	}
	const cc = "http://hl7.org/fhir/ValueSet/condition-clinical"
	const sys = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	for _, c := range []struct {
		system, code string
		in           bool
	}{
		{sys, "active", true}, {"", "active", true}, {sys, "Active", false}, {"http://snomed.info/sct", "active", false},
		{sys, "bogus", false}, {"", "", false},
	} {
		if in, ok := m.ValueSetContains(cc, c.system, c.code); !ok || in != c.in {
			t.Errorf("ValueSetContains(%q, %q) = %v, %v", c.system, c.code, in, ok)
		}
	}
	// Every required binding of a code element whose value set is
	// enumerable resolves.
	n := 0
	for _, r := range m.Resources() {
		for _, c := range m.Children(r) {
			if c.Binding != nil && c.Binding.Strength == "required" {
				if _, ok := m.ValueSetCodes(c.Binding.ValueSet); ok {
					n++
				}
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d required bindings on resources' own elements have codes", n)
	}
}

func TestConcurrentR4(t *testing.T) {
	var wg sync.WaitGroup
	got := make([]*model.Model, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = model.R4()
			_, _ = got[i].Child("Patient", "name")
		}()
	}
	wg.Wait()
	for _, m := range got {
		if m != got[0] {
			t.Fatal("R4 returned different models")
		}
	}
}

func TestParseRejectsCorruptData(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("not gzip"), gzipText(t, "H\tother\t1\t4.0.1\tx\n"),
		gzipText(t, "H\tmediflow-fhir-model\t1\t4.0.1\tx\nT\tA\tc\tB\t\t\t\n"),
		gzipText(t, "H\tmediflow-fhir-model\t1\t4.0.1\tx\nT\tA\tc\t\t\t\t\nE\tx\t0\t1\t\tMissing\t\t\n"),
		gzipText(t, "H\tmediflow-fhir-model\t1\t4.0.1\tx\nE\tx\t0\t1\t\tA\t\t\n"),
		gzipText(t, "T\tA\tc\t\t\t\t\n"),
	} {
		if _, err := model.Parse(data); err == nil {
			t.Errorf("Parse(%q) accepted", data)
		}
	}
	m, err := model.Parse(gzipText(t, "H\tmediflow-fhir-model\t1\t4.0.1\tx\nT\tA\tc\t\t\t\t\nE\tx\t1\t*\ta\tA\t\t\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := m.Child("A", "x"); !ok || c.Min != 1 || c.Max != -1 || !c.Array {
		t.Errorf("A.x = %+v", c)
	}
}

func BenchmarkLoad(b *testing.B) {
	data := embeddedData(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := model.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChild(b *testing.B) {
	m := model.R4()
	for b.Loop() {
		if _, ok := m.Child("Observation", "valueQuantity"); !ok {
			b.Fatal("missing")
		}
	}
}
