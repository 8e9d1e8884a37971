// Package eclinicalworks is the simulator's eClinicalWorks flavour: the
// "eCW FHIR Facade" 1.6 — a read/search-only FHIR R4 base per practice
// ({tenant}/fhir/r4), token endpoint {tenant}/oauth/oauth2/token, v1 and v2
// scopes, 300 s tokens, paging on a "page" parameter, 429 without
// Retry-After — and the proprietary writeback API the simulator serves beside
// it ({tenant}/writeback/{type}, JSON answers with numeric statuses such as
// 100 INVALID_PATIENT and 202 INVALID_PATIENT_ALREADY_EXIST). Facts come
// from ../shared/reference/ehr-vendors.md §4 and the captured discovery
// documents; values marked "unconfirmed" are our choice.
package eclinicalworks

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
)

// Name is the flavour's name in configuration.
const Name = "eclinicalworks"

// Software facts of the simulated facade.
const (
	SoftwareName    = "eCW FHIR Facade"
	SoftwareVersion = "1.6"
)

// Flavor is the eClinicalWorks flavour.
type Flavor struct{}

// New returns the eClinicalWorks flavour.
func New() flavor.Flavor { return Flavor{} }

// servedTypes are the simulator's types the facade offers (no Appointment,
// Schedule or Slot).
var servedTypes = [...]string{
	"Patient", "Practitioner", "Organization", "Location", "Coverage",
	"Encounter", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest", "DocumentReference",
}

// Info implements flavor.Flavor.
func (Flavor) Info() flavor.Info {
	return flavor.Info{
		Name:          Name,
		BasePath:      "/fhir/r4",
		TokenPath:     "/oauth/oauth2/token",
		AuthorizePath: "/oauth/oauth2/authorize",
		ResourceTypes: append([]string(nil), servedTypes[:]...),
		// Page sizes: unconfirmed.
		DefaultCount:       50,
		MaxCount:           500,
		StaleStatus:        412,
		TokenTTL:           300 * time.Second,
		StrictSearchParams: strictParams(),
		Paging:             flavor.Paging{Param: "page"},
		VendorAPI:          flavor.VendorAPIECWWriteback,
		NoRetryAfter:       true,
	}
}

// strictParams are the parameters the facade's CapabilityStatement declares
// that the simulator implements.
func strictParams() map[string][]string {
	return map[string][]string{
		"AllergyIntolerance": {"_id", "clinical-status", "encounter", "patient"},
		"Condition":          {"_id", "category", "encounter", "onset-date", "patient"},
		"Coverage":           {"_id", "patient"},
		"DocumentReference":  {"_id", "category", "contenttype", "date", "encounter", "patient", "type"},
		"Encounter":          {"_id", "date", "location", "patient", "practitioner"},
		"Location":           {"_id", "address", "name"},
		"MedicationRequest":  {"_id", "authoredon", "encounter", "intent", "patient", "status"},
		"Observation":        {"_id", "category", "code", "date", "encounter", "identifier", "patient", "status"},
		"Organization":       {"_id", "address", "address-postalcode", "name", "type"},
		"Patient":            {"_id", "birthdate", "family", "gender", "given", "identifier", "name", "phone"},
		"Practitioner":       {"_id", "identifier", "name"},
	}
}

// NewID returns numeric ids (unconfirmed shape).
func (Flavor) NewID(_ string, rng *rand.Rand) string {
	return strconv.Itoa(100_000 + rng.IntN(900_000_000))
}

// Decorate leaves generated resources in their standard shape.
func (Flavor) Decorate(string, *gen.Obj, gen.Facts) {}

// CapabilityStatement renders the facade's statement: software "eCW FHIR
// Facade" 1.6, read and search only.
func (f Flavor) CapabilityStatement(e flavor.Endpoint) ([]byte, error) {
	info := f.Info()
	in := flavor.CapabilityInput{
		Endpoint: e, Info: info,
		Software:     flavor.Software{Name: SoftwareName, Version: SoftwareVersion},
		Description:  "eClinicalWorks FHIR Facade Service (mediflow simulator), tenant " + e.Tenant,
		Publisher:    "eClinicalWorks",
		Instantiates: []string{"http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"},
	}
	if e.Strict {
		in.SearchParams = func(rt string) []string { return info.StrictSearchParams[rt] }
	}
	out, err := flavor.BuildCapability(in).Bytes()
	if err != nil {
		return nil, fmt.Errorf("eclinicalworks: capability statement: %w", err)
	}
	return out, nil
}

// SmartConfiguration renders a discovery document shaped like the facade's.
func (Flavor) SmartConfiguration(e flavor.Endpoint) ([]byte, error) {
	doc := map[string]any{
		"issuer":                                e.BaseURL,
		"authorization_endpoint":                e.AuthorizeURL,
		"token_endpoint":                        e.TokenURL,
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "client_secret_jwt"},
		"grant_types_supported":                 []string{"authorization_code", "client_credentials", "refresh_token"},
		"response_types_supported":              []string{"code", "id_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"capabilities": []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
			"client-confidential-asymmetric", "context-ehr-patient", "context-standalone-patient", "permission-offline",
			"permission-patient", "permission-user", "permission-v1", "permission-v2", "sso-openid-connect"},
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("eclinicalworks: smart configuration: %w", err)
	}
	return out, nil
}

// Outcome uses the standard vocabulary (eClinicalWorks publishes none for FHIR).
func (Flavor) Outcome(p flavor.Problem) (int, *fhir.OperationOutcome) {
	return flavor.StandardOutcome(p)
}

// CheckSearch applies no vendor search rules beyond the declared parameters.
func (Flavor) CheckSearch(string, []store.SearchParam, int, bool) *flavor.Problem { return nil }

// NormalizeQuery leaves queries unchanged.
func (Flavor) NormalizeQuery(string, url.Values) {}
