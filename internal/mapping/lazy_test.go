package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/testutil/repo"
	"github.com/mediflow/mediflow/profiles"
)

// The differential tests here map the same inputs with the touch plans on
// (members no rule reads stay bytes, copied when they are in encoder form)
// and off (every member decoded and encoded, as Map always did), and
// require the same output, report and error, byte for byte.

// simCorpus returns resources of every type a simulator flavour serves,
// up to perType of each (by id).
func simCorpus(t testing.TB, flavor string, seed uint64, patients, perType int) [][]byte {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "d", Flavor: flavor, Seed: seed, Data: &gen.Options{Patients: patients}}}})
	if err != nil {
		t.Fatal(err)
	}
	return currentByID(s, "d", s.ResourceTypes("d"), perType)
}

// currentByID returns a simulator tenant's current resources of the given
// types, type by type, by id, at most perType of each.
func currentByID(s *sim.Sim, tenant string, types []string, perType int) [][]byte {
	var out [][]byte
	for _, rt := range types {
		cur := s.Current(tenant, rt)
		ids := make([]string, 0, len(cur))
		for id := range cur {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids[:min(perType, len(ids))] {
			out = append(out, cur[id])
		}
	}
	return out
}

// sharedCorpus returns the Oracle Health examples and a few Synthea
// bundles' resources when ../shared is there (nil otherwise).
func sharedCorpus(t testing.TB) (oracle, synthea [][]byte) {
	t.Helper()
	root := filepath.Join(repo.RootT(t), "..", "shared")
	files, _ := filepath.Glob(filepath.Join(root, "fixtures", "vendors", "oracle-health", "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := resourcesOf(data); err == nil {
			oracle = append(oracle, res...)
		}
	}
	files, _ = filepath.Glob(filepath.Join(root, "testdata", "synthea-r4", "*.json"))
	sort.Strings(files)
	for _, f := range files[:min(2, len(files))] {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := resourcesOf(data)
		if err != nil {
			t.Fatal(err)
		}
		synthea = append(synthea, res...)
	}
	return oracle, synthea
}

// setPair loads a Set twice: with the touch plans, and decoding everything.
func setPair(t testing.TB, vendor, version string, practice bool) (lazy, full *Set) {
	t.Helper()
	var srcs []Source
	if practice {
		srcs = append(srcs, goldenPractice(t))
	}
	lazy, err := Load(profiles.FS, vendor, version, srcs...)
	if err != nil {
		t.Fatal(err)
	}
	full, err = Load(profiles.FS, vendor, version, srcs...)
	if err != nil {
		t.Fatal(err)
	}
	full.decodeAll = true
	return lazy, full
}

// mapResult is everything Map gives, as text.
func mapResult(set *Set, in []byte, opts MapOptions) string {
	out, rep, err := set.Map(context.Background(), in, opts)
	var b strings.Builder
	b.Write(out)
	if err != nil {
		fmt.Fprintf(&b, "\nerror: %v", err)
	}
	if rep != nil {
		fmt.Fprintf(&b, "\nreport %s %s %s", rep.ResourceType, rep.Profile, rep.Direction)
		for _, l := range reportLines(rep) {
			b.WriteString("\n" + l)
		}
	}
	return b.String()
}

func compareMaps(t *testing.T, label string, lazy, full *Set, inputs [][]byte, opts MapOptions) int {
	t.Helper()
	bad := 0
	for i, in := range inputs {
		got, want := mapResult(lazy, in, opts), mapResult(full, in, opts)
		if got != want {
			bad++
			if bad <= 3 {
				t.Errorf("%s[%d]: the touch plans change the result\ninput: %.300s\nwith plans: %.600s\nwithout:    %.600s", label, i, in, got, want)
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d of %d results differ", label, bad, len(inputs))
	}
	return len(inputs)
}

func TestTouchPlansKeepOutput(t *testing.T) {
	perType := 120
	if testing.Short() {
		perType = 25
	}
	oracle, synthea := sharedCorpus(t)
	cases := []struct {
		label, vendor, version string
		inputs                 [][]byte
	}{
		{"generic", "generic", "", simCorpus(t, "generic", 11, 40, perType)},
		{"epic", "epic", "May 2026", simCorpus(t, "epic", 12, 30, perType)},
		{"epic-old", "epic", "May 2023", simCorpus(t, "epic", 13, 10, perType/2)},
		{"athenahealth", "athenahealth", "", simCorpus(t, "athenahealth", 14, 20, perType/2)},
		{"eclinicalworks", "eclinicalworks", "1.6", simCorpus(t, "eclinicalworks", 15, 20, perType/2)},
		{"oracle-sim", "oracle-health", "", simCorpus(t, "oracle-health", 16, 20, perType/2)},
		{"nextgen", "nextgen", "5.0.1.698", simCorpus(t, "generic", 17, 10, perType/3)},
		{"veradigm", "veradigm", "", simCorpus(t, "generic", 18, 10, perType/3)},
		{"oracle-fixtures", "oracle-health", "", oracle},
		{"synthea", "generic", "", synthea},
	}
	total := 0
	for _, c := range cases {
		for _, practice := range []bool{true, false} {
			lazy, full := setPair(t, c.vendor, c.version, practice)
			label := fmt.Sprintf("%s practice=%v", c.label, practice)
			var u1, u2 conceptmap.Unmapped
			total += compareMaps(t, label+" in", lazy, full, c.inputs, MapOptions{})
			// The unmapped-code counts are the same too.
			for _, in := range c.inputs[:min(len(c.inputs), 200)] {
				_, _, _ = lazy.Map(context.Background(), in, MapOptions{Unmapped: &u1})
				_, _, _ = full.Map(context.Background(), in, MapOptions{Unmapped: &u2})
			}
			if fmt.Sprint(u1.Counts()) != fmt.Sprint(u2.Counts()) {
				t.Errorf("%s: unmapped codes differ: %v, %v", label, u1.Counts(), u2.Counts())
			}
			total += compareMaps(t, label+" out", lazy, full, c.inputs[:min(len(c.inputs), 300)], MapOptions{Direction: DirectionOut})
			total += compareMaps(t, label+" keep", lazy, full, c.inputs[:min(len(c.inputs), 50)], MapOptions{KeepValues: true})
		}
	}
	if total < 3000 && !testing.Short() {
		t.Errorf("only %d resources compared", total)
	}
	t.Logf("%d mappings compared", total)
}

// TestTouchPlansOnOddJSON maps variants of simulator resources that are
// valid but not in encoder form (white space, other member orders,
// escapes, duplicates, values to prune, non-ASCII text) and broken ones
// (cut short, bytes changed): the plans must give the same result, or the
// same error, as decoding everything.
func TestTouchPlansOnOddJSON(t *testing.T) {
	base := simCorpus(t, "generic", 21, 10, 8)
	base = append(base, simCorpus(t, "epic", 22, 5, 4)...)
	rng := rand.New(rand.NewPCG(1, 2))
	var variants [][]byte
	for _, in := range base {
		variants = append(variants, oddVariants(t, in, rng)...)
	}
	for _, vendor := range []string{"generic", "epic"} {
		lazy, full := setPair(t, vendor, "", true)
		compareMaps(t, vendor+" odd", lazy, full, variants, MapOptions{})
		compareMaps(t, vendor+" odd out", lazy, full, variants, MapOptions{Direction: DirectionOut})
	}
	t.Logf("%d variants", len(variants))
}

func oddVariants(t *testing.T, in []byte, rng *rand.Rand) [][]byte {
	t.Helper()
	var out [][]byte
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, in, "", "  "); err != nil {
		t.Fatal(err)
	}
	out = append(out, pretty.Bytes())
	// encoding/json: members sorted by name, <>& escaped.
	var v any
	if err := json.Unmarshal(in, &v); err != nil {
		t.Fatal(err)
	}
	sorted, _ := json.Marshal(v)
	out = append(out, sorted)
	s := string(in)
	replace := func(old, new string) {
		if strings.Contains(s, old) {
			out = append(out, []byte(strings.Replace(s, old, new, 1)))
		}
	}
	// Duplicates, at the top and inside.
	replace(`{"resourceType":`, `{"id":"dup","resourceType":`)
	replace(`,"id":"`, `,"id":"first","id":"`)
	replace(`"system":"`, `"system":"x","system":"`)
	replace(`"resourceType":"`, `"resourceType":"Patient","resourceType":"`)
	// Escapes and text the encoder writes differently.
	replace(`"display":"`, `"display":"\u0041\/\n`)
	replace(`"text":"`, `"text":"caf\u00e9 \u2028 é `)
	replace(`"display":"`, `"display":"`+"\xff\xfe")
	replace(`"reference":"`, `"reference":"\"`)
	// Empty values to prune.
	replace(`"coding":[{`, `"coding":[{"version":"","userSelected":null,`)
	replace(`"coding":[`, `"coding":[{},`)
	replace(`"text":"`, `"extension":[{"url":"http://x"}],"text":"`)
	replace(`"code":"`, `"_code":{"extension":[{"url":"http://x","valueString":"y"}]},"code":"`)
	replace(`"given":["`, `"given":["","`)
	replace(`"line":["`, `"_line":[null,{"extension":[{"url":"u","valueBoolean":true}]}],"line":["`)
	replace(`"period":{`, `"period":{"start":"","end":null,`)
	replace(`"meta":{`, `"meta":{"tag":[],`)
	replace(`:[{"`, `:[[],{"`)
	replace(`:{"`, `:{"contained":[{"resourceType":"Basic","id":"b","code":{"text":"t"}}],"`)
	// Numbers and literals.
	replace(`"valueCode":"`, `"valueInteger":-0.5e+3,"valueBoolean":false,"valueCode":"`)
	// Member order the model would not give.
	replace(`{"system":"http`, `{"display":"first","system":"http`)
	// Broken JSON.
	for i := 0; i < 3; i++ {
		cut := rng.IntN(len(in))
		out = append(out, append([]byte(nil), in[:cut]...))
		b := append([]byte(nil), in...)
		const junk = "{}[]\":,x0\\ \x01"
		b[rng.IntN(len(b))] = junk[rng.IntN(len(junk))]
		out = append(out, b)
	}
	deep := strings.Repeat(`{"a":`, 210) + "1" + strings.Repeat("}", 210)
	replace(`"text":"`, `"x":`+deep+`,"text":"`)
	return out
}

// TestTouchPlansAreUsed makes sure the differential tests compare two
// different paths: the generic profile's plans leave members of every
// mix type as bytes and copy them.
func TestTouchPlansAreUsed(t *testing.T) {
	lazy, _ := setPair(t, "generic", "", true)
	for _, rt := range []string{"Patient", "Appointment", "Coverage"} {
		p := lazy.planFor(DirectionIn, rt)
		if p.all || p.root == nil || !p.prune {
			t.Fatalf("%s: no plan: %+v", rt, p)
		}
	}
	if p := lazy.planFor(DirectionIn, "Appointment"); p.root.kid("participant") == nil || p.root.kid("participant").full || p.root.kid("slot") != nil {
		t.Errorf("Appointment plan: participant should be partial and slot left as bytes")
	}
	in := simCorpus(t, "generic", 11, 3, 1)
	raws, copied := 0, 0
	for _, r := range in {
		st := lazy.states.Get().(*runState)
		st.dec.track = true
		v, err := st.dec.decodeResource(r, lazy, DirectionIn)
		if err != nil {
			t.Fatal(err)
		}
		res := v.(map[string]any)
		count := func(x any) {
			if rv, ok := x.(*rawValue); ok {
				raws++
				if rv.canon {
					copied++
				}
			}
		}
		for _, x := range res {
			count(x)
		}
		// With the members in encoder order, those no rule reads are
		// only in the decoder's list.
		for _, tk := range st.dec.top {
			if tk.raw != nil {
				if _, inMap := res[tk.key]; inMap || !st.dec.topOrdered {
					continue
				}
				count(tk.raw)
			}
		}
		if !st.dec.topOrdered {
			t.Errorf("%.80s: members not found in encoder order", r)
		}
		lazy.release(st)
	}
	if raws < len(in) || copied < len(in) {
		t.Errorf("%d resources: %d members left as bytes, %d of them in encoder form", len(in), raws, copied)
	}
}

// TestMapResultOwnsItsText: texts of the decoded resource share the input;
// what outlives Map (report, unmapped counts) must not.
func TestMapResultOwnsItsText(t *testing.T) {
	set := loadSet(t, "generic", goldenPractice(t))
	in := []byte(`{"resourceType":"Patient","id":"p1","gender":"zzqq","maritalStatus":{"coding":[{"system":"urn:x","code":"QQ"}]},"name":[{"family":"Doe"}]}`)
	var counts conceptmap.Unmapped
	_, rep, err := set.Map(context.Background(), in, MapOptions{Unmapped: &counts})
	if err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprint(reportLines(rep), rep.ResourceType, counts.Counts())
	if !strings.Contains(before, "zzqq") || !strings.Contains(before, "QQ") {
		t.Fatalf("the test needs unmapped codes in the report: %s", before)
	}
	for i := range in {
		in[i] = 'X'
	}
	if after := fmt.Sprint(reportLines(rep), rep.ResourceType, counts.Counts()); after != before {
		t.Errorf("the report changed with the input:\n%s\n%s", before, after)
	}
}

// TestMapIntoMatchesMap: a recycled report holds what Map's own would.
func TestMapIntoMatchesMap(t *testing.T) {
	set := loadSet(t, "generic", goldenPractice(t))
	rep := new(Report)
	for i, in := range simCorpus(t, "generic", 5, 5, 3) {
		out, want, err := set.Map(context.Background(), in, MapOptions{})
		got, err2 := set.MapInto(context.Background(), in, MapOptions{}, rep)
		if !bytes.Equal(out, got) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("[%d]: MapInto gives %s, %v; Map %s, %v", i, got, err2, out, err)
		}
		if fmt.Sprint(reportLines(want), want.ResourceType, want.Profile, want.Direction) != fmt.Sprint(reportLines(rep), rep.ResourceType, rep.Profile, rep.Direction) {
			t.Fatalf("[%d]: reports differ:\n%v\n%v", i, reportLines(want), reportLines(rep))
		}
	}
	if _, err := set.MapInto(context.Background(), []byte(`[1]`), MapOptions{}, rep); err == nil || len(rep.Elements) != 0 || rep.ResourceType != "" {
		t.Errorf("an unreadable resource: %v, report %+v", err, rep)
	}
}

// TestParseFHIRTimeMatchesSlow: the fast reader of the common shapes gives
// what the general one gives, and declines what it does not read the same.
func TestParseFHIRTimeMatchesSlow(t *testing.T) {
	chicago := mustLocation(t, "America/Chicago")
	inputs := []string{
		"2026-01-02", "2024-02-29", "2023-02-29", "2026-13-01", "2026-00-10", "2026-01-32", "0000-01-01", "9999-12-31",
		"2026-01-02T03:04:05Z", "2026-01-02T03:04:05.1Z", "2026-01-02T03:04:05.123456789123Z", "2026-01-02T03:04:05-05:00",
		"2026-01-02T03:04:05+14:00", "2026-01-02T03:04:05+15:00", "2026-01-02T03:04:05+05:60", "2026-01-02T23:59:60Z",
		"2026-01-02T24:00:00Z", "2026-01-02T03:04:05", "2026-01-02T03:04:05.5", "2026-01-02T03:04Z", "2026-01-02T03:04:05.Z",
		"2026-01-02T03:04:05+0500", "2026-01-02 03:04:05Z", " 2026-01-02", "2026-01-02 ", "2026-1-02", "2026-01-02T3:04:05Z",
		"2026-01-02T03:04:05Zx", "2026-01-02T03:04:05.12a", "20260102", "01/02/2026", "2026", "2026-01", "2026-01-02T03:04:05-00:00",
		"2026-01-02t03:04:05Z", "2026-01-02T03:04:05.000Z", "abcd-ef-gh", "2026-01-02T03:04:05+aa:00", "",
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 3000; i++ {
		b := []byte(inputs[rng.IntN(12)])
		if len(b) > 0 {
			b[rng.IntN(len(b))] = "0123456789-:TZ.+ x"[rng.IntN(18)]
		}
		inputs = append(inputs, string(b))
	}
	fast := 0
	for _, s := range inputs {
		p, ok := parseFHIRTime(s, chicago)
		if !ok {
			continue
		}
		fast++
		q, err := parseLooseTimeSlow(s, chicago)
		if err != nil {
			t.Errorf("%q: the fast reader reads it, the general one says %v", s, err)
			continue
		}
		if p.prec != q.prec || p.frac != q.frac || p.hasTZ != q.hasTZ || p.year != q.year || p.month != q.month || p.day != q.day ||
			!p.t.Equal(q.t) || p.t.Location().String() != q.t.Location().String() {
			t.Errorf("%q: fast %+v, general %+v", s, p, q)
		}
		for _, loc := range []*time.Location{nil, chicago, mustLocation(t, "Asia/Kolkata"), mustLocation(t, "Europe/Dublin")} {
			if a, b := p.formatDateTime(loc), formatDateTimeRef(q, loc); a != b {
				t.Errorf("%q in %v: writes %q, time's format %q", s, loc, a, b)
			}
		}
		if a, b := p.formatDate(), fmt.Sprintf("%04d-%02d-%02d", q.year, q.month, q.day); p.prec == precDay && a != b {
			t.Errorf("%q: date %q, want %q", s, a, b)
		}
	}
	if fast < 100 {
		t.Errorf("only %d inputs took the fast reader", fast)
	}
}

func TestScanPlain(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("abcXYZ019 _-/:.\"\\\x00\x1f\x7f\x80\xc3\xa9\xe2")
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			if rng.IntN(6) == 0 {
				b[j] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[j] = byte('a' + rng.IntN(26))
			}
		}
		from := 0
		if len(b) > 0 {
			from = rng.IntN(len(b) + 1)
		}
		want := from
		for want < len(b) && plainByte[b[want]] {
			want++
		}
		if got := scanPlain(b, from); got != want {
			t.Fatalf("scanPlain(%q, %d) = %d, want %d", b, from, got, want)
		}
		if from == 0 && scanPlainString(string(b), 0) != want {
			t.Fatalf("scanPlainString(%q) differs", b)
		}
	}
}

