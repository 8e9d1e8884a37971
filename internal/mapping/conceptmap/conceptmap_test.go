package conceptmap_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

const (
	base     = "http://mediflow.dev/fhir/ConceptMap/"
	v2       = "http://terminology.hl7.org/CodeSystem/v2-"
	gender   = "http://hl7.org/fhir/administrative-gender"
	actCode  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	marital  = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
	apptStat = "http://hl7.org/fhir/appointmentstatus"
	// Epic's public sandbox legal-sex code system.
	epicSandboxLegalSex = "urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.130.657370.19999000"
	oracleTenant        = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
)

// shippedDir is profiles/conceptmaps in the repository.
func shippedDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(repo.RootT(t), "profiles", "conceptmaps")
}

// shipped loads the shipped maps the way the engine does (an fs.FS and a
// folder in it).
func shipped(t testing.TB) *conceptmap.Set {
	t.Helper()
	set, err := conceptmap.Load(os.DirFS(filepath.Join(repo.RootT(t), "profiles")), "conceptmaps")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func mustGet(t testing.TB, s *conceptmap.Set, id string) *conceptmap.Map {
	t.Helper()
	m, ok := s.Get(base + id)
	if !ok {
		t.Fatalf("no map %s", base+id)
	}
	return m
}

func TestLoadShipped(t *testing.T) {
	set := shipped(t)
	want := []string{"administrative-gender", "appointment-status", "encounter-class", "identifier-type",
		"marital-status", "omb-ethnicity", "omb-race", "oracle-health-codesets"}
	var got []string
	for _, m := range set.All() {
		got = append(got, strings.TrimPrefix(m.URL(), base))
		if m.Name() == "" || m.Title() == "" || m.Description() == "" || m.Status() != "active" {
			t.Errorf("%s: name, title, description and status active are expected", m.URL())
		}
		if m.Len() == 0 && m.URL() != base+"identifier-type" {
			t.Errorf("%s lists no code", m.URL())
		}
		if !strings.HasPrefix(m.File(), "conceptmaps/") || !strings.HasSuffix(m.File(), ".json") {
			t.Errorf("%s: File() = %q", m.URL(), m.File())
		}
		for _, g := range m.Groups() {
			if g.Source == "" || g.Target == "" {
				t.Errorf("%s: group without source or target", m.URL())
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("All() = %v, want %v (sorted by url)", got, want)
	}
	for _, tc := range []struct {
		id  string
		min int
	}{{"omb-race", 900}, {"omb-ethnicity", 40}, {"oracle-health-codesets", 80}, {"administrative-gender", 14}} {
		if n := mustGet(t, set, tc.id).Len(); n < tc.min {
			t.Errorf("%s lists %d codes, want at least %d", tc.id, n, tc.min)
		}
	}
}

// Every shipped file is a valid FHIR R4 resource by our validator.
func TestShippedMapsValidateAsR4(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(shippedDir(t), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped maps (%v)", err)
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, is := range validate.Validate(model.R4(), body) {
			t.Errorf("%s: %s: %s", filepath.Base(f), is.Path, is.Message)
		}
	}
}

func TestTranslateKnownCodes(t *testing.T) {
	set := shipped(t)
	for _, tc := range []struct {
		id, system, code string
		want             conceptmap.Target // System, Code, Equivalence compared
	}{
		{"administrative-gender", v2 + "0001", "F", conceptmap.Target{System: gender, Code: "female", Equivalence: "equivalent"}},
		{"administrative-gender", v2 + "0001", "A", conceptmap.Target{System: gender, Code: "other", Equivalence: "wider"}},
		{"administrative-gender", v2 + "0001", "N", conceptmap.Target{System: gender, Code: "other", Equivalence: "inexact"}},
		{"administrative-gender", epicSandboxLegalSex, "male", conceptmap.Target{System: gender, Code: "male", Equivalence: "equivalent"}},
		{"administrative-gender", gender, "unknown", conceptmap.Target{System: gender, Code: "unknown", Equivalence: "equal"}},
		{"administrative-gender", "", "M", conceptmap.Target{System: gender, Code: "male", Equivalence: "equivalent"}},
		{"appointment-status", v2 + "0278", "Started", conceptmap.Target{System: apptStat, Code: "checked-in", Equivalence: "inexact"}},
		{"appointment-status", v2 + "0278", "Noshow", conceptmap.Target{System: apptStat, Code: "noshow", Equivalence: "equivalent"}},
		{"appointment-status", v2 + "0278", "Overbook", conceptmap.Target{System: apptStat, Code: "booked", Equivalence: "wider"}},
		{"appointment-status", apptStat, "arrived", conceptmap.Target{System: apptStat, Code: "arrived", Equivalence: "equal"}},
		{"encounter-class", v2 + "0004", "E", conceptmap.Target{System: actCode, Code: "EMER", Equivalence: "equivalent"}},
		{"encounter-class", v2 + "0004", "O", conceptmap.Target{System: actCode, Code: "AMB", Equivalence: "equivalent"}},
		{"encounter-class", v2 + "0004", "R", conceptmap.Target{System: v2 + "0004", Code: "R", Equivalence: "equal"}},
		{"encounter-class", "urn:oid:1.2.840.114350.1.72.1.7.7.10.696784.13260", "13", conceptmap.Target{System: actCode, Code: "AMB", Equivalence: "wider"}},
		{"encounter-class", "https://fhir.cerner.com/" + oracleTenant + "/codeSet/71", "309308", conceptmap.Target{System: actCode, Code: "IMP", Equivalence: "equivalent"}},
		{"marital-status", v2 + "0002", "A", conceptmap.Target{System: marital, Code: "L", Equivalence: "narrower"}},
		{"marital-status", v2 + "0002", "P", conceptmap.Target{System: marital, Code: "T", Equivalence: "equivalent"}},
		{"marital-status", v2 + "0002", "U", conceptmap.Target{System: "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", Code: "UNK", Equivalence: "equivalent"}},
		{"identifier-type", "urn:ietf:rfc:3986", "http://hl7.org/fhir/sid/us-npi", conceptmap.Target{System: v2 + "0203", Code: "NPI", Equivalence: "equivalent"}},
		{"identifier-type", "urn:ietf:rfc:3986", "urn:oid:2.16.840.1.113883.4.1", conceptmap.Target{System: v2 + "0203", Code: "SS", Equivalence: "equivalent"}},
		{"identifier-type", "https://fhir.cerner.com/" + oracleTenant + "/codeSet/4", "10", conceptmap.Target{System: v2 + "0203", Code: "MR", Equivalence: "equivalent"}},
		{"omb-race", "urn:oid:2.16.840.1.113883.6.238", "2039-6", conceptmap.Target{System: "urn:oid:2.16.840.1.113883.6.238", Code: "2028-9", Equivalence: "wider"}},      // Japanese → Asian
		{"omb-race", "urn:oid:2.16.840.1.113883.6.238", "2118-8", conceptmap.Target{System: "urn:oid:2.16.840.1.113883.6.238", Code: "2106-3", Equivalence: "wider"}},      // Middle Eastern or North African → White
		{"omb-race", "urn:oid:2.16.840.1.113883.6.238", "2054-5", conceptmap.Target{System: "urn:oid:2.16.840.1.113883.6.238", Code: "2054-5", Equivalence: "equal"}},      // a category
		{"omb-race", "urn:oid:2.16.840.1.113883.6.238", "2131-1", conceptmap.Target{System: "urn:oid:2.16.840.1.113883.6.238", Code: "2131-1", Equivalence: "equal"}},      // Other Race
		{"omb-ethnicity", "urn:oid:2.16.840.1.113883.6.238", "2148-5", conceptmap.Target{System: "urn:oid:2.16.840.1.113883.6.238", Code: "2135-2", Equivalence: "wider"}}, // Mexican
		{"omb-ethnicity", "urn:oid:2.16.840.1.113883.6.238", "2186-5", conceptmap.Target{System: "urn:oid:2.16.840.1.113883.6.238", Code: "2186-5", Equivalence: "equal"}},
	} {
		got, ok := mustGet(t, set, tc.id).Translate(tc.system, tc.code)
		if !ok || got.System != tc.want.System || got.Code != tc.want.Code || got.Equivalence != tc.want.Equivalence || got.Fallback {
			t.Errorf("%s: Translate(%q, %q) = %+v, %v; want %+v", tc.id, tc.system, tc.code, got, ok, tc.want)
		}
	}
	// A code listed as unmatched has no translation and does not fall back.
	for _, code := range []string{"Blocked", "Discontinued", "DC"} {
		if got, ok := mustGet(t, set, "appointment-status").Translate(v2+"0278", code); ok {
			t.Errorf("appointment-status: %s translated to %+v; it is listed as unmatched", code, got)
		}
	}
	// A code of another system is not looked up in this system's groups.
	if got, ok := mustGet(t, set, "administrative-gender").Translate("http://example.org/other-sex", "F"); ok {
		t.Errorf("a code of an unknown system translated to %+v", got)
	}
	// identifier-type lets any v2 0203 code pass as it is.
	got, ok := mustGet(t, set, "identifier-type").Translate(v2+"0203", "WC")
	if !ok || got.Code != "WC" || got.System != v2+"0203" || !got.Fallback {
		t.Errorf("identifier-type: v2 WC = %+v, %v; want WC passed through by the unmapped rule", got, ok)
	}
}

// Epic mints a legal-sex code system per installation; the group's source
// pattern covers the site OIDs seen in public captures, and nothing else.
func TestEpicLegalSexPerSite(t *testing.T) {
	m := mustGet(t, shipped(t), "administrative-gender")
	for _, tc := range []struct{ system, code, want string }{
		{epicSandboxLegalSex, "female", "female"},
		{"urn:oid:1.2.840.114350.1.13.535.2.7.10.698084.130.657370.258999", "male", "male"},
		{"urn:oid:1.2.840.114350.1.13.20.3.7.10.698084.130.657370.8551999258", "Female", "female"},
		{"urn:oid:1.2.840.114350.1.13.5325.1.7.10.698084.130.768080.39128", "male", "male"},
	} {
		got, ok := m.Translate(tc.system, tc.code)
		if !ok || got.Code != tc.want || got.System != gender {
			t.Errorf("Translate(%s, %s) = %+v, %v; want %s", tc.system, tc.code, got, ok, tc.want)
		}
	}
	for _, system := range []string{
		"urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.131.657370.19999000", // another Epic list
		"urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.130",                 // no list part
		"urn:oid:2.16.840.1.113883.5.1",
	} {
		if got, ok := m.Translate(system, "female"); ok {
			t.Errorf("Translate(%s, female) = %+v; the pattern should not match", system, got)
		}
	}
	// An unlisted category at a site is unmapped, so the rule's policy decides.
	if got, ok := m.Translate(epicSandboxLegalSex, "nonbinary"); ok {
		t.Errorf("an unlisted Epic category translated to %+v", got)
	}
}

func TestReverse(t *testing.T) {
	set := shipped(t)
	g := mustGet(t, set, "administrative-gender")
	r := g.Reverse()
	if !r.Reversed() || g.Reversed() || r.URL() != g.URL() || g.Reverse() != r {
		t.Fatalf("Reverse: reversed=%v (forward %v), url %s, built once %v", r.Reversed(), g.Reversed(), r.URL(), g.Reverse() == r)
	}
	for _, tc := range []struct{ code, target, want string }{
		{"female", v2 + "0001", "F"},
		{"other", v2 + "0001", "O"}, // equivalent O beats wider A and inexact N
		{"unknown", v2 + "0001", "U"},
		{"male", epicSandboxLegalSex, "male"}, // lower case listed first and equivalent
		{"female", gender, "female"},
	} {
		got, ok := r.TranslateTo(gender, tc.code, tc.target)
		if !ok || got.Code != tc.want || got.System != tc.target {
			t.Errorf("reverse TranslateTo(%s → %s) = %+v, %v; want %s", tc.code, tc.target, got, ok, tc.want)
		}
	}
	// Translate takes the first group: v2.
	if got, _ := r.Translate(gender, "male"); got.Code != "M" {
		t.Errorf("reverse Translate(male) = %+v, want M", got)
	}
	// Equivalences turn around: v2 A → other is wider, so other → A is narrower.
	var seen bool
	for _, e := range r.TranslateAll(gender, "other") {
		if e.Code == "A" {
			seen = true
			if e.Equivalence != "narrower" {
				t.Errorf("reverse other → A equivalence %s, want narrower", e.Equivalence)
			}
		}
	}
	if !seen {
		t.Error("reverse TranslateAll(other) lacks A")
	}
	// Oracle write-back: v2 MR goes back to code 10 (equivalent), not 2 (wider).
	o := mustGet(t, set, "oracle-health-codesets").Reverse()
	if got, ok := o.Translate(v2+"0203", "MR"); !ok || got.Code != "10" || got.System != "https://fhir.cerner.com/"+oracleTenant+"/codeSet/4" {
		t.Errorf("oracle reverse MR = %+v, %v; want codeSet/4 code 10", got, ok)
	}
	// Every usable forward pair comes back through the reverse.
	for _, m := range set.All() {
		rev := m.Reverse()
		for _, grp := range m.Groups() {
			for _, e := range grp.Elements {
				for _, tg := range e.Targets {
					if tg.Code == "" || tg.Equivalence == "unmatched" || tg.Equivalence == "disjoint" {
						continue
					}
					back := rev.TranslateAll(grp.Target, tg.Code)
					if !slices.ContainsFunc(back, func(b conceptmap.Target) bool { return b.Code == e.Code && b.System == grp.Source }) {
						t.Errorf("%s: %s|%s → %s|%s does not come back", m.URL(), grp.Source, e.Code, grp.Target, tg.Code)
					}
				}
			}
		}
	}
	// A reversed "provided" rule still passes codes through.
	if got, ok := mustGet(t, set, "identifier-type").Reverse().Translate(v2+"0203", "PPN"); !ok || got.Code != "PPN" {
		t.Errorf("identifier-type reverse PPN = %+v, %v", got, ok)
	}
}

func TestTranslateAllOracleMultiTarget(t *testing.T) {
	m := mustGet(t, shipped(t), "oracle-health-codesets")
	sys := "https://fhir.cerner.com/" + oracleTenant + "/codeSet/72"
	all := m.TranslateAll(sys, "3623994") // SpO2
	var codes []string
	for _, a := range all {
		codes = append(codes, a.Code)
	}
	if !slices.Contains(codes, "59408-5") || !slices.Contains(codes, "2708-6") {
		t.Errorf("SpO2 targets %v, want 59408-5 and 2708-6", codes)
	}
	if best, _ := m.Translate(sys, "3623994"); best.Code != "59408-5" {
		t.Errorf("SpO2 best target %+v, want the equivalent 59408-5", best)
	}
	// The conflicting code is left out.
	if got := m.TranslateAll(sys, "703535"); len(got) != 0 {
		t.Errorf("703535 translated to %+v; Oracle's examples contradict each other on it", got)
	}
	// Another tenant's codeSet URL matches through the source pattern.
	if got, ok := m.Translate("https://fhir.cerner.com/2c400054-42d8-4e74-87b7-80b5bd5fde9f/codeSet/40", "156"); !ok || got.Code != "MTH" {
		t.Errorf("another tenant's codeSet 40 code 156 = %+v, %v; want MTH", got, ok)
	}
}

// testMaps builds maps in memory for policy and error tests.
func testMaps(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys["maps/"+name] = &fstest.MapFile{Data: []byte(body)}
	}
	return fsys
}

const provFixed = `{"resourceType":"ConceptMap","url":"http://example.org/cm/fallbacks","status":"active",
 "group":[
  {"source":"http://example.org/a","target":"http://example.org/b","element":[{"code":"x","target":[{"code":"X","equivalence":"equivalent"}]}],"unmapped":{"mode":"provided"}},
  {"source":"http://example.org/c","target":"http://example.org/b","element":[{"code":"y","target":[{"code":"Y","equivalence":"equal"}]}],"unmapped":{"mode":"fixed","code":"UNK","display":"unknown"}}
 ]}`

func TestUnmappedPolicies(t *testing.T) {
	set := shipped(t)
	g := mustGet(t, set, "administrative-gender")
	var counter conceptmap.Unmapped

	got, err := g.Resolve(v2+"0001", "F", conceptmap.PolicyError, "", &counter)
	if err != nil || got.Code != "female" {
		t.Fatalf("Resolve(F) = %+v, %v", got, err)
	}
	_, err = g.Resolve(v2+"0001", "X", conceptmap.PolicyError, "", &counter)
	var ue *conceptmap.UnmappedError
	if !errors.As(err, &ue) || ue.Code != "X" || ue.System != v2+"0001" || ue.MapURL != g.URL() {
		t.Errorf("PolicyError: err %v, want *UnmappedError for X", err)
	}
	got, err = g.Resolve(v2+"0001", "X", conceptmap.PolicyPassThrough, "", &counter)
	if err != nil || got.Code != "X" || got.System != v2+"0001" || !got.Fallback {
		t.Errorf("PolicyPassThrough = %+v, %v", got, err)
	}
	got, err = g.Resolve(epicSandboxLegalSex, "nonbinary", conceptmap.PolicyDefault, "unknown", &counter)
	if err != nil || got.Code != "unknown" || got.System != gender || !got.Fallback {
		t.Errorf("PolicyDefault = %+v, %v", got, err)
	}
	if _, err := g.Resolve(v2+"0001", "X", conceptmap.Policy("drop"), "", &counter); err == nil {
		t.Error("an unknown policy was accepted")
	}
	counts := counter.Counts()
	want := map[string]int{
		conceptmap.Key(g.URL(), v2+"0001", "X"):                   3,
		conceptmap.Key(g.URL(), epicSandboxLegalSex, "nonbinary"): 1,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) || counter.Total() != 4 {
		t.Errorf("counts %v (total %d), want %v (4): every unmapped code counted once per Resolve, mapped ones never", counts, counter.Total(), want)
	}
	if e := counter.Entries(); len(e) != 2 || e[0].Code != "X" || e[0].Count != 3 || e[1].Code != "nonbinary" {
		t.Errorf("Entries() = %+v", e)
	}

	// The map's own unmapped rule decides before the policy, and still counts.
	fs := testMaps(map[string]string{"f.json": provFixed})
	fset, err := conceptmap.Load(fs, "maps")
	if err != nil {
		t.Fatal(err)
	}
	fm, _ := fset.Get("http://example.org/cm/fallbacks")
	var c2 conceptmap.Unmapped
	got, err = fm.Resolve("http://example.org/a", "zz", conceptmap.PolicyError, "", &c2)
	if err != nil || got.Code != "zz" || got.System != "http://example.org/b" || got.Equivalence != "equal" || !got.Fallback {
		t.Errorf("provided: %+v, %v", got, err)
	}
	got, err = fm.Resolve("http://example.org/c", "zz", conceptmap.PolicyError, "", &c2)
	if err != nil || got.Code != "UNK" || got.Display != "unknown" || got.Equivalence != "inexact" || !got.Fallback {
		t.Errorf("fixed: %+v, %v", got, err)
	}
	if got, ok := fm.Translate("http://example.org/c", "y"); !ok || got.Code != "Y" || got.Fallback {
		t.Errorf("listed code under a fixed rule: %+v, %v", got, ok)
	}
	if c2.Total() != 2 {
		t.Errorf("fallback translations counted %d, want 2", c2.Total())
	}
	// Without a system, the first group that has a rule applies.
	if got, ok := fm.Translate("", "zz"); !ok || got.Code != "zz" {
		t.Errorf("Translate(\"\", zz) = %+v, %v; want the first group's provided rule", got, ok)
	}
	// A nil counter is allowed.
	if _, err := fm.Resolve("http://example.org/a", "q", conceptmap.PolicyError, "", nil); err != nil {
		t.Error(err)
	}

	for _, s := range []string{"error", "pass-through", "default"} {
		if p, err := conceptmap.ParsePolicy(s); err != nil || string(p) != s || !p.Valid() {
			t.Errorf("ParsePolicy(%q) = %q, %v", s, p, err)
		}
	}
	if _, err := conceptmap.ParsePolicy("ignore"); err == nil {
		t.Error("ParsePolicy accepted ignore")
	}
}

func TestUnmappedCountsConcurrently(t *testing.T) {
	var u conceptmap.Unmapped
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				u.Add("http://example.org/cm", "sys", fmt.Sprintf("c%d", (i+w)%10))
				if i%500 == 0 {
					_ = u.Counts() // readers run alongside writers
					_ = u.Total()
				}
			}
		}()
	}
	wg.Wait()
	if u.Total() != workers*each {
		t.Fatalf("Total() = %d, want %d", u.Total(), workers*each)
	}
	sum := 0
	for k, v := range u.Counts() {
		if !strings.HasPrefix(k, "http://example.org/cm|sys|c") {
			t.Errorf("key %q", k)
		}
		if v != workers*each/10 {
			t.Errorf("%s counted %d, want %d", k, v, workers*each/10)
		}
		sum += v
	}
	if sum != workers*each {
		t.Errorf("counts add up to %d", sum)
	}
}

