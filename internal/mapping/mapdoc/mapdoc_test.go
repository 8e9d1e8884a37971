package mapdoc

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/testutil/repo"
	"github.com/mediflow/mediflow/profiles"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var testTime = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// testProfiles is a small profile tree of our own, so the golden files
// change only when the generator does.
var testProfiles = os.DirFS(filepath.Join("testdata", "profiles"))

func readSource(t testing.TB, name string) mapping.Source {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return mapping.Source{Name: name, Data: data}
}

// samples reads the resources of testdata/samples (resources and Bundles).
func samples(t testing.TB) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "samples", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Entry        []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if b.ResourceType != "Bundle" {
			out = append(out, data)
			continue
		}
		for _, e := range b.Entry {
			out = append(out, e.Resource)
		}
	}
	return out
}

func testInput(t testing.TB, overrides ...mapping.Source) Input {
	t.Helper()
	set, err := mapping.Load(testProfiles, "acme", "1.5", overrides...)
	if err != nil {
		t.Fatal(err)
	}
	return Input{
		PracticeID: "windmill", PracticeName: "Windmill Family Medicine",
		Set: set,
		Reads: []Read{
			{Class: "demographics", Description: "patients", ResourceTypes: []string{"Patient"}, Via: "FHIR connection acme (acme), every 5m0s"},
			{Class: "scheduling", Description: "schedules, slots and appointments", ResourceTypes: []string{"Schedule", "Slot", "Appointment"}, Via: "FHIR connection acme (acme), every 1m0s"},
		},
		Samples: samples(t), SampleSource: "the test samples",
		Generated: testTime, MediflowVersion: "1.2.3",
	}
}

func generate(t testing.TB, in Input, format string) string {
	t.Helper()
	var b bytes.Buffer
	if err := Generate(in, format, &b); err != nil {
		t.Fatalf("Generate %s: %v", format, err)
	}
	return b.String()
}

func TestGoldenMarkdown(t *testing.T) {
	got := generate(t, testInput(t, readSource(t, "practice.yaml")), FormatMarkdown)
	file := filepath.Join("testdata", "golden", "acme.md")
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/mapping/mapdoc -run Golden -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the generated document:\n%s\n(run go test ./internal/mapping/mapdoc -run Golden -update if the change is intended)", file, firstDiff(string(want), got))
	}
}

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

// TestDocumentContent checks the golden input's document for what it must
// say, independently of the golden file.
func TestDocumentContent(t *testing.T) {
	in := testInput(t, readSource(t, "practice.yaml"))
	md := generate(t, in, FormatMarkdown)
	for _, want := range []string{
		"# Data mapping: Windmill Family Medicine (windmill)",
		"| EHR | Acme EHR, version 1.5 |",
		"`" + in.Set.Version() + "`",
		"2026-06-01T12:00:00Z by mediflow 1.2.3",
		// every rule, with the layer that set it and where
		"Rule `patient.gender` · set by the vendor layer (acme) at `acme/patient.yaml:3` · layers: canonical, acme",
		"Rule `patient.birthDate` · set by the canonical layer at `canonical/patient.yaml:10`",
		"Rule `acme.patient.identifier.trim` · set by the vendor layer (acme)",
		"Rule `resource.prune`",
		// source, transforms with their arguments and summaries, defaults, required
		"- **Source:** `extension('http://acme.example/legal-sex').value.coding.first() | gender`",
		"`code (default: unknown, map: http://example.org/fhir/ConceptMap/test-gender, unmapped: default)` — translates a code",
		"`phone-e164 (region: %phoneRegion = US)`",
		"`identifier-system (to: %mrnSystem = urn:oid:2.16.840.1.113883.3.9999.1, type: MR)`",
		"- **Default:** `needs-action`",
		"- **Default:** `true`",
		"| Patient | gender | `unknown` | the code table does not list the EHR's code | `patient.gender` |",
		// not available: only the notes for this version
		"| Patient | `Patient.maritalStatus` | Acme does not expose marital status. |",
		"| Patient | `Patient.communication` | Acme 1.x has no preferred language. | `< 2.0` |",
		"| Appointment | `Appointment.reasonCode` |",
		// reads and write-back
		"| demographics | patients | Patient | FHIR connection acme (acme), every 5m0s |",
		"| Patient | demographics | create over FHIR |",
		"| Appointment | scheduling | not over FHIR (read only) |",
		// code table in full, every group and element
		"### Test gender table",
		"#### From `http://acme.example/legal-sex` to `http://hl7.org/fhir/administrative-gender`",
		"| `1` | Woman | `female` | — | equivalent | — |",
		"| `A` | Ambiguous | `other` | Other | wider | — |",
		"| `other` | Other | `other` | — | equal | — |",
		// examples, mapped and masked
		"- **Example:** `male`",
		"- **Example:** `1947-##-##`",
		"- **Example:** `XX######`",
		"- **Example:** `+###########`",
		"`{\"city\":\"Xx Xxxxxx\",\"line\":[\"## Xxxxxxxx Xx\"],\"postalCode\":\"#####-####\",\"state\":\"TX\"",
		"- **Example:** `2026-06-03T09:30:00-05:00`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the document lacks %q", want)
		}
	}
	// Transform summaries come from the registry.
	for _, tr := range mapping.Transforms() {
		if tr.Name == "date" && !strings.Contains(md, tr.Summary) {
			t.Errorf("the summary of transform date is missing")
		}
	}
}