// TestLookupFrom: the walk from a child on finds what Lookup finds.
func TestLookupFrom(t *testing.T) {
	m := model.R4()
	n := 0
	for _, name := range append(m.Resources(), "Coding", "CodeableConcept", "Extension", "Identifier", "HumanName", "Address", "ContactPoint", "Reference", "Period", "Quantity", "Meta", "Narrative", "Timing", "Dosage") {
		typ := m.Type(name)
		if typ == nil {
			t.Fatalf("no type %s", name)
		}
		var names []string
		for _, c := range typ.Children() {
			names = append(names, c.Name, c.Name+"X", "x"+c.Name)
			if c.Choice {
				for _, code := range c.Types {
					names = append(names, c.Name+strings.ToUpper(code[:1])+code[1:], c.Name+code)
				}
			}
		}
		for _, k := range names {
			wc, wch, wok := typ.Lookup(k)
			for _, from := range []int{0, wc, wc + 1} {
				c, ch, ok := lookupFrom(typ, k, from)
				if ok && (!wok || c != wc || ch != wch) {
					t.Fatalf("%s.%s from %d: %d %d %v, Lookup %d %d %v", name, k, from, c, ch, ok, wc, wch, wok)
				}
				if !ok && wok && from <= wc {
					t.Fatalf("%s.%s from %d: not found; Lookup finds child %d", name, k, from, wc)
				}
				n++
			}
		}
	}
	if n < 1000 {
		t.Errorf("only %d look-ups", n)
	}
}

