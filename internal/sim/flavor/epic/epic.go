// Package epic is the simulator's Epic flavour: Epic's URL layout
// ({tenant}/api/FHIR/R4, oauth2/token), a CapabilityStatement and
// smart-configuration shaped like Epic's "May 2026" release, Epic-style ids
// and identifier/extension quirks on generated resources, Epic's write rules
// (creates and updates only for the documented types; Appointment, Coverage,
// Encounter and Practitioner are read/search only; no conditional create;
// duplicate creates and unmapped flowsheet rows refused, see CheckWrite; no
// Schedule or Slot in R4) and its OperationOutcome codes (4101, 4111, 4113,
// 4127, 59141, 59187, 59188). Facts come from ../shared/reference/ehr-vendors.md §1 and the
// captured discovery documents; values marked "unconfirmed" are our choice.
package epic

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
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
const Name = "epic"

// Software facts of the simulated release.
const (
	SoftwareName    = "Epic"
	SoftwareVersion = "May 2026"
	ReleaseDate     = "2026-05-11"
)

// ErrorSystem is the code system of Epic's OperationOutcome detail codes.
const ErrorSystem = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369"

// Epic OperationOutcome detail codes.
const (
	CodeNoResults      = "4101" // search found nothing (warning in an empty searchset)
	CodeParamMissing   = "4111" // a required search parameter is missing
	CodeSessionExpired = "4113" // the cached search session expired; re-run the search
	CodeTooMany        = "4127" // Patient search matched more than 100 patients
	// Write errors (ehr-vendors.md §1); their HTTP statuses are our choice.
	CodeDuplicate         = "59141" // the create duplicates an existing resource
	CodeFlowsheetMissing  = "59187" // a vital-sign Observation names no flowsheet row
	CodeFlowsheetUnmapped = "59188" // the flowsheet row is not mapped in this install
)

// LegalSexExtension is Epic's legal-sex extension URL.
const LegalSexExtension = "http://open.epic.com/FHIR/StructureDefinition/extension/legal-sex"

// PatientSearchLimit is the most patients a Patient search may match (4127 beyond).
const PatientSearchLimit = 100

// Flavor is the Epic flavour.
type Flavor struct{}

// New returns the Epic flavour.
func New() flavor.Flavor { return Flavor{} }

// servedTypes are the simulator's types that Epic's R4 API offers
// (Schedule and Slot exist only in its STU3 API).
var servedTypes = [...]string{
	"Patient", "Practitioner", "Organization", "Location", "Appointment", "Coverage",
	"Encounter", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest", "DocumentReference",
}

// Info implements flavor.Flavor.
func (Flavor) Info() flavor.Info {
	return flavor.Info{
		Name:          Name,
		BasePath:      "/api/FHIR/R4",
		TokenPath:     "/oauth2/token",
		AuthorizePath: "/oauth2/authorize",
		ResourceTypes: append([]string(nil), servedTypes[:]...),
		// Page sizes and token lifetime: unconfirmed for Epic.
		DefaultCount:         100,
		MaxCount:             1000,
		Creates:              []string{"AllergyIntolerance", "Condition", "DocumentReference", "Observation", "Patient"},
		Updates:              []string{"DocumentReference", "Observation"},
		UpdateCreate:         false,
		StaleStatus:          http.StatusPreconditionFailed,
		TokenTTL:             300 * time.Second,
		OutcomeOnEmptySearch: true,
		History:              false,
		StrictSearchParams:   strictParams(),
		// Bulk: Group export only, not incremental (ehr-vendors.md §1), one
		// job per client at a time. Retry-After 120 and the BulkRequest
		// status path are unconfirmed for Epic.
		Bulk: flavor.Bulk{
			Levels:              []string{flavor.BulkGroup},
			StatusPath:          "/api/FHIR/R4/BulkRequest/{id}",
			FilePrefix:          "/api/FHIR/R4/BulkRequest",
			RetryAfter:          120,
			OneJobPerClient:     true,
			Since:               false,
			RequiresAccessToken: true,
		},
	}
}

