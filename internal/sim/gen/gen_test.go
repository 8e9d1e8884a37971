package gen

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"testing"
	"time"
	"unicode/utf8"
)

func generateAll(t *testing.T, opt Options) ([]Resource, [][]byte) {
	t.Helper()
	var rs []Resource
	var bodies [][]byte
	_, err := Generate(opt, nil, func(r Resource) error {
		b, err := r.Obj.Bytes()
		if err != nil {
			return fmt.Errorf("%s/%s: %w", r.Type, r.ID, err)
		}
		rs = append(rs, r)
		bodies = append(bodies, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs, bodies
}

func digest(rs []Resource, bodies [][]byte) [32]byte {
	h := sha256.New()
	for i, r := range rs {
		fmt.Fprintf(h, "%s|%s|%s|", r.Type, r.ID, r.LastUpdated.Format(time.RFC3339Nano))
		h.Write(bodies[i])
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestGenerateDeterministic(t *testing.T) {
	opt := Options{Tenant: "t1", Seed: 42, Patients: 60}
	a, ab := generateAll(t, opt)
	b, bb := generateAll(t, opt)
	if len(a) != len(b) {
		t.Fatalf("same seed gave %d and %d resources", len(a), len(b))
	}
	for i := range ab {
		if !bytes.Equal(ab[i], bb[i]) || a[i].LastUpdated != b[i].LastUpdated {
			t.Fatalf("resource %d differs between runs with the same seed:\n%s\n%s", i, ab[i], bb[i])
		}
	}
	c, cb := generateAll(t, Options{Tenant: "t1", Seed: 43, Patients: 60})
	if digest(a, ab) == digest(c, cb) {
		t.Fatal("different seeds gave identical data")
	}
}

func TestGenerateRealism(t *testing.T) {
	opt := Options{Tenant: "t1", Seed: 7, Patients: 300}
	rs, bodies := generateAll(t, opt)
	opt = opt.withDefaults()

	ids := map[string]bool{}
	byType := map[string]int{}
	for _, r := range rs {
		key := r.Type + "/" + r.ID
		if ids[key] {
			t.Fatalf("duplicate id %s", key)
		}
		ids[key] = true
		byType[r.Type]++
		if r.LastUpdated.After(opt.Anchor) {
			t.Errorf("%s lastUpdated %v after anchor", key, r.LastUpdated)
		}
	}
	for _, rt := range []string{"Patient", "Practitioner", "Organization", "Location", "Appointment", "Schedule", "Slot", "Coverage", "Encounter", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest", "DocumentReference"} {
		if byType[rt] == 0 {
			t.Errorf("no %s generated", rt)
		}
	}
	if byType["Patient"] != 300 {
		t.Errorf("patients = %d, want 300", byType["Patient"])
	}
	perPatient := float64(len(rs)-byType["Slot"]) / 300
	if perPatient < 10 || perPatient > 40 {
		t.Errorf("%.1f non-slot resources per patient, want a realistic 10..40", perPatient)
	}

	refRE := regexp.MustCompile(`"reference":"([^"]*)"`)
	phoneRE := regexp.MustCompile(`^\(\d{3}\) 555-\d{4}$`)
	emailRE := regexp.MustCompile(`^[a-z0-9.]+@([a-z]+\.)?example\.(com|org|net)$`)
	given := map[string]bool{}
	family := map[string]bool{}
	genders := map[string]int{}
	cities := map[string]bool{}
	mrns := map[string]bool{}
	for i, r := range rs {
		for _, m := range refRE.FindAllSubmatch(bodies[i], -1) {
			if !ids[string(m[1])] {
				t.Errorf("%s/%s references %s which does not exist", r.Type, r.ID, m[1])
			}
		}
		var doc map[string]any
		if err := json.Unmarshal(bodies[i], &doc); err != nil {
			t.Fatalf("%s/%s is not valid JSON: %v", r.Type, r.ID, err)
		}
		switch r.Type {
		case "Patient":
			var p struct {
				Name []struct {
					Family string
					Given  []string
				}
				Gender     string
				BirthDate  string
				Telecom    []struct{ System, Value string }
				Address    []struct{ City, State, PostalCode string }
				Identifier []struct{ Value string }
			}
			if err := json.Unmarshal(bodies[i], &p); err != nil {
				t.Fatal(err)
			}
			given[p.Name[0].Given[0]] = true
			family[p.Name[0].Family] = true
			genders[p.Gender]++
			bd, err := time.Parse("2006-01-02", p.BirthDate)
			if err != nil || bd.After(opt.Anchor) || opt.Anchor.Sub(bd) > 110*365*24*time.Hour {
				t.Errorf("implausible birthDate %q", p.BirthDate)
			}
			for _, tc := range p.Telecom {
				if tc.System == "phone" && !phoneRE.MatchString(tc.Value) {
					t.Errorf("phone %q has the wrong shape", tc.Value)
				}
				if tc.System == "email" && !emailRE.MatchString(tc.Value) {
					t.Errorf("email %q is not in an example domain", tc.Value)
				}
			}
			if len(p.Address) != 1 || len(p.Address[0].PostalCode) != 5 || p.Address[0].State == "" {
				t.Errorf("bad address %+v", p.Address)
			}
			cities[p.Address[0].City] = true
			if mrns[p.Identifier[0].Value] {
				t.Errorf("duplicate MRN %s", p.Identifier[0].Value)
			}
			mrns[p.Identifier[0].Value] = true
		case "Practitioner":
			var p struct {
				Identifier []struct{ System, Value string }
			}
			_ = json.Unmarshal(bodies[i], &p)
			npi := p.Identifier[0].Value
			if len(npi) != 10 || NPICheckDigit(npi[:9]) != int(npi[9]-'0') {
				t.Errorf("NPI %q has a bad check digit", npi)
			}
		case "Appointment", "Slot":
			var a struct{ Start, End string }
			_ = json.Unmarshal(bodies[i], &a)
			s, err1 := time.Parse(time.RFC3339, a.Start)
			e, err2 := time.Parse(time.RFC3339, a.End)
			if err1 != nil || err2 != nil || !e.After(s) {
				t.Errorf("%s/%s has bad start/end %q %q", r.Type, r.ID, a.Start, a.End)
			}
		case "DocumentReference":
			if !bytes.Contains(bodies[i], []byte(`"data":"`)) {
				t.Errorf("note without data")
			}
		case "Observation":
			if !bytes.Contains(bodies[i], []byte(`"system":"http://loinc.org"`)) {
				t.Errorf("observation without LOINC code")
			}
		case "MedicationRequest":
			if !bytes.Contains(bodies[i], []byte(`"system":"http://www.nlm.nih.gov/research/umls/rxnorm"`)) {
				t.Errorf("medication request without RxNorm code")
			}
		}
	}
	if len(given) < 60 || len(family) < 80 {
		t.Errorf("names do not vary enough: %d given, %d family among 300 patients", len(given), len(family))
	}
	if genders["female"] < 100 || genders["male"] < 100 {
		t.Errorf("gender mix implausible: %v", genders)
	}
	if len(cities) < 20 {
		t.Errorf("only %d cities", len(cities))
	}
}

func TestNPICheckDigit(t *testing.T) {
	// The worked example from the NPI check-digit specification: 123456789 -> 3.
	if d := NPICheckDigit("123456789"); d != 3 {
		t.Fatalf("check digit of 123456789 = %d, want 3", d)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		n := NPI(rng, '1')
		if NPICheckDigit(n[:9]) != int(n[9]-'0') {
			t.Fatalf("NPI %s invalid", n)
		}
	}
}

func TestObjRoundTrip(t *testing.T) {
	in := []byte(`{"resourceType":"Patient","id":"x","n":1.50,"a":[true,null,"q\"\u2028"],"o":{"z":1,"b":2}}`)
	o, err := ParseObj(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := o.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"x","n":1.50,"a":[true,null,"q\"\u2028"],"o":{"z":1,"b":2}}`
	if string(out) != want {
		t.Fatalf("round trip:\n got %s\nwant %s", out, want)
	}
	o.SetAfter("id", "meta", O("versionId", "2"))
	o.Delete("a")
	out, _ = o.Bytes()
	if string(out) != `{"resourceType":"Patient","id":"x","meta":{"versionId":"2"},"n":1.50,"o":{"z":1,"b":2}}` {
		t.Fatalf("edit: %s", out)
	}
	if _, err := ParseObj([]byte(`[1]`)); err == nil {
		t.Fatal("array accepted as object")
	}
	if _, err := ParseObj([]byte(`{"a":1} x`)); err == nil {
		t.Fatal("trailing data accepted")
	}
}

func BenchmarkGenerate(b *testing.B) {
	n := 0
	for b.Loop() {
		st, err := Generate(Options{Seed: 1, Patients: 100}, nil, func(r Resource) error {
			_, err := r.Obj.Bytes()
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		n += st.Total()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
}

func FuzzParseObj(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":[]}`, `{"a":"\u00e9\ud83d\ude00\n\t\"\\\/"}`, `{"n":-0.5e+10,"m":0,"k":12.250}`,
		`{"a":{"b":{"c":[1,[2,[3]]]}}}`, `{"a":true,"b":false,"c":null}`, `{"a":1,}`, `{"a" 1}`, `[1]`, `{"a":01}`,
		`{"a":"\x01"}`, `{"a":"\ud800"}`, ` {"a" : 1 } `, `{"a":1} {}`, `{"a":tru}`, `{"a":-}`, `{"a":1.}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		o, err := ParseObj(in)
		var ref any
		refErr := json.Unmarshal(in, &ref)
		_, isObj := ref.(map[string]any)
		if refErr != nil || !isObj {
			if err == nil {
				t.Fatalf("accepted %q, which encoding/json rejects or is not an object", in)
			}
			return
		}
		if err != nil {
			t.Fatalf("rejected valid object %q: %v", in, err)
		}
		if !utf8.Valid(in) {
			return
		}
		out, err := o.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		da := json.NewDecoder(bytes.NewReader(in))
		da.UseNumber()
		db := json.NewDecoder(bytes.NewReader(out))
		db.UseNumber()
		if da.Decode(&a) != nil || db.Decode(&b) != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the value:\n in %s\nout %s", in, out)
		}
	})
}