func mustLocation(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// formatDateTimeRef is how formatDateTime wrote a date-time with time's
// own formatting, before it wrote the digits itself.
func formatDateTimeRef(p parsedTime, loc *time.Location) string {
	if p.prec <= precDay {
		return p.formatDate()
	}
	t := p.t
	if loc != nil {
		t = t.In(loc)
	}
	b := t.AppendFormat(nil, "2006-01-02T15:04:05")
	if p.frac != "" {
		ns := fmt.Sprintf("%09d", t.Nanosecond())
		b = append(append(b, '.'), ns[:min(len(p.frac), 9)]...)
	}
	if _, off := t.Zone(); off == 0 {
		return string(append(b, 'Z'))
	}
	return string(t.AppendFormat(b, "-07:00"))
}

// TestOpaqueElements: elements rules only check and write back whole (an
// Observation's code and subject, a Slot's schedule; an extension list in
// a practice layer) stay bytes even where the plan names them, and the
// result is what decoding everything gives, on odd values of those
// elements too (null, empty, not an object, arrays, white space, values to
// prune, extensions that say nothing).
func TestOpaqueElements(t *testing.T) {
	practice := Source{Name: "p.yaml", Data: []byte(`name: p
resources:
  - resource: Observation
    rules:
      - id: p.extension
        target: extension
        required: true
        rationale: r
      - id: p.basedOn
        target: basedOn
        rationale: r
`)}
	lazy, err := Load(profiles.FS, "generic", "", practice)
	if err != nil {
		t.Fatal(err)
	}
	full, err := Load(profiles.FS, "generic", "", practice)
	if err != nil {
		t.Fatal(err)
	}
	full.decodeAll = true
	plan := lazy.planFor(DirectionIn, "Observation")
	for _, k := range []string{"code", "subject", "extension", "basedOn"} {
		if n := plan.root.kid(k); n == nil || !n.opaque() {
			t.Fatalf("Observation plan: %s is not opaque: %+v", k, n)
		}
	}
	if n := plan.root.kid("status"); n == nil || n.opaque() {
		t.Fatalf("Observation plan: status (trimmed) must be decoded: %+v", n)
	}
	obs := `{"resourceType":"Observation","id":"o1","meta":{"versionId":"1"},"status":" final ",%s"code":%s,"subject":%s,"effectiveDateTime":"2025-10-08T10:50:00Z"}`
	codes := []string{`{"coding":[{"system":"http://loinc.org","code":"2823-3"}],"text":"K"}`, `{}`, `null`, `[]`, `"x"`, `[{"text":"a"},{}]`,
		` { "text" : "a" } `, `{"text":"","coding":[]}`, `{"text":"a","extension":[{"url":"u"}]}`, `{"coding":[{"code":"b","system":"a"}]}`,
		`{"text":"caf\u00e9"}`, `{"text":"a","text":"b"}`}
	subjects := []string{`{"reference":"Patient/p1"}`, `{"reference":""}`, `{}`, `null`}
	exts := []string{``, `"extension":[{"url":"u","valueString":"v"}],`, `"extension":[{"url":"u"}],`, `"extension":[],`, `"extension":[{"url":"u"},{"url":"w","valueBoolean":true}],`,
		`"extension":{"url":"u","valueString":"v"},`, `"basedOn":[{"reference":"ServiceRequest/1"},null,{}],`, `"basedOn":[{"reference":""}],`}
	var inputs [][]byte
	for _, c := range codes {
		for _, s := range subjects {
			for _, e := range exts {
				inputs = append(inputs, []byte(fmt.Sprintf(obs, e, c, s)))
			}
		}
	}
	for _, sched := range []string{`{"reference":"Schedule/s1"}`, `{}`, `null`, `[]`, `{"reference":"Schedule/s1","display":""}`} {
		inputs = append(inputs, []byte(`{"resourceType":"Slot","id":"s","schedule":`+sched+`,"status":"free","start":"2026-06-15T11:30:00Z","end":"2026-06-15T12:00:00Z"}`))
	}
	compareMaps(t, "opaque", lazy, full, inputs, MapOptions{})
	compareMaps(t, "opaque out", lazy, full, inputs, MapOptions{Direction: DirectionOut})

	// The members do stay bytes: no map is made for them.
	st := lazy.states.Get().(*runState)
	st.dec.track = true
	v, err := st.dec.decodeResource(inputs[0], lazy, DirectionIn)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"code", "subject"} {
		if rv, ok := v.(map[string]any)[k].(*rawValue); !ok || !rv.canon {
			t.Errorf("%s: %T, want a *rawValue in encoder form", k, v.(map[string]any)[k])
		}
	}
	lazy.release(st)
}