// strictParams are the search parameters Epic's R4 CapabilityStatement
// declares for the types we serve (Epic spells _lastUpdated "_lastupdated";
// NormalizeQuery maps it).
func strictParams() map[string][]string {
	return map[string][]string{
		"AllergyIntolerance": {"_count", "_id", "asserter", "category", "clinical-status", "code", "criticality", "date", "identifier", "last-date", "manifestation", "onset", "patient", "recorder", "route", "severity", "type", "verification-status"},
		"Appointment":        {"_count", "_id", "actor", "appointment-type", "based-on", "date", "identifier", "location", "onlyscannable", "part-status", "patient", "practitioner", "reason-code", "reason-reference", "service-category", "service-type", "slot", "specialty", "status", "supporting-info"},
		"Condition":          {"_count", "_id", "abatement-date", "abatement-string", "asserter", "body-site", "category", "clinical-status", "code", "encounter", "evidence", "evidence-detail", "identifier", "onset-date", "onset-info", "patient", "recorded-date", "severity", "stage", "subject", "verification-status"},
		"Coverage":           {"_count", "_id", "beneficiary", "class-type", "class-value", "dependent", "identifier", "patient", "payor", "policy-holder", "status", "subscriber", "type"},
		"DocumentReference":  {"_count", "_id", "_lastUpdated", "authenticator", "author", "category", "contenttype", "custodian", "date", "description", "docstatus", "encounter", "event", "facility", "format", "identifier", "language", "patient", "period", "related", "relatesto", "relation", "security-label", "setting", "status", "subject", "type"},
		"Encounter":          {"_count", "_id", "account", "appointment", "based-on", "class", "date", "diagnosis", "episode-of-care", "identifier", "location", "location-period", "onlyscannable", "part-of", "participant", "participant-type", "patient", "practitioner", "reason-code", "reason-reference", "service-provider", "special-arrangement", "status", "subject", "type"},
		"Location":           {"_count", "_id", "address", "address-city", "address-country", "address-postalcode", "address-state", "address-use", "endpoint", "identifier", "name", "operational-status", "organization", "partof", "status", "type"},
		"MedicationRequest":  {"_count", "_id", "authoredon", "category", "code", "date", "encounter", "identifier", "intended-dispenser", "intended-performer", "intended-performertype", "intent", "medication", "patient", "priority", "requester", "status", "subject"},
		"Observation":        {"_count", "_id", "based-on", "category", "code", "combo-code", "combo-data-absent-reason", "combo-value-concept", "component-code", "component-data-absent-reason", "component-value-concept", "data-absent-reason", "date", "derived-from", "device", "encounter", "focus", "has-member", "identifier", "issued", "method", "part-of", "patient", "performer", "specimen", "status", "subject", "value-concept", "value-date", "value-string"},
		"Organization":       {"_count", "_id"},
		"Patient":            {"_count", "_id", "active", "address", "address-city", "address-country", "address-postalcode", "address-state", "address-use", "birthdate", "death-date", "doc-type", "email", "family", "gender", "general-practitioner", "given", "identifier", "language", "legal-sex", "link", "name", "organization", "own-name", "own-prefix", "partner-name", "partner-prefix", "phone", "phonetic", "telecom"},
		"Practitioner":       {"_count", "_id", "active", "address", "address-city", "address-country", "address-postalcode", "address-state", "address-use", "communication", "email", "family", "gender", "given", "identifier", "name", "phone", "phonetic", "telecom"},
	}
}