// Translations run concurrently on one map (and its lazily built reverse).
func TestTranslateConcurrently(t *testing.T) {
	m := mustGet(t, shipped(t), "marital-status")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if got, ok := m.Translate(v2+"0002", "M"); !ok || got.Code != "M" {
					t.Errorf("Translate(M) = %+v", got)
					return
				}
				if got, ok := m.Reverse().Translate(marital, "T"); !ok || got.Code != "P" {
					t.Errorf("reverse Translate(T) = %+v, want P (equivalent)", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestSetWith(t *testing.T) {
	set := shipped(t)
	override := `{"resourceType":"ConceptMap","url":"` + base + `administrative-gender","status":"active","name":"SiteGender",
	 "group":[{"source":"urn:oid:1.2.840.114350.1.13.999.1.7.10.698084.130.1.1","target":"` + gender + `",
	  "element":[{"code":"X","target":[{"code":"other","equivalence":"wider"}]}]}]}`
	site, err := conceptmap.Load(testMaps(map[string]string{"gender.json": override}), "maps")
	if err != nil {
		t.Fatal(err)
	}
	merged := set.With(site)
	if n := len(merged.All()); n != len(set.All()) {
		t.Errorf("merged set has %d maps, want %d", n, len(set.All()))
	}
	m := mustGet(t, merged, "administrative-gender")
	if m.Name() != "SiteGender" {
		t.Errorf("the override did not replace the shipped map")
	}
	if mustGet(t, set, "administrative-gender").Name() == "SiteGender" {
		t.Error("With changed the base set")
	}
}

func TestLoadErrors(t *testing.T) {
	ok := func(url string) string {
		return `{"resourceType":"ConceptMap","url":"` + url + `","status":"active","group":[{"source":"http://a","target":"http://b","element":[{"code":"x","target":[{"code":"y","equivalence":"equivalent"}]}]}]}`
	}
	withUnmapped := func(unmapped string) string {
		return strings.TrimSuffix(ok("http://x/1"), "}]}") + `,"unmapped":` + unmapped + `}]}`
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{"syntax", map[string]string{"bad.json": "{\n  \"resourceType\": \"ConceptMap\",\n  \"url\": ,\n}"}, []string{"maps/bad.json:3:10:"}},
		{"wrong type", map[string]string{"t.json": "{\"resourceType\":\"ConceptMap\",\n\"group\":{}}"}, []string{"maps/t.json:2:"}},
		{"not a ConceptMap", map[string]string{"p.json": `{"resourceType":"Patient"}`}, []string{"maps/p.json: resourceType is \"Patient\""}},
		{"duplicate url", map[string]string{"a.json": ok("http://x/1"), "b.json": ok("http://x/1")}, []string{"maps/b.json: url http://x/1 is also the url of maps/a.json"}},
		{"no url", map[string]string{"a.json": ok("")}, []string{"maps/a.json: url is missing"}},
		{"unknown element", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `"status"`, `"colour":"red","status"`, 1)}, []string{"maps/a.json: ConceptMap.colour: not valid FHIR R4"}},
		{"no source or target", map[string]string{"a.json": strings.NewReplacer(`"source":"http://a",`, "", `"target":"http://b",`, "").Replace(ok("http://x/1"))},
			[]string{"group[0]: source is missing", "group[0]: target is missing"}},
		{"bad equivalence", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `"equivalent"`, `"same"`, 1)},
			[]string{"group[0].element[0].target[0]: equivalence \"same\" is not in http://hl7.org/fhir/ValueSet/concept-map-equivalence"}},
		{"narrower without comment", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `"equivalent"`, `"narrower"`, 1)}, []string{"cmd-1"}},
		{"no element code", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `"code":"x",`, "", 1)}, []string{"group[0].element[0]: code is missing"}},
		{"target without code", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `"code":"y",`, "", 1)}, []string{"target[0]: code is missing"}},
		{"code listed twice", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `"element":[`, `"element":[{"code":"x","target":[{"code":"z","equivalence":"equal"}]},`, 1)},
			[]string{"group[0].element[1]: code \"x\" is listed again"}},
		{"fixed without code", map[string]string{"a.json": withUnmapped(`{"mode":"fixed"}`)}, []string{"cmd-2"}},
		{"other-map", map[string]string{"a.json": withUnmapped(`{"mode":"other-map","url":"http://x/2"}`)}, []string{"other-map is not supported"}},
		{"dependsOn", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `"equivalence":"equivalent"`, `"equivalence":"equivalent","dependsOn":[{"property":"http://p","value":"v"}]`, 1)}, []string{"dependsOn and product are not supported"}},
		{"pattern not matching its source", map[string]string{"a.json": strings.Replace(ok("http://x/1"), `{"source"`, `{"extension":[{"url":"`+conceptmap.SourcePatternExtension+`","valueString":"http://z/*"}],"source"`, 1)},
			[]string{"group[0].extension[0]: source pattern \"http://z/*\" does not match"}},
		{"two files, both reported", map[string]string{"a.json": ok(""), "b.json": "{"}, []string{"maps/a.json: url is missing", "maps/b.json:1:2:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := conceptmap.Load(testMaps(tc.files), "maps")
			if err == nil {
				t.Fatal("Load accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
	if _, err := conceptmap.Load(fstest.MapFS{}, "nowhere"); err == nil {
		t.Error("a missing folder was accepted")
	}
	empty, err := conceptmap.Load(fstest.MapFS{"maps/readme.txt": {Data: []byte("x")}}, "maps")
	if err != nil || len(empty.All()) != 0 {
		t.Errorf("a folder without maps: %v, %v", empty, err)
	}
}

// Groups returns copies: changing them does not change the map.
func TestGroupsAreCopies(t *testing.T) {
	m := mustGet(t, shipped(t), "administrative-gender")
	gs := m.Groups()
	gs[0].Elements[0].Targets[0].Code = "changed"
	gs[1].SourcePatterns[0] = "changed"
	if got, _ := m.Translate(v2+"0001", "F"); got.Code != "female" {
		t.Errorf("editing Groups() changed the map: %+v", got)
	}
	if m.Groups()[1].SourcePatterns[0] == "changed" {
		t.Error("editing Groups() changed the source patterns")
	}
}