// TestNoPHI: the sample data's names, identifiers, addresses, phones, birth
// days and free text appear in no format.
func TestNoPHI(t *testing.T) {
	in := testInput(t, readSource(t, "practice.yaml"))
	phi := []string{"Quixote", "Dulcinea", "AC104233", "Windmill  Rd", "Toboso", "75204", "555-0143", "5550143", "11-23", "Alonso", "Quijano", "02-01", "Sancho", "knee"}
	for _, f := range Formats() {
		doc := generate(t, in, f)
		for _, p := range phi {
			if strings.Contains(doc, p) {
				t.Errorf("%s document holds %q", f, p)
			}
		}
	}
	// The practice's name is no PHI and is shown: the check above can fail.
	if !strings.Contains(generate(t, in, FormatHTML), "Windmill Family Medicine") {
		t.Error("the HTML document lacks the practice name")
	}
}

// normalize replaces the profile versions of sets in a document, so two
// documents of different practice layers compare by their rules.
func normalize(doc string, sets ...*mapping.Set) string {
	for _, s := range sets {
		doc = strings.ReplaceAll(doc, s.Version(), "PROFILE")
		for _, l := range s.Layers() {
			if l.Kind == mapping.LayerPractice {
				doc = strings.ReplaceAll(doc, l.Version, "HASH")
			}
		}
	}
	return doc
}

// mdBlocks splits a Markdown document at its element headings.
func mdBlocks(doc string) []string { return strings.Split(doc, "\n#### ") }