// usCoreProfiles are the US Core 6.1.0 profiles Epic declares per type.
func usCoreProfiles() map[string][]string {
	p := func(names ...string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = "http://hl7.org/fhir/us/core/StructureDefinition/" + n + "|6.1.0"
		}
		return out
	}
	return map[string][]string{
		"AllergyIntolerance": p("us-core-allergyintolerance"),
		"Condition":          p("us-core-condition-encounter-diagnosis", "us-core-condition-problems-health-concerns"),
		"Coverage":           p("us-core-coverage"),
		"DocumentReference":  p("us-core-documentreference"),
		"Encounter":          p("us-core-encounter"),
		"MedicationRequest":  p("us-core-medicationrequest"),
		"Observation":        p("us-core-vital-signs", "us-core-observation-lab", "us-core-blood-pressure", "us-core-bmi", "us-core-body-height", "us-core-body-weight", "us-core-heart-rate", "us-core-respiratory-rate", "us-core-body-temperature"),
		"Organization":       p("us-core-organization"),
		"Patient":            p("us-core-patient"),
		"Practitioner":       p("us-core-practitioner"),
	}
}

const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-"

// NewID returns Epic-looking FHIR ids: "e" + random characters + "3",
// 24 characters for people and places, 44 for clinical records.
func (Flavor) NewID(resourceType string, rng *rand.Rand) string {
	n := 22
	switch resourceType {
	case "Patient", "Practitioner", "Organization", "Location":
	default:
		n = 42
	}
	b := make([]byte, 0, n+2)
	b = append(b, 'e')
	for range n {
		b = append(b, idChars[rng.IntN(len(idChars))])
	}
	return string(append(b, '3'))
}

// install is the per-tenant install number used in Epic OIDs.
func install(tenant string) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	return 100 + int(h.Sum32()%900)
}

func oid(tenant, suffix string) string {
	return "urn:oid:1.2.840.114350.1.13." + strconv.Itoa(install(tenant)) + "." + suffix
}

// hashBit derives a stable pseudo-random choice from an id (Decorate has no
// random source of its own, so choices hang off the id).
func hashBit(id string, salt string, percent int) bool {
	h := fnv.New32a()
	h.Write([]byte(salt))
	h.Write([]byte(id))
	return int(h.Sum32()%100) < percent
}

func typed(text, system, value string) *gen.Obj {
	return gen.O("use", "usual", "type", gen.O("text", text), "system", system, "value", value)
}

var phoneRE = regexp.MustCompile(`^\((\d{3})\) (\d{3})-(\d{4})$`)

// Decorate gives generated resources Epic's shape.
func (Flavor) Decorate(resourceType string, r *gen.Obj, f gen.Facts) {
	id := r.Str("id")
	fixPhones(r)
	switch resourceType {
	case "Patient":
		decoratePatient(r, id, f)
	case "Practitioner":
		internal := fmt.Sprintf("E%d", 1000+f.Serial)
		ids := gen.A()
		for _, x := range r.List("identifier") {
			if o, ok := x.(*gen.Obj); ok && o.Str("system") == "http://hl7.org/fhir/sid/us-npi" {
				ids = append(ids, typed("NPI", o.Str("system"), o.Str("value")))
			}
		}
		ids = append(ids,
			typed("INTERNAL", oid(f.Tenant, "2.7.2.836982"), fmt.Sprintf("%10s", internal)),
			typed("EXTERNAL", oid(f.Tenant, "2.7.2.836982"), internal))
		r.Set("identifier", ids)
		addNameText(r)
	case "Appointment":
		r.Delete("slot") // Epic R4 has no Slot resource
		r.SetAfter("meta", "identifier", gen.A(typed("CSN", oid(f.Tenant, "2.7.3.698084.8"), strconv.Itoa(1_000_000_000+f.Serial*7))))
		addRefTypes(r, "participant", "actor")
	case "Encounter":
		r.SetAfter("meta", "identifier", gen.A(typed("CSN", oid(f.Tenant, "2.7.3.698084.8"), strconv.Itoa(2_000_000_000+f.Serial*7))))
	}
}

