package synthea

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

func syntheaDir(t *testing.T) string { return repo.Shared(t, "testdata/synthea-r4") }

var served = map[string]bool{
	"Patient": true, "Practitioner": true, "Organization": true, "Location": true, "Encounter": true,
	"Condition": true, "Observation": true, "AllergyIntolerance": true, "MedicationRequest": true,
}

func TestLoadDirRealBundles(t *testing.T) {
	dir := syntheaDir(t)
	got := map[string]map[string][]byte{}
	st, err := LoadDir(dir, func(rt string) bool { return served[rt] }, func(r Resource) error {
		if got[r.Type] == nil {
			got[r.Type] = map[string][]byte{}
		}
		if _, dup := got[r.Type][r.ID]; dup {
			t.Errorf("%s/%s handed over twice", r.Type, r.ID)
		}
		got[r.Type][r.ID] = r.Body
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Loaded["Patient"] < 20 || st.Loaded["Observation"] < 1000 || st.Loaded["Encounter"] < 100 {
		t.Fatalf("too little loaded: %+v", st.Loaded)
	}
	if st.Skipped == 0 || st.Duplicates == 0 || st.NotBundles == 0 {
		t.Errorf("expected skipped types (Claim...), duplicate practitioners and a non-bundle file: %+v", st)
	}
	if _, ok := got["Claim"]; ok {
		t.Error("Claim kept")
	}
	refRE := regexp.MustCompile(`"reference":"([^"]*)"`)
	checked := 0
	for rt, m := range got {
		for id, b := range m {
			if strings.Contains(string(b), `"reference":"urn:uuid:`) {
				t.Fatalf("%s/%s still has a urn:uuid reference", rt, id)
			}
			for _, ref := range refRE.FindAllStringSubmatch(string(b), -1) {
				typ, rid, ok := strings.Cut(ref[1], "/")
				if strings.HasPrefix(ref[1], "#") {
					continue // contained
				}
				if !ok {
					t.Fatalf("%s/%s reference %q is not Type/id", rt, id, ref[1])
				}
				if served[typ] {
					if _, exists := got[typ][rid]; !exists {
						t.Errorf("%s/%s references %s which was not loaded", rt, id, ref[1])
					}
					checked++
				}
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d references checked", checked)
	}
}

func TestReadBundleConditionalReference(t *testing.T) {
	b := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1"}},
	 {"fullUrl":"urn:uuid:d1","resource":{"resourceType":"Practitioner","id":"d1","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"123"}]}},
	 {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","id":"e1","subject":{"reference":"urn:uuid:p1"},
	   "participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"}}],
	   "serviceProvider":{"reference":"Organization?identifier=x|y"}}},
	 {"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Claim","id":"c1"}}]}`)
	rs, skipped, ok, err := ReadBundle(b, func(rt string) bool { return rt != "Claim" })
	if err != nil || !ok || skipped != 1 || len(rs) != 3 {
		t.Fatalf("rs=%d skipped=%d ok=%v err=%v", len(rs), skipped, ok, err)
	}
	enc := string(rs[2].Body)
	for _, want := range []string{`"subject":{"reference":"Patient/p1"}`, `"reference":"Practitioner/d1"`, `"reference":"Organization?identifier=x|y"`} {
		if !strings.Contains(enc, want) {
			t.Errorf("missing %s in %s", want, enc)
		}
	}
	if _, _, ok, err := ReadBundle([]byte(`{"resourceType":"Group"}`), nil); ok || err != nil {
		t.Errorf("Group: ok=%v err=%v", ok, err)
	}
	if _, _, _, err := ReadBundle([]byte(`{`), nil); err == nil {
		t.Error("broken JSON accepted")
	}
}
