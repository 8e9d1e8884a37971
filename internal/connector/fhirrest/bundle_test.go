package fhirrest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// sharedDir is ../shared beside the repository root.
func sharedDir(t *testing.T) string { return repo.Shared(t, "") }

// TestDecodeBundleMatchesEncodingJSON decodes every Bundle among Oracle
// Health's published examples both ways and compares.
func TestDecodeBundleMatchesEncodingJSON(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(sharedDir(t), "fixtures", "vendors", "oracle-health", "*.json"))
	bundles := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var want fhir.Bundle
		if err := json.Unmarshal(body, &want); err != nil || want.ResourceType != "Bundle" {
			continue
		}
		bundles++
		got, err := decodeBundle(body)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		if len(got.Entry) != len(want.Entry) {
			t.Fatalf("%s: %d entries, want %d", filepath.Base(f), len(got.Entry), len(want.Entry))
		}
		for i := range want.Entry {
			if string(got.Entry[i].Resource) != string(want.Entry[i].Resource) {
				t.Fatalf("%s entry %d: resource differs", filepath.Base(f), i)
			}
			got.Entry[i].Resource, want.Entry[i].Resource = nil, nil
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("%s: decoded\n%+v\nwant\n%+v", filepath.Base(f), *got, want)
		}
	}
	if bundles < 10 {
		t.Fatalf("only %d Bundles among the fixtures", bundles)
	}
}

func TestDecodeBundleRejects(t *testing.T) {
	for body, want := range map[string]string{
		`[1,2]`:                                                     "not a JSON object",
		`{"resourceType":"Bundle","entry":{}}`:                      "entry",
		`{"resourceType":"Bundle","entry":[1]}`:                     "entry",
		`{"resourceType":"Bundle","total":"x"}`:                     "total",
		`{"resourceType":"Bundle","link":"x"}`:                      "link",
		`{"resourceType":7}`:                                        "resourceType",
		`{"resourceType":"Bundle","entry":[{"search":"Zebediah"}]}`: "entry 0.search",
		`{"resourceType":"Bundle",`:                                 "JSON",
	} {
		_, err := decodeBundle([]byte(body))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Zebediah") {
			t.Errorf("%s: err = %v, want it to mention %q", body, err, want)
		}
	}
	b, err := decodeBundle([]byte(`{"resourceType":"Bundle","type":"searchset","entry":null,"meta":null}`))
	if err != nil || b.Type != "searchset" || len(b.Entry) != 0 {
		t.Fatalf("nulls: %v %+v", err, b)
	}
}

func FuzzDecodeBundle(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"x"}],"entry":[{"fullUrl":"a","resource":{"resourceType":"Patient","id":"1"},"search":{"mode":"match"}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Member names match exactly here, case-insensitively in
		// encoding/json, so only acceptance is compared.
		_, err := decodeBundle(body)
		var want fhir.Bundle
		if werr := json.Unmarshal(body, &want); err == nil && werr != nil {
			t.Fatalf("accepted what encoding/json rejects (%v): %s", werr, body)
		}
	})
}
