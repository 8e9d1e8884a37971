package v2fhir_test

import (
	"encoding/json"
	"testing"

	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
)

func TestRepoint(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"subject",
			`{"resourceType":"Observation","subject":{"reference":"Patient/old"},"status":"final"}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/new"},"status":"final"}`},
		{"every depth, formatting kept",
			"{ \"contained\": [ {\"resourceType\":\"Provenance\", \"target\": [ { \"reference\" : \"Patient/old\" } ] } ],\n \"extension\":[{\"url\":\"x\",\"valueReference\":{\"reference\":\"Patient/old\",\"display\":\"Patient/old\"}}]}",
			"{ \"contained\": [ {\"resourceType\":\"Provenance\", \"target\": [ { \"reference\" : \"Patient/new\" } ] } ],\n \"extension\":[{\"url\":\"x\",\"valueReference\":{\"reference\":\"Patient/new\",\"display\":\"Patient/old\"}}]}"},
		{"versioned",
			`{"subject":{"reference":"Patient/old/_history/3"}}`,
			`{"subject":{"reference":"Patient/new"}}`},
		{"absolute",
			`{"subject":{"reference":"https://ehr.example/fhir/Patient/old"}}`,
			`{"subject":{"reference":"https://ehr.example/fhir/Patient/new"}}`},
		{"escaped slash",
			`{"subject":{"reference":"Patient\/old"}}`,
			`{"subject":{"reference":"Patient/new"}}`},
		{"several",
			`{"a":[{"reference":"Patient/old"},{"reference":"Patient/other"},{"reference":"Patient/old"}]}`,
			`{"a":[{"reference":"Patient/new"},{"reference":"Patient/other"},{"reference":"Patient/new"}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, changed := v2fhir.Repoint([]byte(c.in), "Patient", "old", "new")
			if !changed || string(got) != c.want {
				t.Errorf("Repoint = %v\n%s\nwant\n%s", changed, got, c.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not JSON: %s", got)
			}
		})
	}
}

func TestRepointLeavesOthersAlone(t *testing.T) {
	for _, in := range []string{
		`{"subject":{"reference":"Patient/old2"}}`,
		`{"subject":{"reference":"Patient/older"},"note":"Patient/old"}`,
		`{"subject":{"reference":"Group/old"}}`,
		`{"subject":{"reference":"xPatient/old"}}`,
		`{"subject":{"display":"Patient/old"}}`,
		`{"reference":{"reference":"Patient/ol"}}`,
		`{"subject":{"reference":"Patient/old"}`, // not JSON
		`{"subject":{"reference":"Patient/old"}} trailing`,
		`not json old`,
		``,
	} {
		b := []byte(in)
		got, changed := v2fhir.Repoint(b, "Patient", "old", "new")
		if changed || string(got) != in {
			t.Errorf("Repoint(%s) = %v, %s", in, changed, got)
		}
		if len(b) > 0 && &got[0] != &b[0] {
			t.Errorf("Repoint(%s) returned a copy when nothing changed", in)
		}
	}
	b := []byte(`{"subject":{"reference":"Patient/old"}}`)
	for _, args := range [][3]string{{"", "old", "new"}, {"Patient", "", "new"}, {"Patient", "old", ""}, {"Patient", "old", "old"}} {
		if _, changed := v2fhir.Repoint(b, args[0], args[1], args[2]); changed {
			t.Errorf("Repoint(%q) changed the body", args)
		}
	}
}

func FuzzRepoint(f *testing.F) {
	f.Add([]byte(`{"subject":{"reference":"Patient/old"},"a":[1,true,null,"x",{"reference":"Patient/old/_history/1"}]}`))
	f.Add([]byte(`{"reference":"Patient\/old","b":"\"\\u00e9"}`))
	f.Add([]byte(`[[[[{"reference":"Patient/old"}]]]]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, changed := v2fhir.Repoint(b, "Patient", "old", "new")
		if !changed {
			if string(got) != string(b) {
				t.Fatal("unchanged but different")
			}
			return
		}
		if json.Valid(b) && !json.Valid(got) {
			t.Fatalf("valid JSON became invalid: %s", got)
		}
		if again, changedAgain := v2fhir.Repoint(got, "Patient", "old", "new"); changedAgain {
			t.Fatalf("a second Repoint still changed %s into %s", got, again)
		}
	})
}
