package coverage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"iter"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/mapping/mask"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/testutil/repo"
	"github.com/mediflow/mediflow/profiles"
)

const inputDir = "testdata/input"

func testSet(t testing.TB) *mapping.Set {
	t.Helper()
	set, err := mapping.Load(os.DirFS(filepath.Join("testdata", "profiles")), "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func converter(t testing.TB) *v2fhir.Converter {
	t.Helper()
	c, err := v2fhir.New(v2fhir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func collect(t *testing.T, seq iter.Seq2[Item, error]) []Item {
	t.Helper()
	var out []Item
	for it, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, it)
	}
	return out
}

func TestFromDir(t *testing.T) {
	items := collect(t, FromDir(inputDir, converter(t)))
	type row struct{ origin, problem, rt string }
	var got []row
	for _, it := range items {
		got = append(got, row{it.Origin, it.Problem, resourceType(it.Resource)})
	}
	want := []row{
		{"adt.hl7 resource 1", "", "Patient"},
		{"basic.json", "", "Basic"},
		{"noresourcetype.json", "JSON without a resourceType", ""},
		{"patients.json entry 1", "", "Patient"},
		{"patients.json entry 2", "", "Patient"},
		{"sub/more.ndjson line 1", "", "Patient"},
		{"sub/more.ndjson line 3", "not a JSON object", ""},
		{"sub/more.ndjson line 4", "", "Appointment"},
		{"sub/more.ndjson line 5", "", "Appointment"},
		{"unknown.json", "", "Nope"},
		{"unsupported.hl7", "HL7 v2 ZZZ^Z01 has no conversion", ""},
		{"wrapped.json", "", "Appointment"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d items, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Without a converter, HL7 files are problems.
	for _, it := range collect(t, FromDir(inputDir, nil)) {
		if strings.HasSuffix(it.Origin, ".hl7") && it.Problem != "HL7 v2 file, but no HL7 converter was given" {
			t.Errorf("%s: %q", it.Origin, it.Problem)
		}
	}
	// Stopping early works.
	n := 0
	for range FromDir(inputDir, nil) {
		n++
		if n == 2 {
			break
		}
	}
	// A missing or non-folder input is an error.
	for _, bad := range []string{"testdata/nope", "testdata/input/basic.json"} {
		var err error
		for _, e := range FromDir(bad, nil) {
			err = e
		}
		if err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func runInput(t *testing.T, opts Options) *Report {
	t.Helper()
	rep, err := Run(context.Background(), testSet(t), FromDir(inputDir, converter(t)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func find(t *testing.T, rep *Report, rt, rule string) (ResourceReport, Element) {
	t.Helper()
	for _, r := range rep.ResourceTypes {
		if r.ResourceType != rt {
			continue
		}
		for _, e := range r.Elements {
			if e.Rule == rule {
				return r, e
			}
		}
		t.Fatalf("%s has no element %s", rt, rule)
	}
	t.Fatalf("no resource type %s", rt)
	return ResourceReport{}, Element{}
}

func TestRun(t *testing.T) {
	gen := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	rep := runInput(t, Options{Practice: "windmill", Input: "folder testdata/input", Generated: gen, MediflowVersion: "1.2.3"})
	if rep.Vendor != "acme" || rep.Profile != "acme@2 + canonical@1" || rep.Practice != "windmill" || !rep.Generated.Equal(gen) {
		t.Errorf("header %+v", rep)
	}
	wantTotals := Totals{Inputs: 12, Resources: 9, Mapped: 7, Failed: 1, WithIssues: 3, Problems: 4, UnmappedCodes: 3}
	if rep.Totals != wantTotals {
		t.Errorf("totals %+v, want %+v", rep.Totals, wantTotals)
	}
	var types []string
	for _, r := range rep.ResourceTypes {
		types = append(types, r.ResourceType)
	}
	if strings.Join(types, ",") != "Appointment,Basic,Patient" {
		t.Errorf("resource types %v (a type the mapping refused must not appear)", types)
	}

	pt, g := find(t, rep, "Patient", "patient.gender")
	if pt.Resources != 4 || pt.Mapped != 4 || pt.WithIssues != 2 {
		t.Errorf("Patient totals %+v", pt)
	}
	if g.Total != 4 || g.Populated != 3 || g.Empty != 1 || !g.Required || g.Layer != "canonical" || g.DefinedAt != "canonical/patient.yaml:3" {
		t.Errorf("gender %+v", g)
	}
	if len(g.Unmapped) != 2 || g.Unmapped[0].Code != "male" || g.Unmapped[1].Code != "zz" || g.Unmapped[1].Policy != "default" || g.Unmapped[1].Count != 1 {
		t.Errorf("gender unmapped %+v", g.Unmapped)
	}
	_, ph := find(t, rep, "Patient", "patient.telecom.phone")
	if ph.Total != 5 || ph.Populated != 2 || ph.Failed != 2 || ph.Empty != 1 || ph.Element != "each telecom.where(system = 'phone') › value" {
		t.Errorf("phone %+v", ph)
	}
	if len(ph.Failures) != 2 || ph.Failures[0].Reason != "a 7-digit phone number has no area code" || ph.Failures[0].Count != 1 {
		t.Errorf("phone failures %+v", ph.Failures)
	}
	if len(ph.Examples) != 1 || ph.Examples[0] != "+###########" {
		t.Errorf("phone examples %v (two numbers map to the same masked value)", ph.Examples)
	}
	_, dc := find(t, rep, "Patient", "patient.deceased.official")
	if dc.Skipped != 3 || dc.Populated != 1 {
		t.Errorf("condition rule %+v", dc)
	}
	_, bd := find(t, rep, "Patient", "patient.birthDate")
	if len(bd.Examples) != 3 {
		t.Errorf("birthDate examples %v", bd.Examples)
	}
	for _, ex := range bd.Examples {
		if !regexp.MustCompile(`^\d{4}(-##-##)?$`).MatchString(ex) {
			t.Errorf("birth date example %q is not masked to its year", ex)
		}
	}

	at, st := find(t, rep, "Appointment", "appointment.status")
	if at.Resources != 3 || at.Mapped != 2 || at.Failed != 1 || at.WithIssues != 1 {
		t.Errorf("Appointment totals %+v", at)
	}
	if st.Failed != 1 || len(st.Failures) != 1 || !strings.Contains(st.Failures[0].Reason, "weird") || len(st.Unmapped) != 1 || st.Unmapped[0].Policy != "error" {
		t.Errorf("status %+v", st)
	}
	if len(at.Unmapped) != 1 || at.Unmapped[0].Code != "weird" || at.Unmapped[0].Count != 1 {
		t.Errorf("Appointment unmapped %+v", at.Unmapped)
	}
	if len(rep.Unmapped) != 3 {
		t.Errorf("unmapped %+v", rep.Unmapped)
	}
	probs := map[string]Problem{}
	for _, p := range rep.Problems {
		probs[p.Reason] = p
	}
	for reason, origin := range map[string]string{
		"HL7 v2 ZZZ^Z01 has no conversion":      "unsupported.hl7",
		"JSON without a resourceType":           "noresourcetype.json",
		`mapping: unknown resource type "Nope"`: "unknown.json",
		"not a JSON object":                     "sub/more.ndjson line 3",
	} {
		if p, ok := probs[reason]; !ok || p.Count != 1 || len(p.Origins) != 1 || p.Origins[0] != origin {
			t.Errorf("problem %q: %+v", reason, p)
		}
	}
	// Invariants.
	for _, r := range rep.ResourceTypes {
		for _, e := range r.Elements {
			if e.Populated+e.Kept+e.Empty+e.Failed+e.Skipped != e.Total {
				t.Errorf("%s %s: statuses do not add up: %+v", r.ResourceType, e.Rule, e)
			}
		}
	}
}

func TestExamplesOption(t *testing.T) {
	rep := runInput(t, Options{MaxExamples: -1})
	for _, r := range rep.ResourceTypes {
		for _, e := range r.Elements {
			if len(e.Examples) > 0 {
				t.Errorf("%s has examples with MaxExamples -1", e.Rule)
			}
		}
	}
	rep = runInput(t, Options{MaxExamples: 1})
	_, bd := find(t, rep, "Patient", "patient.birthDate")
	if len(bd.Examples) != 1 {
		t.Errorf("examples %v with MaxExamples 1", bd.Examples)
	}
}

func TestNoPHIInOutput(t *testing.T) {
	rep := runInput(t, Options{})
	for _, f := range Formats() {
		var b bytes.Buffer
		if err := Write(&b, rep, f); err != nil {
			t.Fatal(err)
		}
		for _, phi := range []string{"Rocinante", "Ana", "Bruno", "Carrasco", "Sanson", "HC123", "555-0100", "5550100", "2145550111", "03-04", "01-02", "Plaza"} {
			if strings.Contains(b.String(), phi) {
				t.Errorf("%s report holds %q", f, phi)
			}
		}
	}
}

func TestWrite(t *testing.T) {
	rep := runInput(t, Options{Practice: "<b>windmill</b>"})
	var js bytes.Buffer
	if err := Write(&js, rep, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	if back.Totals != rep.Totals || len(back.ResourceTypes) != len(rep.ResourceTypes) || back.ResourceTypes[2].Elements[0].Rule != "patient.gender" {
		t.Errorf("JSON round trip lost data")
	}
	for _, key := range []string{`"resourceTypes"`, `"populated"`, `"failures"`, `"unmapped"`, `"examples"`, `"problems"`, `"withIssues"`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	var h bytes.Buffer
	if err := Write(&h, rep, FormatHTML); err != nil {
		t.Fatal(err)
	}
	html := h.String()
	if strings.Contains(html, "<b>windmill</b>") || !strings.Contains(html, "&lt;b&gt;windmill&lt;/b&gt;") {
		t.Error("the practice is not escaped in HTML")
	}
	for _, want := range []string{"<style>", `id="rt-Patient"`, "a 7-digit phone number has no area code", "<code>weird</code>", "mapping: unknown resource type", "&#43;###########", `class="issues"`, "width:40.00%"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(html, "<link") || strings.Contains(html, `src="http`) {
		t.Error("HTML loads something from outside")
	}
	if err := Write(&h, rep, "xml"); err == nil {
		t.Error("unknown format: no error")
	}
}

func TestRunStops(t *testing.T) {
	set := testSet(t)
	boom := errors.New("boom")
	items := func(yield func(Item, error) bool) {
		if !yield(Item{Resource: []byte(`{"resourceType":"Patient","id":"x"}`), Origin: "a"}, nil) {
			return
		}
		yield(Item{}, boom)
	}
	if _, err := Run(context.Background(), set, items, Options{}); !errors.Is(err, boom) {
		t.Errorf("iterator error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, set, FromDir(inputDir, nil), Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := Run(context.Background(), nil, FromDir(inputDir, nil), Options{}); err == nil {
		t.Error("nil set: no error")
	}
}

// fakeStore serves raw payloads and HL7 messages like the SQLite store
// does: raw newest first, HL7 by id.
type fakeStore struct {
	raw   []store.RawPayload
	msgs  []store.HL7Message
	calls int
}

func (f *fakeStore) ListRaw(_ context.Context, practice string, flt store.RawFilter) ([]store.RawPayload, error) {
	var out []store.RawPayload
	for i := len(f.raw) - 1; i >= 0 && len(out) < flt.Limit; i-- {
		r := f.raw[i]
		if r.Practice == practice && (flt.Connection == "" || flt.Connection == r.Connection) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeStore) ListHL7Messages(_ context.Context, practice string, flt store.HL7Filter) ([]store.HL7Message, error) {
	f.calls++
	var out []store.HL7Message
	for _, m := range f.msgs {
		if m.Practice == practice && m.ID > flt.AfterID && len(out) < flt.Limit && m.Direction == flt.Direction {
			out = append(out, m)
		}
	}
	return out, nil
}

func TestFromStoreFake(t *testing.T) {
	bundle := func(ids ...string) []byte {
		var es []string
		for _, id := range ids {
			es = append(es, `{"resource":{"resourceType":"Patient","id":"`+id+`","gender":"F"}}`)
		}
		return []byte(`{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(es, ",") + `]}`)
	}
	adt := []byte("MSH|^~\\&|EHR|CLINIC|MEDIFLOW|MF|20260601120000-0500||ADT^A04|M1|P|2.5.1\rPID|1||HC9^^^CLINIC^MR||Doe^Jane||19700102|F\rPV1|1|O\r")
	fs := &fakeStore{
		raw: []store.RawPayload{
			{ID: 1, Practice: "p", Connection: "a", Body: bundle("1", "2")},
			{ID: 2, Practice: "p", Connection: "b", Body: bundle("3")},
			{ID: 3, Practice: "other", Connection: "a", Body: bundle("x")},
			{ID: 4, Practice: "p", Connection: "a", Body: []byte("garbage")},
		},
	}
	for i := 1; i <= hl7Page+5; i++ {
		fs.msgs = append(fs.msgs, store.HL7Message{ID: int64(i), Practice: "p", Direction: store.DirectionInbound, Body: adt})
	}
	fs.msgs = append(fs.msgs, store.HL7Message{ID: 9999, Practice: "p", Direction: store.DirectionOutbound, Body: adt})

	var origins []string
	for it, err := range FromStore(context.Background(), fs, "p", StoreOptions{Connections: []string{"a", "b"}, HL7: converter(t)}) {
		if err != nil {
			t.Fatal(err)
		}
		origins = append(origins, it.Origin+"|"+it.Problem)
	}
	if len(origins) != 4+hl7Page+5 {
		t.Fatalf("%d items: %v", len(origins), origins[:min(10, len(origins))])
	}
	want := []string{"raw payload 1 entry 1|", "raw payload 1 entry 2|", "raw payload 4|not a JSON object", "raw payload 2 entry 1|", "HL7 message 1 resource 1|"}
	for i, w := range want {
		if origins[i] != w {
			t.Errorf("item %d = %q, want %q", i, origins[i], w)
		}
	}
	if last := origins[len(origins)-1]; last != "HL7 message 205 resource 1|" {
		t.Errorf("last item %q (outbound messages must be left out)", last)
	}
	if fs.calls != 2 {
		t.Errorf("%d HL7 list calls, want 2 pages", fs.calls)
	}
	// Limits.
	n := 0
	for it, err := range FromStore(context.Background(), fs, "p", StoreOptions{MaxRaw: 1, HL7: converter(t), MaxHL7: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(it.Origin, "raw payload") && it.Origin != "raw payload 4" {
			t.Errorf("MaxRaw 1 read %s", it.Origin)
		}
		n++
	}
	if n != 1+3 {
		t.Errorf("%d items with MaxRaw 1, MaxHL7 3", n)
	}
}

func TestFromStoreSQLite(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := simulator(t, "generic", 3)
	var entries []string
	var want int
	for _, rt := range []string{"Patient", "Appointment"} {
		for _, body := range sortedBodies(s.Current("sim", rt)) {
			entries = append(entries, `{"resource":`+string(body)+`}`)
			want++
		}
	}
	page := []byte(`{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(entries, ",") + `]}`)
	if _, err := st.PutRaw(ctx, store.RawPayload{Practice: "p", Connection: "ehr", Source: "fhir-rest", FetchedAt: time.Now(), Body: page}); err != nil {
		t.Fatal(err)
	}
	adt := []byte("MSH|^~\\&|EHR|CLINIC|MEDIFLOW|MF|20260601120000-0500||ADT^A04|M1|P|2.5.1\rPID|1||HC9^^^CLINIC^MR||Doe^Jane||19700102|F\rPV1|1|O\r")
	if _, err := st.PutHL7Messages(ctx, "p", []store.HL7Message{{Direction: store.DirectionInbound, Channel: "adt", ControlID: "M1", Body: adt}}, 0); err != nil {
		t.Fatal(err)
	}
	set, err := mapping.Load(profiles.FS, "generic", "")
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := hl7.ParseAll(adt, hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conv, err := converter(t).Convert(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	want += len(conv.Resources)
	rep, err := Run(ctx, set, FromStore(ctx, st, "p", StoreOptions{HL7: converter(t)}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, r := range rep.ResourceTypes {
		got += r.Resources
	}
	if got != want || rep.Totals.Resources != want || rep.Totals.Problems != 0 {
		t.Errorf("%d resources mapped, want %d from the raw page and the ADT message; problems %+v", got, want, rep.Problems)
	}
}

func simulator(t testing.TB, flavor string, patients int) *sim.Sim {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "sim", Flavor: flavor, Seed: 11, Data: &gen.Options{Patients: patients}}}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sortedBodies(m map[string][]byte) [][]byte {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = m[id]
	}
	return out
}

// simItems yields every resource of a simulator tenant.
func simItems(s *sim.Sim) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		for _, rt := range s.ResourceTypes("sim") {
			for _, b := range sortedBodies(s.Current("sim", rt)) {
				if !yield(Item{Resource: b, Origin: rt}, nil) {
					return
				}
			}
		}
	}
}

// names collects the names, identifier values, phone numbers, addresses and
// address coordinates of the Patients in items, to check they do not leak into a report. Words that
// masking keeps elsewhere in the data (a code's display such as "Person
// Identifier", a resource id that is also an identifier value) are left out.
func names(t *testing.T, items iter.Seq2[Item, error]) []string {
	t.Helper()
	seen := map[string]bool{}
	var public strings.Builder
	for it, err := range items {
		if err != nil {
			t.Fatal(err)
		}
		if it.Resource == nil {
			continue
		}
		if m, err := mask.JSON(it.Resource); err == nil {
			public.Write(m)
		}
		var p struct {
			ResourceType string `json:"resourceType"`
			Name         []struct {
				Family string   `json:"family"`
				Given  []string `json:"given"`
			} `json:"name"`
			Identifier []struct {
				Value string `json:"value"`
			} `json:"identifier"`
			Telecom []struct {
				Value string `json:"value"`
			} `json:"telecom"`
			Address []struct {
				Line       []string `json:"line"`
				City       string   `json:"city"`
				PostalCode string   `json:"postalCode"`
				Extension  []struct {
					Extension []struct {
						ValueDecimal json.Number `json:"valueDecimal"`
					} `json:"extension"`
				} `json:"extension"`
			} `json:"address"`
		}
		if json.Unmarshal(it.Resource, &p) != nil || p.ResourceType != "Patient" {
			continue
		}
		for _, n := range p.Name {
			for _, s := range append([]string{n.Family}, n.Given...) {
				if len(s) >= 4 {
					seen[s] = true
				}
			}
		}
		for _, tc := range p.Telecom {
			if len(tc.Value) >= 7 {
				seen[tc.Value] = true
			}
		}
		for _, a := range p.Address {
			for _, s := range append(a.Line, a.City, a.PostalCode) {
				if len(s) >= 5 {
					seen[s] = true
				}
			}
			for _, e := range a.Extension {
				for _, g := range e.Extension {
					if len(g.ValueDecimal) >= 6 {
						seen[string(g.ValueDecimal)[:6]] = true
					}
				}
			}
		}
		for _, id := range p.Identifier {
			if len(strings.TrimSpace(id.Value)) >= 5 {
				seen[strings.TrimSpace(id.Value)] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		if !strings.Contains(public.String(), s) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatal("no names in the data: the check would prove nothing")
	}
	return out
}

// TestShippedProfiles runs the shipped profiles over simulator, Synthea and
// Oracle Health data and checks the reports' invariants and that no name
// or identifier of the data reaches them.
func TestShippedProfiles(t *testing.T) {
	synthea := repo.Shared(t, "testdata/synthea-r4")
	files, err := filepath.Glob(filepath.Join(synthea, "*.json"))
	if err != nil || len(files) < 3 {
		t.Fatalf("synthea bundles: %v %d", err, len(files))
	}
	tmp := t.TempDir()
	for _, f := range files[:3] {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		vendor, version string
		items           iter.Seq2[Item, error]
	}{
		{"epic", "May 2026", simItems(simulator(t, "epic", 4))},
		{"generic", "", simItems(simulator(t, "generic", 4))},
		{"generic", "", FromDir(tmp, nil)},
		{"oracle-health", "", FromDir(repo.Shared(t, "fixtures/vendors/oracle-health"), nil)},
	}
	for _, c := range cases {
		t.Run(c.vendor, func(t *testing.T) {
			set, err := mapping.Load(profiles.FS, c.vendor, c.version)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(context.Background(), set, c.items, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Totals.Resources < 10 || rep.Totals.Mapped == 0 {
				t.Fatalf("totals %+v", rep.Totals)
			}
			sum := 0
			examples := 0
			for _, r := range rep.ResourceTypes {
				sum += r.Resources
				if r.Mapped+r.Failed != r.Resources {
					t.Errorf("%s: mapped %d + failed %d != %d", r.ResourceType, r.Mapped, r.Failed, r.Resources)
				}
				for _, e := range r.Elements {
					if e.Populated+e.Kept+e.Empty+e.Failed+e.Skipped != e.Total {
						t.Errorf("%s %s: statuses do not add up", r.ResourceType, e.Rule)
					}
					if len(e.Examples) > DefaultExamples {
						t.Errorf("%s %s: %d examples", r.ResourceType, e.Rule, len(e.Examples))
					}
					examples += len(e.Examples)
				}
			}
			if sum+rep.Totals.Problems < rep.Totals.Resources || examples == 0 {
				t.Errorf("per-type resources %d, problems %d, totals %+v, %d examples", sum, rep.Totals.Problems, rep.Totals, examples)
			}
			var b bytes.Buffer
			if err := Write(&b, rep, FormatJSON); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, n := range names(t, c.items) {
				if strings.Contains(out, n) {
					t.Errorf("the report holds %q from the data", n)
				}
			}
		})
	}
}

func BenchmarkRun(b *testing.B) {
	s := simulator(b, "epic", 300)
	set, err := mapping.Load(profiles.FS, "epic", "May 2026")
	if err != nil {
		b.Fatal(err)
	}
	var items []Item
	for _, rt := range []string{"Patient", "Appointment", "Coverage"} {
		for _, body := range sortedBodies(s.Current("sim", rt)) {
			items = append(items, Item{Resource: body})
		}
	}
	seq := func(yield func(Item, error) bool) {
		for _, it := range items {
			if !yield(it, nil) {
				return
			}
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Run(context.Background(), set, seq, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(items)*b.N)/b.Elapsed().Seconds(), "resources/s")
}