func decoratePatient(r *gen.Obj, id string, f gen.Facts) {
	internal := fmt.Sprintf("Z%d", 1000+f.Serial)
	dstu2 := sha256.Sum256([]byte(id))
	ids := gen.A(
		typed("EPIC", "urn:oid:1.2.840.114350.1.1", fmt.Sprintf("E%d", 4000+f.Serial)),
		typed("EXTERNAL", oid(f.Tenant, "2.7.2.698084"), internal),
		typed("FHIR", "http://open.epic.com/FHIR/StructureDefinition/patient-dstu2-fhir-id", "T"+base64.RawURLEncoding.EncodeToString(dstu2[:])[:43]),
		typed("INTERNAL", oid(f.Tenant, "2.7.2.698084"), fmt.Sprintf("%10s", internal)),
		typed("EPI", oid(f.Tenant, "2.7.5.737384.0"), f.MRN),
	)
	if hashBit(id, "mychart", 60) {
		ids = append(ids, typed("MYCHARTLOGIN", oid(f.Tenant, "2.7.2.878082"), fmt.Sprintf("MC%07d", f.Serial)))
	}
	r.Set("identifier", ids)

	gender := r.Str("gender")
	var ext []any
	for _, x := range r.List("extension") {
		o, ok := x.(*gen.Obj)
		if !ok {
			continue
		}
		if strings.HasSuffix(o.Str("url"), "us-core-ethnicity") && hashBit(id, "eth", 30) {
			// Ethnicity sometimes comes as text only.
			var kept []any
			for _, s := range o.List("extension") {
				if so, ok := s.(*gen.Obj); ok && so.Str("url") == "text" {
					kept = append(kept, so)
				}
			}
			o.Set("extension", kept)
		}
		ext = append(ext, o)
	}
	if gender == "male" || gender == "female" {
		ext = append(ext, gen.O("url", LegalSexExtension, "valueCodeableConcept", gen.O("coding", gen.A(gen.O(
			"system", oid(f.Tenant, "2.7.10.698084.130.657370.19999000"), "code", gender, "display", gender)))))
	}
	r.Set("extension", ext)

	// Duplicate official + usual names, each with text.
	if names := r.List("name"); len(names) > 0 {
		if off, ok := names[0].(*gen.Obj); ok {
			text := nameText(off)
			official := gen.O("use", "official", "text", text, "family", off.Str("family"))
			usual := gen.O("use", "usual", "text", text, "family", off.Str("family"))
			if g, ok := off.Get("given"); ok {
				official.Set("given", g)
				usual.Set("given", g)
			}
			if s, ok := off.Get("suffix"); ok {
				official.Set("suffix", s)
				usual.Set("suffix", s)
			}
			r.Set("name", gen.A(official, usual))
		}
	}
	// maritalStatus as text only.
	if ms := r.Child("maritalStatus"); ms != nil {
		r.Set("maritalStatus", gen.O("text", ms.Str("text")))
	}
	addRefType(r.Child("managingOrganization"), "Organization")
	for _, gp := range r.List("generalPractitioner") {
		if o, ok := gp.(*gen.Obj); ok {
			addRefType(o, "Practitioner")
		}
	}
}