// TestRuleChangeChangesDocument loads the same profiles with a practice
// override that changes one rule's rationale, transform or source, and
// checks that the document differs exactly there: in Markdown only that
// rule's block, in HTML only its table row, in CSV only its row.
func TestRuleChangeChangesDocument(t *testing.T) {
	const base = "name: practice\nparams: {timeZone: America/Chicago}\n"
	cases := []struct {
		name, rule, override, want string
	}{
		{"rationale", "patient.birthDate", `
resource: Patient
rules:
  - id: patient.birthDate
    rationale: Windmill keeps birth dates as the front desk typed them.
`, "Windmill keeps birth dates as the front desk typed them."},
		{"transform", "patient.telecom.phone", `
resource: Patient
rules:
  - id: patient.telecom.phone
    transform:
      - trim: {collapse: true}
      - phone-e164: {region: CA}
    rationale: Windmill's patients are in Canada.
`, "phone-e164 (region: CA)"},
		{"source", "patient.active", `
resource: Patient
rules:
  - id: patient.active
    source: "iif(deceasedBoolean.exists(), deceasedBoolean.not(), active)"
    rationale: A deceased patient is not active.
`, "iif(deceasedBoolean.exists(), deceasedBoolean.not(), active)"},
	}
	baseIn := testInput(t, mapping.Source{Name: "windmill.yaml", Data: []byte(base)})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := testInput(t, mapping.Source{Name: "windmill.yaml", Data: []byte(base + c.override)})
			if in.Set.Version() == baseIn.Set.Version() {
				t.Fatal("the override did not change the profile version")
			}
			// Markdown: exactly the rule's block differs.
			a := normalize(generate(t, baseIn, FormatMarkdown), baseIn.Set, in.Set)
			b := normalize(generate(t, in, FormatMarkdown), baseIn.Set, in.Set)
			ab, bb := mdBlocks(a), mdBlocks(b)
			if len(ab) != len(bb) {
				t.Fatalf("the change added or removed elements: %d vs %d blocks", len(ab), len(bb))
			}
			var changed []string
			for i := range ab {
				if ab[i] != bb[i] {
					changed = append(changed, bb[i])
				}
			}
			if len(changed) != 1 {
				t.Fatalf("%d Markdown blocks differ, want 1 (the rule's):\n%s", len(changed), strings.Join(changed, "\n-----\n"))
			}
			if !strings.Contains(changed[0], "Rule `"+c.rule+"` · set by the practice layer at `windmill.yaml:") {
				t.Errorf("the changed block is not rule %s set by the practice layer:\n%s", c.rule, changed[0])
			}
			if !strings.Contains(changed[0], c.want) {
				t.Errorf("the changed block lacks %q:\n%s", c.want, changed[0])
			}
			if strings.Contains(a, c.want) {
				t.Errorf("the document before the change already says %q", c.want)
			}

			// HTML: exactly the rule's row differs.
			ah := normalize(generate(t, baseIn, FormatHTML), baseIn.Set, in.Set)
			bh := normalize(generate(t, in, FormatHTML), baseIn.Set, in.Set)
			al, bl := strings.Split(ah, "<tr"), strings.Split(bh, "<tr")
			if len(al) != len(bl) {
				t.Fatalf("HTML rows: %d vs %d", len(al), len(bl))
			}
			var rows []string
			for i := range al {
				if al[i] != bl[i] {
					rows = append(rows, bl[i])
				}
			}
			if len(rows) != 1 || !strings.HasPrefix(rows[0], ` id="rule-`+anchorOf(c.rule)+`"`) {
				t.Errorf("HTML: %d rows differ, want the row of %s:\n%s", len(rows), c.rule, strings.Join(rows, "\n-----\n"))
			}

			// CSV: exactly the rule's row differs.
			ar := csvRows(t, normalize(generate(t, baseIn, FormatCSV), baseIn.Set, in.Set))
			br := csvRows(t, normalize(generate(t, in, FormatCSV), baseIn.Set, in.Set))
			if len(ar) != len(br) {
				t.Fatalf("CSV rows: %d vs %d", len(ar), len(br))
			}
			var diff [][]string
			for i := range ar {
				if strings.Join(ar[i], "\x00") != strings.Join(br[i], "\x00") {
					diff = append(diff, br[i])
				}
			}
			if len(diff) != 1 || diff[0][6] != c.rule || diff[0][16] != "practice" {
				t.Errorf("CSV: rows %v differ, want only the row of %s", diff, c.rule)
			}
		})
	}
}

func anchorOf(s string) string { return htmlFuncs["anchor"].(func(string) string)(s) }

func csvRows(t *testing.T, doc string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(doc)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	return rows
}

