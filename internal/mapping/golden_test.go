package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/testutil/repo"
	"github.com/mediflow/mediflow/profiles"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenPractice is the practice layer the golden tests map with: an MRN
// system and a time zone, so those rules show their effect.
func goldenPractice(t testing.TB) Source {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden", "practice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return Source{Name: "testdata/golden/practice.yaml", Data: data}
}

// goldenTypes are the resource types the simulator inputs cover: every type
// the canonical profile has rules for. A flavour that does not serve a type
// (Epic's R4 API has no Slot or Schedule; no flavour generates
// DiagnosticReport) has no golden for it.
var goldenTypes = []string{"Patient", "Practitioner", "Appointment", "Coverage", "Encounter", "Observation", "Condition", "AllergyIntolerance",
	"DocumentReference", "MedicationRequest", "DiagnosticReport", "Slot", "Schedule", "Location", "Organization"}

// oracleFixture selects Oracle Health's published read examples (responses,
// not create/update request bodies) of the types the canonical rules cover.
var oracleFixture = regexp.MustCompile(`^r4_(patient|appointment|coverage|encounter|practitioner|observation|condition|allergy_intolerance|combined_patient|combined_encounter|document_reference|medication_request|diagnostic_report|slot|schedule|location|organization)[a-z_]*\.json$`)

// oracleRequest marks request bodies among the examples (create, update,
// patch, and the DiagnosticReport and DocumentReference POST examples).
var oracleRequest = regexp.MustCompile(`_(create|update|patch|post)`)

// oracleBroken are examples whose documentation text is corrupt (spaces
// inside URLs and times: "http: //terminology...", "16: 09: 08"); mapping
// cannot make them valid and they are not what the API sends.
var oracleBroken = map[string]bool{
	"r4_patient_condition_entry.json":  true,
	"r4_patient_condition_bundle.json": true,
}

type goldenInput struct {
	name      string   // golden file name without .json
	resources [][]byte // resources to map, in order
}

// oracleInputs reads the Oracle Health examples in place.
func oracleInputs(t testing.TB) []goldenInput {
	dir := repo.Shared(t, "fixtures/vendors/oracle-health")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []goldenInput
	for _, e := range entries {
		n := e.Name()
		if !oracleFixture.MatchString(n) || oracleBroken[n] || oracleRequest.MatchString(n) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		res, err := resourcesOf(data)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if len(res) > 0 {
			out = append(out, goldenInput{name: strings.TrimSuffix(n, ".json"), resources: res})
		}
	}
	if len(out) < 30 {
		t.Fatalf("only %d Oracle Health examples found", len(out))
	}
	return out
}

// resourcesOf returns the resources of a file: a resource, a Bundle's entry
// resources (entries the documentation nests twice are unwrapped), or a
// bundle entry's resource.
func resourcesOf(data []byte) ([][]byte, error) {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	unwrap := func(raw json.RawMessage) json.RawMessage {
		for {
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) != nil {
				return raw
			}
			if _, ok := m["resourceType"]; ok {
				return raw
			}
			inner, ok := m["resource"]
			if !ok {
				return raw
			}
			raw = inner
		}
	}
	if _, ok := v["resourceType"]; !ok {
		if r, ok := v["resource"]; ok {
			return [][]byte{unwrap(r)}, nil
		}
		return nil, fmt.Errorf("neither a resource nor a bundle entry")
	}
	var rt string
	_ = json.Unmarshal(v["resourceType"], &rt)
	if rt != "Bundle" {
		return [][]byte{data}, nil
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	var out [][]byte
	for _, e := range b.Entry {
		if len(e.Resource) > 0 {
			out = append(out, unwrap(e.Resource))
		}
	}
	return out, nil
}

// simInputs generates a small practice in a simulator flavour and takes the
// first resources (by id) of each type.
func simInputs(t testing.TB, flavor string, perType int) []goldenInput {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "golden", Flavor: flavor, Seed: 4, Data: &gen.Options{Patients: 4}}}})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, rt := range s.ResourceTypes("golden") {
		served[rt] = true
	}
	var out []goldenInput
	for _, rt := range goldenTypes {
		if !served[rt] {
			continue
		}
		cur := s.Current("golden", rt)
		ids := make([]string, 0, len(cur))
		for id := range cur {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		in := goldenInput{name: strings.ToLower(rt)}
		for _, id := range ids[:min(perType, len(ids))] {
			in.resources = append(in.resources, cur[id])
		}
		if len(in.resources) == 0 {
			t.Fatalf("%s simulator has no %s", flavor, rt)
		}
		out = append(out, in)
	}
	return out
}

type goldenEntry struct {
	Resource json.RawMessage `json:"resource"`
	Report   []string        `json:"report"`
}

func reportLines(rep *Report) []string {
	var out []string
	for _, e := range rep.Elements {
		line := fmt.Sprintf("%s %s %s", e.Rule, e.Element(), e.Status)
		if e.Reason != "" {
			line += ": " + e.Reason
		}
		for _, u := range e.Unmapped {
			line += fmt.Sprintf(" [unmapped %s|%s in %s, %s]", u.System, u.Code, u.Map, u.Policy)
		}
		out = append(out, line)
	}
	return out
}

