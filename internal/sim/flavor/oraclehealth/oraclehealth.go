// Package oraclehealth is the simulator's Oracle Health (Cerner Millennium)
// flavour: tenant-GUID-style URLs ({tenant}/r4), next links that carry
// pageContext and direction=NEXT and repeat the last entry of each page at
// the start of the next (the same id on two pages), numeric ids, v1 scopes
// only, proprietary codeSet codings beside the standard ones, its writes
// (201 with an empty body and ETag W/"0", If-Match required and 409 when
// stale, JSON Patch, 422 business rules: see CheckWrite), and in strict
// mode its search rules: Patient needs _id or
// demographics and is refused above 1000 matches (422), Appointment needs
// a date with a patient, practitioner or location, Coverage and the
// clinical types need a patient. Facts come from
// ../shared/reference/ehr-vendors.md §2 and Oracle Health's published
// CapabilityStatement and examples; "unconfirmed" marks our choices.
package oraclehealth

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
)

// Name is the flavour's name in configuration.
const Name = "oracle-health"

// TooManyMatches is the most matches a Patient search may have (422 above).
const TooManyMatches = 1000

// CodeSetBase is the prefix of proprietary code systems; the tenant and
// "/codeSet/{n}" follow.
const CodeSetBase = "https://fhir.cerner.com/"

// Flavor is the Oracle Health flavour.
type Flavor struct{}

// New returns the Oracle Health flavour.
func New() flavor.Flavor { return Flavor{} }

// Info implements flavor.Flavor.
func (Flavor) Info() flavor.Info {
	return flavor.Info{
		Name:          Name,
		BasePath:      "/r4",
		TokenPath:     "/protocols/oauth2/profiles/smart-v1/token",
		AuthorizePath: "/protocols/oauth2/profiles/smart-v1/personas/provider/authorize",
		ResourceTypes: flavor.AllTypes(),
		// Documented per type (Patient 20, Observation 50 max 200,
		// DocumentReference 10 max 100); one pair for all types here.
		DefaultCount: 20,
		MaxCount:     200,
		// Writes as Oracle Health's published CapabilityStatement declares
		// them for the types the simulator serves.
		Creates: []string{"AllergyIntolerance", "Appointment", "Condition", "Coverage", "DocumentReference", "Encounter",
			"MedicationRequest", "Observation", "Organization", "Patient", "Practitioner"},
		Updates:     []string{"AllergyIntolerance", "Condition", "DocumentReference", "Observation"},
		Patches:     []string{"Appointment", "Coverage", "Encounter", "MedicationRequest", "Patient", "Slot"},
		StaleStatus: http.StatusConflict,
		// 201/200 without a body, ETag W/"0" for a new resource, If-Match
		// required on update and patch (412 without it), Location without
		// _history (unconfirmed), no conditional create (not documented:
		// If-None-Exist is refused with 400).
		Writes:             flavor.Writes{EmptyBody: true, ZeroBasedVersions: true, RequireIfMatch: true, LocationWithoutHistory: true},
		TokenTTL:           570 * time.Second,
		V1Scopes:           true,
		StrictSearchParams: strictParams(),
		Paging:             flavor.Paging{Param: "pageContext", Extra: "direction=NEXT", Repeat: 1},
	}
}

// strictParams are the parameters Oracle Health's CapabilityStatement
// declares for the simulator's types that the simulator implements.
func strictParams() map[string][]string {
	return map[string][]string{
		"AllergyIntolerance": {"_id", "patient", "clinical-status"},
		"Appointment":        {"_id", "_count", "date", "patient", "practitioner", "location", "status"},
		"Condition":          {"_id", "patient", "encounter", "subject", "clinical-status", "category"},
		"Coverage":           {"patient"},
		"DocumentReference":  {"_id", "patient", "encounter", "period", "_count", "type", "category", "date"},
		"Encounter":          {"_id", "_count", "patient", "subject", "status", "date", "identifier"},
		"Location":           {"_id", "identifier", "address", "address-city", "address-state", "address-postalcode", "name", "organization"},
		"MedicationRequest":  {"_id", "patient", "intent", "status", "_lastUpdated", "_count"},
		"Observation":        {"_id", "patient", "subject", "category", "code", "date", "_lastUpdated", "_count"},
		"Organization":       {"_id", "identifier", "type", "_count", "name", "address"},
		"Patient":            {"_id", "identifier", "name", "given", "family", "address-postalcode", "birthdate", "phone", "email", "gender", "_count"},
		"Practitioner":       {"_id", "identifier", "given", "family", "name", "active", "_count"},
		"Schedule":           {"_id"},
		"Slot":               {"_id", "start", "service-type", "_count"},
	}
}

// NewID returns numeric ids, as Millennium's are.
func (Flavor) NewID(_ string, rng *rand.Rand) string {
	return strconv.Itoa(10_000_000 + rng.IntN(90_000_000))
}

// codeSets are the proprietary code sets added per type and element.
var codeSets = map[string]struct {
	path string
	set  int
}{
	"Observation": {"code", 72},  // event codes
	"Condition":   {"code", 400}, // nomenclature (unconfirmed set number)
	"Appointment": {"appointmentType", 14249},
}

