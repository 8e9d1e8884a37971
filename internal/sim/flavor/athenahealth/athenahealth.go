// Package athenahealth is the simulator's athenahealth flavour: one FHIR R4
// base for many practices, where every search must name its practice
// (ah-practice=Organization/a-1.Practice-{id}), _lastUpdated takes a date
// only (a time is refused with 400), paging runs on a cursor parameter, and
// in strict mode most types are searchable only with patient or _id
// (Appointment only by _id). The FHIR API is read-only; writes go through
// the proprietary v1 API the simulator serves beside it (registering
// patients, opening and booking appointment slots). Event subscriptions
// are id-only, signed with X-Hub-Signature, and number their events per
// notification (see flavor.Subscriptions). Facts come from
// ../shared/reference/ehr-vendors.md §3 and athenahealth's published
// CapabilityStatement; values marked "unconfirmed" are our choice.
package athenahealth

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
)

// Name is the flavour's name in configuration.
const Name = "athenahealth"

// SandboxPractice is athenahealth's preview sandbox practice id, the
// practice a New flavour serves.
const SandboxPractice = "195900"

// PracticeParam is the search parameter that names the practice.
const PracticeParam = "ah-practice"

// SoftwareName is the CapabilityStatement's software.name (no version).
const SoftwareName = "athenahealth FHIR Server"

// Flavor is the athenahealth flavour for one practice.
type Flavor struct {
	practice string
}

// New returns the flavour serving the sandbox practice.
func New() flavor.Flavor { return Flavor{practice: SandboxPractice} }

// ForPractice returns the flavour serving practice (digits), for
// sim.Config.Flavors.
func ForPractice(practice string) flavor.Flavor { return Flavor{practice: practice} }

// Practice is the flavour's practice id (digits), the {practiceid} of its
// v1 API paths.
func (f Flavor) Practice() string { return f.practice }

// PracticeRef is the ah-practice value naming the flavour's practice.
func (f Flavor) PracticeRef() string { return "Organization/a-1.Practice-" + f.practice }

// servedTypes are the simulator's types athenahealth's R4 API offers (no
// Schedule or Slot).
var servedTypes = [...]string{
	"Patient", "Practitioner", "Organization", "Location", "Appointment", "Coverage",
	"Encounter", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest", "DocumentReference",
}

// patientTypes need patient (or _id) in strict mode.
var patientTypes = map[string]bool{
	"Coverage": true, "Encounter": true, "Condition": true, "Observation": true,
	"AllergyIntolerance": true, "MedicationRequest": true, "DocumentReference": true,
}

// Info implements flavor.Flavor.
func (f Flavor) Info() flavor.Info {
	return flavor.Info{
		Name:          Name,
		BasePath:      "/fhir/r4",
		TokenPath:     "/oauth2/v1/token",
		AuthorizePath: "/oauth2/v1/authorize",
		ResourceTypes: append([]string(nil), servedTypes[:]...),
		// Page sizes: unconfirmed.
		DefaultCount: 10,
		MaxCount:     1000,
		// FHIR is read/search only (writes go through the proprietary v1 API:
		// patient registration and appointment booking, see VendorAPI).
		StaleStatus:        http.StatusPreconditionFailed,
		VendorAPI:          flavor.VendorAPIAthenaV1,
		TokenTTL:           time.Hour,
		StrictSearchParams: strictParams(),
		Paging:             flavor.Paging{Param: "cursor"},
		// Event subscriptions as athenahealth's Event Subscription Platform
		// documents them (github.com/athenahealth/aone-fhir-subscriptions):
		// id-only payloads, WebSub signatures with the X-Hub-Secret given at
		// create, SubscriptionStatus as a resource, event numbers and
		// eventsSinceSubscriptionStart relative to each notification. The
		// required ah-practice filter (one Subscription per topic per
		// practice) comes from ../shared/reference/ehr-vendors.md.
		Subscriptions: flavor.Subscriptions{
			HubSignature: true, PerNotificationCount: true, StatusResource: true,
			Payloads:       []string{"id-only"},
			PracticeFilter: PracticeParam, PracticeValue: f.PracticeRef(),
		},
	}
}

// strictParams are the parameters athenahealth's CapabilityStatement
// declares for the served types that the simulator implements (the ah-*
// parameters are taken off the query before parsing).
func strictParams() map[string][]string {
	return map[string][]string{
		"AllergyIntolerance": {"_count", "patient", "_lastUpdated", "code"},
		"Appointment":        {"_id"},
		"Condition":          {"_id", "patient", "encounter", "_count", "_lastUpdated", "code", "category"},
		"Coverage":           {"_count", "patient", "_lastUpdated"},
		"DocumentReference":  {"_id", "patient", "category", "type", "date", "_count", "encounter", "_lastUpdated"},
		"Encounter":          {"_id", "patient", "date", "_count", "_lastUpdated", "location", "practitioner"},
		"Location":           {"_id"},
		"MedicationRequest":  {"patient", "intent", "status", "_id", "authoredon", "subject", "encounter", "_count", "_lastUpdated"},
		"Observation":        {"_id", "patient", "date", "category", "code", "encounter", "_count", "_lastUpdated"},
		"Organization":       {"_id"},
		"Patient":            {"_id", "identifier", "name", "birthdate", "gender", "family", "given", "_lastUpdated", "_count"},
		"Practitioner":       {"_id", "identifier"},
	}
}