// TestEncodedProfileTag: the profile tag is written from its encoding,
// which is the tag's own, for the element type meta.tag has.
func TestEncodedProfileTag(t *testing.T) {
	set := loadSet(t, "generic")
	m := set.m
	meta := m.Type("Observation")
	c, choice, ok := meta.Lookup("meta")
	if !ok {
		t.Fatal("no Observation.meta")
	}
	metaT := meta.ChildType(c, max(choice, 0))
	c, choice, ok = metaT.Lookup("tag")
	if !ok {
		t.Fatal("no Meta.tag")
	}
	if tagT := metaT.ChildType(c, max(choice, 0)); tagT != set.tagEnc.typ {
		t.Fatalf("the encoded tag is for %v, meta.tag holds %v", set.tagEnc.typ, tagT)
	}
	for i, prune := range []bool{false, true} {
		e := encoder{m: m, prune: prune}
		want, _, err := e.object(nil, set.tag, set.tagEnc.typ, false)
		if err != nil {
			t.Fatal(err)
		}
		if string(set.tagEnc.enc[i]) != string(want) || !strings.Contains(string(want), set.Version()) {
			t.Errorf("prune=%v: encoded %s, want %s", prune, set.tagEnc.enc[i], want)
		}
	}
	out, _, err := set.Map(context.Background(), []byte(`{"resourceType":"Observation","id":"o","meta":{"tag":[{"system":"s","code":"c"}]},"status":"final","code":{"text":"x"}}`), MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `"meta":{"tag":[{"system":"s","code":"c"},{"system":"` + ProfileTagSystem + `","code":"` + set.Version() + `"}]}`
	if !strings.Contains(string(out), want) {
		t.Errorf("output %s\nlacks %s", out, want)
	}
}

// TestTopMembersOutOfMap: with a resource's members in encoder order, those
// no rule reads stay out of the decoded map and the encoder takes them from
// the decoder's list. The result must be the same when the rules add a
// member (a default), when the tag removal drops meta, and for primitive
// arrays whose "_name" sibling lines up with them (pruning keeps the
// positions).
func TestTopMembersOutOfMap(t *testing.T) {
	lazy, full := setPair(t, "generic", "", false)
	inputs := []string{
		// Encounter.class gets a default when missing.
		`{"resourceType":"Encounter","id":"e1","status":"finished","subject":{"reference":"Patient/p"},"period":{"start":"2026-05-26T08:00:00Z"}}`,
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p"}}`,
		// Location.alias is no rule's: "" pruned, its extension kept in line.
		`{"resourceType":"Location","id":"l1","status":"active","name":"Clinic","alias":["a",""],"_alias":[null,{"extension":[{"url":"u","valueString":"v"}]}]}`,
		`{"resourceType":"Location","id":"l1","meta":{"versionId":"1"},"status":"active","name":"Clinic","alias":["a",""],"_alias":[null,{"extension":[{"url":"u","valueString":"v"}]}]}`,
		`{"resourceType":"Location","id":"l1","meta":{},"status":"active","name":"Clinic","alias":["a","",""],"_alias":[{"id":"1"},null,{"extension":[{"url":"u","valueString":"v"}]}]}`,
		`{"resourceType":"Location","id":"l1","status":"active","name":"Clinic","alias":["a","","b"]}`,
		`{"resourceType":"Location","id":"l1","_alias":[{"id":"x"}],"alias":[""],"status":"active"}`,
		`{"resourceType":"Location","id":"l1","status":"active","alias":[],"_alias":[]}`,
		// The profile tag alone in meta: direction out drops meta.
		`{"resourceType":"Observation","id":"o","meta":{"tag":[{"system":"` + ProfileTagSystem + `","code":"x"}]},"status":"final","code":{"text":"c"},"valueString":""}`,
		`{"resourceType":"Observation","id":"o","meta":{"tag":[{"system":"` + ProfileTagSystem + `","code":"x"}],"versionId":"2"},"status":"final","code":{"text":"c"}}`,
		// An empty member name, beside a "_name" member.
		`{"resourceType":"Patient","id":"p","":1,"_gender":{"id":"x"}}`,
		`{"resourceType":"Observation","id":"o","status":"final","":"x","_status":{"id":"y"},"code":{"text":"c"}}`,
	}
	var in [][]byte
	for _, s := range inputs {
		if !json.Valid([]byte(s)) {
			t.Fatalf("not JSON: %s", s)
		}
		in = append(in, []byte(s))
	}
	compareMaps(t, "top in", lazy, full, in, MapOptions{})
	compareMaps(t, "top out", lazy, full, in, MapOptions{Direction: DirectionOut})
}