func TestCSV(t *testing.T) {
	in := testInput(t, readSource(t, "practice.yaml"))
	rows := csvRows(t, generate(t, in, FormatCSV))
	if strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("header %v", rows[0])
	}
	elements, notes := 0, 0
	byRule := map[string][]string{}
	for _, r := range rows[1:] {
		if len(r) != len(CSVHeader) {
			t.Fatalf("row with %d fields: %v", len(r), r)
		}
		if r[0] != "windmill" || r[1] != "acme" || r[2] != "1.5" || r[3] != in.Set.Version() {
			t.Errorf("row header fields %v", r[:4])
		}
		switch r[4] {
		case "element":
			elements++
			byRule[r[5]+"|"+r[6]] = r
		case "not-available":
			notes++
		default:
			t.Errorf("unexpected kind %q", r[4])
		}
	}
	want := 0
	for _, rt := range append(in.Set.ResourceTypes(), "Resource") {
		for _, r := range in.Set.Rules(rt) {
			if rt == "Resource" || r.Resource != "Resource" {
				want++
				if _, ok := byRule[rt+"|"+r.ID]; !ok {
					t.Errorf("no CSV row for %s %s", rt, r.ID)
				}
			}
		}
	}
	if elements != want {
		t.Errorf("%d element rows, want %d", elements, want)
	}
	if notes != 3 {
		t.Errorf("%d not-available rows, want 3", notes)
	}
	g := byRule["Patient|patient.gender"]
	if g[9] != "" || !strings.HasPrefix(g[10], "code (") || !strings.Contains(g[11], "translates a code") || g[13] != "yes" || g[16] != "vendor" || g[17] != "acme" || g[18] != "acme/patient.yaml:3" || g[20] != "male" {
		t.Errorf("gender row %q", g)
	}
	if p := byRule["Appointment|appointment.participant.status"]; p[7] != "each participant › status" || p[12] != "needs-action" {
		t.Errorf("participant row %q", p)
	}
}

func TestHTMLIsEscapedAndSelfContained(t *testing.T) {
	evil := `
resource: Patient
rules:
  - id: patient.birthDate
    rationale: "<script>alert('x')</script> & more"
`
	in := testInput(t, mapping.Source{Name: "evil.yaml", Data: []byte(evil)})
	doc := generate(t, in, FormatHTML)
	if strings.Contains(doc, "<script>") {
		t.Error("HTML holds an unescaped script element from a rationale")
	}
	if !strings.Contains(doc, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more") {
		t.Error("the rationale is not shown escaped")
	}
	for _, ext := range []string{`<link`, `src="http`, `href="http`, `@import`} {
		if strings.Contains(doc, ext) {
			t.Errorf("HTML loads something from outside (%s)", ext)
		}
	}
	if !strings.HasPrefix(doc, "<!DOCTYPE html>") || !strings.Contains(doc, "<style>") || !strings.HasSuffix(strings.TrimSpace(doc), "</html>") {
		t.Error("not a complete HTML document with inline CSS")
	}
	// Every element rule has a row.
	for _, r := range in.Set.Rules("Patient") {
		if r.Resource == "Patient" && !strings.Contains(doc, `<tr id="rule-`+anchorOf(r.ID)+`">`) {
			t.Errorf("no HTML row for %s", r.ID)
		}
	}
	// Markdown escapes prose too.
	md := generate(t, in, FormatMarkdown)
	if strings.Contains(md, "<script>") {
		t.Error("Markdown holds a raw script element")
	}
}