// NewID returns athenahealth-looking ids: a-{practice}.E-{n} for patients,
// a-{practice}.{kind}-{n} for the rest (the kinds are our choice).
func (f Flavor) NewID(resourceType string, rng *rand.Rand) string {
	kind := "E"
	switch resourceType {
	case "Patient":
	case "Practitioner":
		kind = "Provider"
	case "Location", "Organization":
		kind = "Department"
	default:
		kind = strings.ToLower(resourceType)
	}
	return "a-" + f.practice + "." + kind + "-" + strconv.Itoa(1_000_000+rng.IntN(9_000_000))
}

// Decorate leaves generated resources in their standard shape.
func (Flavor) Decorate(string, *gen.Obj, gen.Facts) {}

// CapabilityStatement implements flavor.Flavor: software name only.
func (f Flavor) CapabilityStatement(e flavor.Endpoint) ([]byte, error) {
	info := f.Info()
	in := flavor.CapabilityInput{
		Endpoint: e, Info: info,
		Software:     flavor.Software{Name: SoftwareName},
		Description:  "athenahealth R4 FHIR Server (mediflow simulator), tenant " + e.Tenant,
		Publisher:    "athenahealth",
		Instantiates: []string{"http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server|6.1.0"},
	}
	if e.Strict {
		in.SearchParams = func(rt string) []string { return info.StrictSearchParams[rt] }
	}
	out, err := flavor.BuildCapability(in).Bytes()
	if err != nil {
		return nil, fmt.Errorf("athenahealth: capability statement: %w", err)
	}
	return out, nil
}

// SmartConfiguration renders a discovery document shaped like
// athenahealth's (Okta-backed).
func (Flavor) SmartConfiguration(e flavor.Endpoint) ([]byte, error) {
	doc := map[string]any{
		"issuer":                                e.TokenURL,
		"authorization_endpoint":                e.AuthorizeURL,
		"token_endpoint":                        e.TokenURL,
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{"authorization_code", "client_credentials"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"capabilities": []string{"launch-ehr", "launch-standalone", "client-confidential-symmetric", "client-confidential-asymmetric",
			"client-public", "sso-openid-connect", "context-ehr-patient", "authorize-post", "permission-offline",
			"permission-patient", "permission-user", "permission-v1", "permission-v2"},
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("athenahealth: smart configuration: %w", err)
	}
	return out, nil
}

// Outcome uses the standard vocabulary (athenahealth publishes none of its own).
func (Flavor) Outcome(p flavor.Problem) (int, *fhir.OperationOutcome) {
	return flavor.StandardOutcome(p)
}

var dateOnly = regexp.MustCompile(`^(eq|ne|gt|lt|ge|le|sa|eb|ap)?[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

// CheckQuery implements flavor.QueryChecker: every search names the
// flavour's practice (missing: 400; another practice: 403, unconfirmed) and
// _lastUpdated is a date without a time (400 otherwise). Both apply in
// every mode.
func (f Flavor) CheckQuery(rt string, q url.Values, _ bool) *flavor.Problem {
	switch ps := q[PracticeParam]; {
	case len(ps) == 0 || ps[0] == "":
		return &flavor.Problem{Kind: flavor.ParamMissing, Diagnostics: "ah-practice is required: ah-practice=Organization/a-1.Practice-{practiceid}"}
	case len(ps) > 1 || ps[0] != f.PracticeRef():
		return &flavor.Problem{Kind: flavor.Forbidden, Diagnostics: "ah-practice does not name a practice this client may read"}
	}
	for _, v := range q["_lastUpdated"] {
		for _, one := range strings.Split(v, ",") {
			if !dateOnly.MatchString(one) {
				return &flavor.Problem{Kind: flavor.BadRequest, Diagnostics: "_lastUpdated accepts a date only (YYYY-MM-DD, with an optional prefix such as ge)"}
			}
		}
	}
	return nil
}

// NormalizeQuery takes athenahealth's own ah-* parameters off the query
// (CheckQuery has checked them).
func (Flavor) NormalizeQuery(_ string, q url.Values) {
	for k := range q {
		if strings.HasPrefix(k, "ah-") {
			delete(q, k)
		}
	}
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

// CheckSearch applies athenahealth's required parameters in strict mode:
// clinical types and Coverage need patient (or _id), Appointment needs _id.
func (Flavor) CheckSearch(rt string, params []store.SearchParam, total int, strict bool) *flavor.Problem {
	if !strict || total >= 0 || has(params, "_id") {
		return nil
	}
	switch {
	case rt == "Appointment":
		return &flavor.Problem{Kind: flavor.ParamMissing, Diagnostics: "Appointment search requires _id"}
	case patientTypes[rt] && !has(params, "patient", "subject"):
		return &flavor.Problem{Kind: flavor.ParamMissing, Diagnostics: rt + " search requires patient or _id"}
	}
	return nil
}