// runGolden maps every input with the vendor's profile (plus the golden
// practice layer), checks every output against the FHIR validator and
// compares output and report with testdata/golden/<vendor>/<name>.json.
func runGolden(t *testing.T, vendor, version string, inputs []goldenInput) {
	set, err := Load(profiles.FS, vendor, version, goldenPractice(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "golden", vendor)
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var unmapped conceptmap.Unmapped
	for _, in := range inputs {
		var entries []goldenEntry
		for i, raw := range in.resources {
			out, rep, err := set.Map(context.Background(), raw, MapOptions{Unmapped: &unmapped})
			if err != nil {
				t.Errorf("%s/%s[%d]: %v", vendor, in.name, i, err)
				continue
			}
			for _, is := range validate.Validate(model.R4(), out) {
				if is.Severity == validate.SeverityError {
					t.Errorf("%s/%s[%d]: canonical output is not valid FHIR: %s: %s", vendor, in.name, i, is.Path, is.Message)
				}
			}
			if !bytes.Contains(out, []byte(`"code":"`+set.Version()+`"`)) {
				t.Errorf("%s/%s[%d]: output does not record the profile version", vendor, in.name, i)
			}
			entries = append(entries, goldenEntry{Resource: out, Report: reportLines(rep)})
		}
		got, err := json.MarshalIndent(entries, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		file := filepath.Join(dir, in.name+".json")
		if *update {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%v (run go test ./internal/mapping/ -run Golden -update)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the mapping's output; diff:\n%s\n(run go test ./internal/mapping/ -run Golden -update if the change is intended)", file, firstDiff(string(want), string(got)))
		}
	}
	if !*update {
		// No stale golden files.
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		names := map[string]bool{}
		for _, in := range inputs {
			names[in.name+".json"] = true
		}
		for _, f := range files {
			if !names[filepath.Base(f)] {
				t.Errorf("%s has no input any more (run with -update)", f)
			}
		}
	}
	t.Logf("%s: %d inputs, %d unmapped codes", vendor, len(inputs), unmapped.Total())
}

// firstDiff shows the first differing line with some context.
func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, w, g)
		}
	}
	return "(no line differs)"
}

func TestGoldenOracleHealth(t *testing.T) {
	runGolden(t, "oracle-health", "", oracleInputs(t))
}

func TestGoldenEpic(t *testing.T) {
	runGolden(t, "epic", "May 2026", simInputs(t, "epic", 2))
}

func TestGoldenGeneric(t *testing.T) {
	runGolden(t, "generic", "", simInputs(t, "generic", 2))
}

// The other vendors serve US Core shaped data like the generic simulator;
// their profiles add notes, not rules. The goldens prove they load and map.
func TestGoldenOtherVendors(t *testing.T) {
	for _, v := range []struct{ vendor, version string }{
		{"athenahealth", ""}, {"eclinicalworks", "1.6"}, {"nextgen", "5.0.1.698"}, {"veradigm", ""},
	} {
		t.Run(v.vendor, func(t *testing.T) {
			runGolden(t, v.vendor, v.version, simInputs(t, "generic", 1))
		})
	}
}

// TestSyntheaValidates maps every resource of Synthea bundles with the
// generic profile and requires valid FHIR out. -short takes three bundles.
func TestSyntheaValidates(t *testing.T) {
	dir := repo.Shared(t, "testdata/synthea-r4")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("synthea: %v", err)
	}
	sort.Strings(files)
	if testing.Short() {
		files = files[:3]
	}
	set := loadSet(t, "generic", goldenPractice(t))
	var unmapped conceptmap.Unmapped
	n, issues := 0, 0
	types := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := resourcesOf(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			out, rep, err := set.Map(context.Background(), r, MapOptions{Unmapped: &unmapped})
			if err != nil {
				t.Errorf("%s: %v", filepath.Base(f), err)
				continue
			}
			n++
			types[rep.ResourceType]++
			issues += len(rep.Issues())
			for _, is := range validate.Validate(model.R4(), out) {
				if is.Severity == validate.SeverityError {
					t.Errorf("%s: %s: %s: %s", filepath.Base(f), rep.ResourceType, is.Path, is.Message)
				}
			}
		}
	}
	if n < 1000 {
		t.Errorf("only %d resources", n)
	}
	t.Logf("%d bundles, %d resources of %d types: all valid; %d rule issues, %d unmapped codes", len(files), n, len(types), issues, unmapped.Total())
}

// TestGoldensCoverEveryMappedType: every resource type the shipped profiles
// have rules of their own for is in some golden output, so each type's rules
// are checked on real shapes (vendor fixtures or simulator data) and the
// output is validated.
func TestGoldensCoverEveryMappedType(t *testing.T) {
	vendors, err := Vendors(profiles.FS)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, v := range vendors {
		set, err := Load(profiles.FS, v, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, rt := range set.ResourceTypes() {
			want[rt] = true
		}
	}
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	got := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var entries []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		}
		if err := json.Unmarshal(data, &entries); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range entries {
			got[e.Resource.ResourceType]++
		}
	}
	if len(want) < 15 {
		t.Errorf("the shipped profiles have rules for only %d types: %v", len(want), want)
	}
	for rt := range want {
		if got[rt] == 0 {
			t.Errorf("no golden output of %s, which has rules (add its fixtures or simulator data to the golden inputs)", rt)
		}
	}
}