func nameText(n *gen.Obj) string {
	parts := []string{}
	for _, g := range n.List("given") {
		if s, ok := g.(string); ok {
			parts = append(parts, s)
		}
	}
	parts = append(parts, n.Str("family"))
	for _, s := range n.List("suffix") {
		if s, ok := s.(string); ok {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

func addNameText(r *gen.Obj) {
	for _, x := range r.List("name") {
		if n, ok := x.(*gen.Obj); ok {
			n.SetAfter("use", "text", nameText(n))
		}
	}
}

func addRefType(ref *gen.Obj, rt string) {
	if ref == nil {
		return
	}
	ref.SetAfter("reference", "type", rt)
}

func addRefTypes(r *gen.Obj, list, field string) {
	for _, x := range r.List(list) {
		if o, ok := x.(*gen.Obj); ok {
			if ref := o.Child(field); ref != nil {
				if t, _, ok := strings.Cut(ref.Str("reference"), "/"); ok {
					addRefType(ref, t)
				}
			}
		}
	}
}

// fixPhones rewrites "(469) 555-1234" to Epic's "469-555-1234".
func fixPhones(r *gen.Obj) {
	for _, x := range r.List("telecom") {
		if o, ok := x.(*gen.Obj); ok && o.Str("system") == "phone" {
			if m := phoneRE.FindStringSubmatch(o.Str("value")); m != nil {
				o.Set("value", m[1]+"-"+m[2]+"-"+m[3])
			}
		}
	}
}

// CapabilityStatement renders an Epic-shaped statement from facts.
func (f Flavor) CapabilityStatement(e flavor.Endpoint) ([]byte, error) {
	info := f.Info()
	in := flavor.CapabilityInput{
		Endpoint:     e,
		Info:         info,
		Software:     flavor.Software{Name: SoftwareName, Version: SoftwareVersion, ReleaseDate: ReleaseDate},
		Description:  "Epic FHIR R4 server (mediflow simulator), tenant " + e.Tenant,
		Instantiates: []string{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data", "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server|6.1.0"},
		Profiles:     usCoreProfiles(),
		History:      info.History,
	}
	if e.Strict {
		in.SearchParams = func(rt string) []string {
			var out []string
			for _, n := range info.StrictSearchParams[rt] {
				if n == "_count" {
					out = append(out, n)
				} else if _, ok := searchparam.Lookup(rt, n); ok {
					out = append(out, n)
				}
			}
			return out
		}
	} else {
		in.SearchParams = func(rt string) []string { return append([]string{"_count"}, searchparam.Names(rt)...) }
	}
	cs := flavor.BuildCapability(in)
	flavor.AddBulkOperations(cs, info)
	cs.SetAfter("status", "experimental", true)
	if !e.OpenAuth {
		if rest, ok := cs.List("rest")[0].(*gen.Obj); ok {
			if sec := rest.Child("security"); sec != nil {
				sec.Set("cors", true)
				sec.Set("service", gen.A(
					gen.O("coding", gen.A(gen.O("system", "http://terminology.hl7.org/CodeSystem/restful-security-service", "code", "OAuth", "display", "OAuth")), "text", "OAuth"),
					gen.O("coding", gen.A(gen.O("system", "http://terminology.hl7.org/CodeSystem/restful-security-service", "code", "SMART-on-FHIR", "display", "SMART-on-FHIR")), "text", "SMART-on-FHIR"),
				))
			}
		}
	}
	out, err := cs.Bytes()
	if err != nil {
		return nil, fmt.Errorf("epic: capability statement: %w", err)
	}
	return out, nil
}

// SmartConfiguration renders Epic's discovery document. The signing
// algorithms list is our addition (Epic's capture does not carry one; the
// simulator verifies RS384 and ES384).
func (Flavor) SmartConfiguration(e flavor.Endpoint) ([]byte, error) {
	issuer := strings.TrimSuffix(e.TokenURL, "/token")
	doc := map[string]any{
		"issuer":                                issuer,
		"authorization_endpoint":                e.AuthorizeURL,
		"token_endpoint":                        e.TokenURL,
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"scopes_supported":         []string{"epic.scanning.dmsusername", "fhirUser", "launch", "openid", "profile"},
		"response_types_supported": []string{"code"},
		"capabilities": []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
			"client-confidential-asymmetric", "context-banner", "context-style", "context-ehr-patient", "context-ehr-encounter",
			"context-standalone-patient", "permission-offline", "permission-patient", "permission-user", "permission-v1",
			"permission-v2", "sso-openid-connect", "authorize-post"},
		"grant_types_supported": []string{"authorization_code", "refresh_token", "client_credentials",
			"urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:token-exchange"},
		"code_challenge_methods_supported": []string{"S256"},
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("epic: smart configuration: %w", err)
	}
	return out, nil
}

// Outcome renders Epic's vocabulary: its numeric codes in details.coding for
// the problems Epic names, the standard rendering otherwise.
func (Flavor) Outcome(p flavor.Problem) (int, *fhir.OperationOutcome) {
	var status int
	var sev, code, epicCode, text string
	switch p.Kind {
	case flavor.NoResults:
		status, sev, code, epicCode, text = http.StatusOK, "warning", "processing", CodeNoResults, "No resources found for the search."
	case flavor.ParamMissing:
		status, sev, code, epicCode, text = http.StatusBadRequest, "fatal", "required", CodeParamMissing, "A required search parameter is missing."
	case flavor.PageExpired:
		status, sev, code, epicCode, text = http.StatusBadRequest, "fatal", "processing", CodeSessionExpired, "The cached search session expired; run the search again."
	case flavor.TooManyResults:
		status, sev, code, epicCode, text = http.StatusBadRequest, "fatal", "too-costly", CodeTooMany, "The patient search matched too many patients; narrow the criteria."
	case flavor.Duplicate:
		status, sev, code, epicCode, text = http.StatusBadRequest, "error", "duplicate", CodeDuplicate, "A duplicate resource was found; nothing was created."
	case flavor.Unprocessable:
		switch p.Code {
		case CodeFlowsheetMissing:
			status, sev, code, epicCode, text = http.StatusUnprocessableEntity, "error", "processing", p.Code, "No flowsheet row could be determined for the observation."
		case CodeFlowsheetUnmapped:
			status, sev, code, epicCode, text = http.StatusUnprocessableEntity, "error", "processing", p.Code, "The flowsheet row is not mapped for filing."
		default:
			return flavor.StandardOutcome(p)
		}
	default:
		return flavor.StandardOutcome(p)
	}
	oo := fhir.NewOutcome(sev, code, p.Diagnostics)
	oo.Issue[0].Details = &fhir.CodeableConcept{Coding: []fhir.Coding{{System: ErrorSystem, Code: epicCode, Display: text}}, Text: text}
	return status, oo
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

// CheckSearch applies Epic's search rules in strict mode: Patient searches
// need one of the minimum parameter sets and may match at most 100 patients;
// clinical searches need a patient (or an id).
func (Flavor) CheckSearch(rt string, params []store.SearchParam, total int, strict bool) *flavor.Problem {
	if !strict {
		return nil
	}
	if total >= 0 {
		if rt == "Patient" && total > PatientSearchLimit {
			return &flavor.Problem{Kind: flavor.TooManyResults, Diagnostics: fmt.Sprintf("Patient search matched more than %d patients", PatientSearchLimit)}
		}
		return nil
	}
	if has(params, "_id") {
		return nil
	}
	missing := func(what string) *flavor.Problem {
		return &flavor.Problem{Kind: flavor.ParamMissing, Diagnostics: rt + " search requires " + what}
	}
	switch rt {
	case "Patient":
		ok := has(params, "identifier") ||
			(has(params, "given") && has(params, "family") && has(params, "birthdate")) ||
			(has(params, "given") && has(params, "family") && has(params, "gender", "legal-sex") && has(params, "telecom", "phone", "email"))
		if !ok {
			return missing("_id, identifier, given+family+birthdate, or given+family+gender+telecom")
		}
	case "Observation":
		if !has(params, "patient", "subject") {
			return missing("patient or subject")
		}
		if !has(params, "category", "code") {
			return missing("category or code")
		}
	case "Condition", "AllergyIntolerance", "MedicationRequest", "DocumentReference", "Encounter", "Appointment":
		if !has(params, "patient", "subject", "identifier") {
			return missing("patient, subject or identifier")
		}
	case "Coverage":
		if !has(params, "patient", "beneficiary", "identifier") {
			return missing("patient, beneficiary or identifier")
		}
	}
	return nil
}

// NormalizeQuery maps Epic's "_lastupdated" spelling to "_lastUpdated",
// and Patient "legal-sex" (coded like gender in the simulator) to "gender".
func (Flavor) NormalizeQuery(rt string, q url.Values) {
	rename := func(from, to string) {
		if v, ok := q[from]; ok {
			q[to] = append(q[to], v...)
			delete(q, from)
		}
	}
	rename("_lastupdated", "_lastUpdated")
	if rt == "Patient" {
		rename("legal-sex", "gender")
	}
}
