// Package generic is the simulator's vendor-neutral flavour: a plain FHIR R4
// server with SMART Backend Services, UUID ids, standard HTTP semantics
// (412 on a stale If-Match, 410 for an expired page, conditional create with
// If-None-Exist) and every resource type the simulator can serve.
package generic

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
)

// Name is the flavour's name in configuration.
const Name = "generic"

// Flavor is the generic flavour.
type Flavor struct{}

// New returns the generic flavour.
func New() flavor.Flavor { return Flavor{} }

// Info implements flavor.Flavor.
func (Flavor) Info() flavor.Info {
	return flavor.Info{
		Name:          Name,
		BasePath:      "/fhir/r4",
		TokenPath:     "/auth/token",
		ResourceTypes: flavor.AllTypes(),
		DefaultCount:  50,
		MaxCount:      1000,
		Creates:       []string{"Appointment", "DocumentReference"},
		Updates:       []string{"Appointment", "DocumentReference"},
		UpdateCreate:  false,
		StaleStatus:   412,
		Writes:        flavor.Writes{ConditionalCreate: true},
		TokenTTL:      300 * time.Second,
		History:       true,
		// Bulk export at every level, HAPI-style poll URL, concurrent jobs.
		Bulk: flavor.Bulk{
			Levels:              []string{flavor.BulkSystem, flavor.BulkPatient, flavor.BulkGroup},
			StatusPath:          "/fhir/r4/$export-poll-status?_jobId={id}",
			FilePrefix:          "/fhir/r4/$export-files",
			RetryAfter:          1,
			Since:               true,
			RequiresAccessToken: true,
		},
	}
}

// NewID returns UUID-shaped ids.
func (Flavor) NewID(_ string, rng *rand.Rand) string { return gen.UUID(rng) }

// Decorate leaves generated resources in their standard shape.
func (Flavor) Decorate(string, *gen.Obj, gen.Facts) {}

// CapabilityStatement implements flavor.Flavor.
func (f Flavor) CapabilityStatement(e flavor.Endpoint) ([]byte, error) {
	cs := flavor.BuildCapability(flavor.CapabilityInput{
		Endpoint:    e,
		Info:        f.Info(),
		Software:    flavor.Software{Name: "mediflow EHR simulator", Version: "1"},
		Description: "mediflow EHR simulator (generic FHIR R4), tenant " + e.Tenant,
		Publisher:   "mediflow",
		History:     f.Info().History,
	})
	flavor.AddBulkOperations(cs, f.Info())
	out, err := cs.Bytes()
	if err != nil {
		return nil, fmt.Errorf("generic: capability statement: %w", err)
	}
	return out, nil
}

// SmartConfiguration implements flavor.Flavor.
func (Flavor) SmartConfiguration(e flavor.Endpoint) ([]byte, error) {
	doc := map[string]any{
		"issuer":                                e.TokenURL,
		"token_endpoint":                        e.TokenURL,
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported":                                 []string{"system/*.read", "system/*.rs", "system/*.cruds"},
		"capabilities":                                     []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
		"code_challenge_methods_supported":                 []string{"S256"},
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("generic: smart configuration: %w", err)
	}
	return out, nil
}

// Outcome uses the standard vocabulary.
func (Flavor) Outcome(p flavor.Problem) (int, *fhir.OperationOutcome) {
	return flavor.StandardOutcome(p)
}

// CheckSearch has no vendor rules.
func (Flavor) CheckSearch(string, []store.SearchParam, int, bool) *flavor.Problem { return nil }

// NormalizeQuery leaves queries unchanged.
func (Flavor) NormalizeQuery(string, url.Values) {}
