package eclinicalworks

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/flavor"
)

func TestInfoAndDiscovery(t *testing.T) {
	f := New()
	info := f.Info()
	if info.Name != Name || info.PageParam() != "page" || len(info.Creates)+len(info.Updates)+len(info.Patches) != 0 ||
		info.Serves("Appointment") || !info.Serves("Observation") || info.VendorAPI != flavor.VendorAPIECWWriteback || !info.NoRetryAfter ||
		info.TokenTTL != 300*time.Second || info.V1Scopes {
		t.Fatalf("info %+v", info)
	}
	if id := f.NewID("Patient", rand.New(rand.NewPCG(1, 2))); id == "" {
		t.Fatal("empty id")
	}
	e := flavor.Endpoint{Tenant: "abcdef", BaseURL: "http://127.0.0.1/abcdef/fhir/r4", TokenURL: "http://127.0.0.1/abcdef/oauth/oauth2/token", Now: time.Now(), Strict: true}
	b, err := f.CapabilityStatement(e)
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		Software map[string]string `json:"software"`
		Rest     []struct {
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(b, &cs); err != nil || cs.Software["name"] != SoftwareName || cs.Software["version"] != SoftwareVersion {
		t.Fatalf("software %v %v", cs.Software, err)
	}
	for _, r := range cs.Rest[0].Resource {
		for _, in := range r.Interaction {
			if in.Code != "read" && in.Code != "search-type" {
				t.Fatalf("%s declares %s: the facade is read-only", r.Type, in.Code)
			}
		}
	}
	b, err = f.SmartConfiguration(e)
	if err != nil {
		t.Fatal(err)
	}
	var sc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(b, &sc); err != nil || sc.TokenEndpoint != e.TokenURL {
		t.Fatalf("smart configuration %+v %v", sc, err)
	}
}