// Decorate adds Oracle Health's proprietary codings: beside the standard
// codings of Observation.code, Condition.code and Appointment.appointmentType
// a coding in https://fhir.cerner.com/{tenant}/codeSet/{n} with userSelected
// true (its code derived from the standard code).
func (Flavor) Decorate(resourceType string, r *gen.Obj, f gen.Facts) {
	cs, ok := codeSets[resourceType]
	if !ok {
		return
	}
	cc := r.Child(cs.path)
	if cc == nil {
		return
	}
	codings := cc.List("coding")
	if len(codings) == 0 {
		return
	}
	first, ok := codings[0].(*gen.Obj)
	if !ok {
		return
	}
	h := fnv.New32a()
	h.Write([]byte(first.Str("system") + "|" + first.Str("code")))
	prop := gen.O("system", CodeSetBase+f.Tenant+"/codeSet/"+strconv.Itoa(cs.set), "code", strconv.Itoa(int(h.Sum32()%90_000_000)+1_000_000))
	if d := first.Str("display"); d != "" {
		prop.Set("display", d)
	}
	prop.Set("userSelected", true)
	cc.Set("coding", append([]any{prop}, codings...))
}

// CapabilityStatement implements flavor.Flavor: no software.version, JSON
// Patch declared.
func (f Flavor) CapabilityStatement(e flavor.Endpoint) ([]byte, error) {
	info := f.Info()
	in := flavor.CapabilityInput{
		Endpoint: e, Info: info,
		Software:     flavor.Software{Name: "Cerner Millennium"},
		Description:  "Cerner implementation of FHIR on top of Millennium (mediflow simulator), tenant " + e.Tenant,
		Publisher:    "Cerner",
		Instantiates: []string{"http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"},
	}
	if e.Strict {
		in.SearchParams = func(rt string) []string { return info.StrictSearchParams[rt] }
	}
	cs := flavor.BuildCapability(in)
	cs.Set("patchFormat", []string{"application/json-patch+json"})
	out, err := cs.Bytes()
	if err != nil {
		return nil, fmt.Errorf("oracle-health: capability statement: %w", err)
	}
	return out, nil
}

// SmartConfiguration renders Oracle Health's discovery document: Basic or
// JWT client authentication, v1 permissions only.
func (Flavor) SmartConfiguration(e flavor.Endpoint) ([]byte, error) {
	doc := map[string]any{
		"issuer":                                e.TokenURL,
		"authorization_endpoint":                e.AuthorizeURL,
		"token_endpoint":                        e.TokenURL,
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{"authorization_code", "client_credentials"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"capabilities": []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
			"client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
			"permission-offline", "permission-patient", "permission-user", "permission-v1", "sso-openid-connect"},
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("oracle-health: smart configuration: %w", err)
	}
	return out, nil
}

// Outcome renders Oracle Health's statuses: 409 for a stale version, 412
// for an update without If-Match, 422 for business rules and for more than
// 1000 matches; the standard rendering otherwise.
func (Flavor) Outcome(p flavor.Problem) (int, *fhir.OperationOutcome) {
	switch p.Kind {
	case flavor.StaleVersion:
		return http.StatusConflict, fhir.NewOutcome("error", "conflict", p.Diagnostics)
	case flavor.PreconditionRequired:
		return http.StatusPreconditionFailed, fhir.NewOutcome("error", "required", p.Diagnostics)
	case flavor.Unprocessable:
		return http.StatusUnprocessableEntity, fhir.NewOutcome("error", "business-rule", p.Diagnostics)
	case flavor.TooManyResults:
		return http.StatusUnprocessableEntity, fhir.NewOutcome("error", "too-costly", p.Diagnostics)
	}
	return flavor.StandardOutcome(p)
}

func has(params []store.SearchParam, names ...string) bool {
	for _, p := range params {
		n, _ := searchparam.SplitName(p.Name)
		for _, want := range names {
			if n == want {
				return true
			}
		}
	}
	return false
}

// patientTypes need a patient (or _id) in strict mode.
var patientTypes = map[string]bool{
	"AllergyIntolerance": true, "Condition": true, "DocumentReference": true,
	"Encounter": true, "MedicationRequest": true, "Observation": true,
}

// CheckSearch applies Oracle Health's search rules in strict mode.
func (Flavor) CheckSearch(rt string, params []store.SearchParam, total int, strict bool) *flavor.Problem {
	if !strict {
		return nil
	}
	if total >= 0 {
		if rt == "Patient" && total > TooManyMatches {
			return &flavor.Problem{Kind: flavor.TooManyResults, Diagnostics: fmt.Sprintf("the search matched more than %d patients; narrow it", TooManyMatches)}
		}
		return nil
	}
	missing := func(what string) *flavor.Problem {
		return &flavor.Problem{Kind: flavor.ParamMissing, Diagnostics: rt + " search requires " + what}
	}
	switch {
	case rt == "Coverage":
		if !has(params, "patient") {
			return missing("patient")
		}
	case has(params, "_id"):
	case rt == "Patient":
		if !has(params, "identifier", "name", "given", "family", "birthdate", "phone", "email", "address-postalcode", "gender") {
			return missing("_id, identifier or demographics")
		}
	case rt == "Appointment":
		if !has(params, "date") || !has(params, "patient", "practitioner", "location") {
			return missing("date with patient, practitioner or location")
		}
	case rt == "Schedule":
		return missing("_id")
	case rt == "Slot":
		if !has(params, "start") {
			return missing("_id or start")
		}
	case patientTypes[rt]:
		if !has(params, "patient", "subject") {
			return missing("patient or _id")
		}
	}
	return nil
}

// NormalizeQuery leaves queries unchanged.
func (Flavor) NormalizeQuery(string, url.Values) {}