func TestErrors(t *testing.T) {
	in := testInput(t)
	if err := Generate(in, "pdf", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "md, html, csv") {
		t.Errorf("unknown format: %v", err)
	}
	if err := Generate(Input{}, FormatMarkdown, &bytes.Buffer{}); err == nil {
		t.Error("no set: no error")
	}
	if err := Generate(in, FormatMarkdown, failWriter{}); err == nil {
		t.Error("a failing writer gave no error")
	}
	if err := Generate(in, FormatCSV, failWriter{}); err == nil {
		t.Error("a failing writer gave no error (csv)")
	}
	if err := Generate(in, FormatHTML, failWriter{}); err == nil {
		t.Error("a failing writer gave no error (html)")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

func TestNoSamples(t *testing.T) {
	in := testInput(t)
	in.Samples = nil
	md := generate(t, in, FormatMarkdown)
	if !strings.Contains(md, "none: no sample data was given") {
		t.Error("the header does not say there are no examples")
	}
	if strings.Contains(md, "- **Example:** `") {
		t.Error("an example without samples")
	}
}

// TestShippedProfiles generates every format for every shipped vendor
// profile, with simulator or fixture samples, and checks completeness.
func TestShippedProfiles(t *testing.T) {
	vendors, err := mapping.Vendors(profiles.FS)
	if err != nil {
		t.Fatal(err)
	}
	if len(vendors) < 7 {
		t.Fatalf("only %d vendor profiles: %v", len(vendors), vendors)
	}
	simSamples := map[string][][]byte{"epic": simResources(t, "epic"), "generic": simResources(t, "generic")}
	simSamples["oracle-health"] = oracleResources(t)
	for _, v := range vendors {
		t.Run(v, func(t *testing.T) {
			set, err := mapping.Load(profiles.FS, v, "")
			if err != nil {
				t.Fatal(err)
			}
			smp := simSamples[v]
			if smp == nil {
				smp = simSamples["generic"]
			}
			in := Input{PracticeID: "p", Set: set, Samples: smp, Generated: testTime}
			md := generate(t, in, FormatMarkdown)
			html := generate(t, in, FormatHTML)
			rows := csvRows(t, generate(t, in, FormatCSV))
			for _, rt := range append(set.ResourceTypes(), "Resource") {
				for _, r := range set.Rules(rt) {
					if !strings.Contains(md, "Rule `"+r.ID+"`") || !strings.Contains(html, `id="rule-`+anchorOf(r.ID)+`"`) {
						t.Errorf("rule %s is missing", r.ID)
					}
				}
				for _, n := range set.NotAvailable(rt) {
					if !strings.Contains(md, text(n.Text)) {
						t.Errorf("note %q is missing", n.Text)
					}
				}
			}
			// Every code of every table the rules use.
			for _, url := range usedMaps(set) {
				m, ok := set.ConceptMaps().Get(url)
				if !ok {
					t.Errorf("map %s not loaded", url)
					continue
				}
				for _, g := range m.Groups() {
					for _, e := range g.Elements {
						if !strings.Contains(md, "| "+codeCell(e.Code)+" |") {
							t.Errorf("code %s of %s is missing", e.Code, url)
						}
					}
				}
			}
			if len(rows) < 2 {
				t.Error("CSV has no rows")
			}
			if len(smp) > 0 && !strings.Contains(md, "- **Example:** `") {
				t.Error("no example at all")
			}
			if v == "oracle-health" && !strings.Contains(md, "Oracle") {
				t.Error("vendor title missing")
			}
		})
	}
}

func usedMaps(set *mapping.Set) []string {
	seen := map[string]bool{}
	var out []string
	for _, rt := range append(set.ResourceTypes(), "Resource") {
		for _, r := range set.Rules(rt) {
			for _, st := range r.Steps {
				if u, ok := st.Args["map"].(string); ok && !seen[u] {
					seen[u] = true
					out = append(out, u)
				}
			}
		}
	}
	return out
}

func simResources(t testing.TB, flavor string) [][]byte {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "doc", Flavor: flavor, Seed: 7, Data: &gen.Options{Patients: 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, rt := range s.ResourceTypes("doc") {
		cur := s.Current("doc", rt)
		ids := make([]string, 0, len(cur))
		for id := range cur {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids[:min(3, len(ids))] {
			out = append(out, cur[id])
		}
	}
	return out
}

var oracleFile = regexp.MustCompile(`^r4_(patient|appointment|encounter|practitioner|coverage)[a-z_]*\.json$`)

func oracleResources(t testing.TB) [][]byte {
	t.Helper()
	dir := repo.Shared(t, "fixtures/vendors/oracle-health")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range entries {
		if !oracleFile.MatchString(e.Name()) || strings.Contains(e.Name(), "_create") || strings.Contains(e.Name(), "_update") || strings.Contains(e.Name(), "_patch") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(data, &head) == nil && head.ResourceType != "" && head.ResourceType != "Bundle" {
			out = append(out, data)
		}
	}
	return out
}

func TestHL7Section(t *testing.T) {
	cat, err := v2fhir.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	in := testInput(t)
	in.HL7 = cat
	md := generate(t, in, FormatMarkdown)
	html := generate(t, in, FormatHTML)
	if !strings.Contains(md, "## HL7 v2 messages") || !strings.Contains(html, `id="hl7"`) {
		t.Fatal("no HL7 v2 section")
	}
	for _, m := range cat.Messages {
		if !strings.Contains(md, "| `"+m.MessageCode+"^"+m.TriggerEvent+"` |") {
			t.Errorf("message %s^%s missing", m.MessageCode, m.TriggerEvent)
		}
	}
	for _, sm := range cat.SegmentMaps {
		if !strings.Contains(md, "#### "+text(sm.Name)) {
			t.Errorf("segment map %s missing", sm.Name)
		}
	}
	for _, tb := range cat.Tables {
		if !strings.Contains(md, "#### "+text(tb.Name)) {
			t.Errorf("table %s missing", tb.Name)
		}
		for _, e := range tb.Entries {
			if !strings.Contains(md, "| "+codeCell(e.Code)+" | "+codeCell(e.Target)+" |") {
				t.Errorf("table %s entry %s missing", tb.Name, e.Code)
			}
		}
	}
	d := hl7Of(cat)
	rows := csvRows(t, generate(t, in, FormatCSV))
	n := 0
	for _, r := range rows {
		if r[4] == "hl7v2" {
			n++
		}
	}
	if n != d.RuleCount || n < 100 {
		t.Errorf("%d hl7v2 CSV rows, want %d", n, d.RuleCount)
	}
	// Without the catalog there is no HL7 section.
	in.HL7 = nil
	if strings.Contains(generate(t, in, FormatMarkdown), "HL7 v2 messages") {
		t.Error("HL7 section without HL7")
	}
}

func TestReadsFromConfig(t *testing.T) {
	p := &config.Practice{
		ID: "windmill",
		Connections: []config.Connection{{Name: "acme-prod", Vendor: "epic", Sync: []config.SyncPolicy{
			{Class: "demographics", Interval: 5 * time.Minute}, {Class: "scheduling", Interval: time.Minute}, {Class: "nope", Interval: time.Minute},
		}}},
	}
	reads := ReadsFromConfig(p, nil)
	if len(reads) != 2 || reads[0].Class != "demographics" || reads[1].Class != "scheduling" ||
		reads[0].Via != "FHIR connection acme-prod (epic), every 5m0s" || strings.Join(reads[1].ResourceTypes, ",") != "Schedule,Slot,Appointment" {
		t.Errorf("reads %+v", reads)
	}
	p.HL7Listeners = []config.HL7Listener{{Name: "adt"}}
	reads = ReadsFromConfig(p, nil)
	var hl7 []Read
	for _, r := range reads {
		if strings.HasPrefix(r.Via, "HL7 v2 listener adt") {
			hl7 = append(hl7, r)
		}
	}
	classes := map[string]Read{}
	for _, r := range hl7 {
		classes[r.Class] = r
	}
	for _, c := range []string{"demographics", "scheduling", "clinical", "documents"} {
		if _, ok := classes[c]; !ok {
			t.Errorf("HL7 reads lack class %s: %+v", c, hl7)
		}
	}
	if r := classes["demographics"]; !strings.Contains(r.Via, "ADT") || strings.Join(r.ResourceTypes, ",") != "Patient" {
		t.Errorf("HL7 demographics read %+v", r)
	}
}

func TestNotRead(t *testing.T) {
	in := testInput(t)
	in.Reads = in.Reads[:1] // demographics only
	md := generate(t, in, FormatMarkdown)
	if !strings.Contains(md, "### Appointment (scheduling, not read for this practice)") || !strings.Contains(md, "### Patient (demographics)\n") {
		t.Error("sections do not say which types are read")
	}
	if !strings.Contains(generate(t, in, FormatHTML), "(scheduling, not read for this practice)") {
		t.Error("HTML does not say which types are read")
	}
	in.Reads = nil // unknown: nothing is marked
	if strings.Contains(generate(t, in, FormatMarkdown), "not read") {
		t.Error("types marked as not read without reads")
	}
}
