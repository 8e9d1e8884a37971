package generic

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/flavor"
)

func TestCapabilityStatementFromFacts(t *testing.T) {
	e := flavor.Endpoint{Tenant: "t", BaseURL: "http://h/t/fhir/r4", TokenURL: "http://h/t/auth/token", Now: time.Unix(0, 0)}
	raw, err := Flavor{}.CapabilityStatement(e)
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		FHIRVersion    string `json:"fhirVersion"`
		Implementation struct{ URL string }
		Rest           []struct {
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name, Type string }
			}
		}
	}
	if err := json.Unmarshal(raw, &cs); err != nil {
		t.Fatal(err)
	}
	if cs.FHIRVersion != "4.0.1" || cs.Implementation.URL != e.BaseURL {
		t.Errorf("header: %+v", cs)
	}
	info := Flavor{}.Info()
	if len(cs.Rest[0].Resource) != len(info.ResourceTypes) {
		t.Fatalf("%d types, want %d", len(cs.Rest[0].Resource), len(info.ResourceTypes))
	}
	for _, r := range cs.Rest[0].Resource {
		var codes []string
		for _, i := range r.Interaction {
			codes = append(codes, i.Code)
		}
		sort.Strings(codes)
		want := []string{"history-instance", "read", "search-type", "vread"}
		if info.CanCreate(r.Type) {
			want = append(want, "create")
		}
		if info.CanUpdate(r.Type) {
			want = append(want, "update")
		}
		sort.Strings(want)
		if strings.Join(codes, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", r.Type, codes, want)
		}
		hasLU := false
		for _, p := range r.SearchParam {
			hasLU = hasLU || (p.Name == "_lastUpdated" && p.Type == "date")
		}
		if !hasLU {
			t.Errorf("%s does not declare _lastUpdated", r.Type)
		}
	}
}
