// Package searchparam defines the FHIR R4 search parameters mediflow supports,
// extracts search-index entries from resource bodies, parses search URLs into
// store criteria, and evaluates criteria against index entries. The store, the
// simulator and the app-facing API all share it, so a search means the same
// thing everywhere.
//
// Path syntax used in Def.Paths: element names separated by dots, relative to
// the resource root ("name.family", "participant.actor"). Arrays are walked
// implicitly. A segment ending in "[x]" is a polymorphic element and matches
// every typed variant ("effective[x]" covers effectiveDateTime,
// effectivePeriod, ...). The last segment may carry one filter on a child
// primitive, "telecom[system=phone]", which keeps only the elements whose
// child has that value.
package searchparam

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Type is the FHIR search parameter type.
type Type int

// Supported search parameter types.
const (
	String Type = iota + 1
	Token
	Date
	Reference
	Number // declared for completeness; no parameter uses it yet
)

func (t Type) String() string {
	switch t {
	case String:
		return "string"
	case Token:
		return "token"
	case Date:
		return "date"
	case Reference:
		return "reference"
	case Number:
		return "number"
	}
	return "unknown"
}

// valueKind refines how a leaf element is read when its datatype cannot be
// told from its JSON shape alone.
type valueKind int

const (
	kindAuto         valueKind = iota
	kindContactPoint           // token on ContactPoint: the value, no system
	kindID                     // token on the resource id
)

// Def is one search parameter of one resource type.
type Def struct {
	Name string
	Type Type
	// Paths are the elements the parameter indexes, in the syntax described
	// in the package documentation.
	Paths []string
	// Targets limits a Reference parameter to references of these resource
	// types (empty: any type).
	Targets []string
	Doc     string
	kind    valueKind
}

// Entry is one search-index entry extracted from a resource.
//
// Value is normalized per type:
//   - String: lower-cased and accent-folded ("José" -> "jose"); Exact keeps the
//     original text for the :exact modifier.
//   - Token: "system|code" (system may be empty: "|code"). For Identifier the
//     code is Identifier.value; for ContactPoint the system is always empty.
//   - Reference: "Type/id" (Type is empty, "/id", when the reference does not
//     say which type it points to).
//   - Date: Value is empty; Low and High are the first and last instant
//     (inclusive, nanosecond precision) the element covers. An open-ended
//     Period has a zero Low or a High of MaxTime.
type Entry struct {
	Name  string
	Type  Type
	Value string
	Exact string
	Low   time.Time
	High  time.Time
}

// MaxTime is the High of a range with no upper bound (a Period without end).
// It is a function so there is no mutable package state.
func MaxTime() time.Time { return time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) }

// common are the parameters every resource type has.
func common() []Def {
	return []Def{
		{Name: "_id", Type: Token, Paths: []string{"id"}, Doc: "logical id of the resource", kind: kindID},
		{Name: "_lastUpdated", Type: Date, Paths: []string{"meta.lastUpdated"}, Doc: "when the resource last changed (meta.lastUpdated)"},
	}
}

func ref(name string, paths []string, targets []string, doc string) Def {
	return Def{Name: name, Type: Reference, Paths: paths, Targets: targets, Doc: doc}
}

func tok(name, path, doc string) Def {
	return Def{Name: name, Type: Token, Paths: []string{path}, Doc: doc}
}

func str(name, path, doc string) Def {
	return Def{Name: name, Type: String, Paths: []string{path}, Doc: doc}
}

func date(name, path, doc string) Def {
	return Def{Name: name, Type: Date, Paths: []string{path}, Doc: doc}
}

// table holds the type-specific definitions (common ones are added by Defs).
func table() map[string][]Def {
	patient := []string{"Patient"}
	practitioner := []string{"Practitioner"}
	return map[string][]Def{
		"Patient": {
			tok("identifier", "identifier", "a patient identifier (MRN, SSN, ...): system|value"),
			{Name: "name", Type: String, Paths: []string{"name"}, Doc: "any part of a name: family, given, prefix, suffix or text"},
			str("family", "name.family", "family name"),
			str("given", "name.given", "given name"),
			date("birthdate", "birthDate", "date of birth"),
			tok("gender", "gender", "administrative gender: male | female | other | unknown"),
			{Name: "phone", Type: Token, Paths: []string{"telecom[system=phone]"}, Doc: "a phone number", kind: kindContactPoint},
			{Name: "email", Type: Token, Paths: []string{"telecom[system=email]"}, Doc: "an email address", kind: kindContactPoint},
			{Name: "telecom", Type: Token, Paths: []string{"telecom"}, Doc: "any contact value (phone, email, ...)", kind: kindContactPoint},
			str("address", "address", "any part of an address: line, city, district, state, postal code, country or text"),
			str("address-city", "address.city", "city of an address"),
			str("address-state", "address.state", "state of an address"),
			str("address-postalcode", "address.postalCode", "postal code of an address"),
			tok("active", "active", "whether the record is active: true | false"),
			ref("general-practitioner", []string{"generalPractitioner"}, nil, "the patient's nominated care provider"),
			ref("organization", []string{"managingOrganization"}, []string{"Organization"}, "the organization that manages the record"),
		},
		"Practitioner": {
			tok("identifier", "identifier", "a practitioner identifier (NPI, ...): system|value"),
			str("name", "name", "any part of a name"),
			str("family", "name.family", "family name"),
			str("given", "name.given", "given name"),
			tok("active", "active", "whether the record is active"),
		},
		"Organization": {
			tok("identifier", "identifier", "an organization identifier (NPI, TIN, ...)"),
			{Name: "name", Type: String, Paths: []string{"name", "alias"}, Doc: "name or alias"},
			tok("active", "active", "whether the record is active"),
			tok("type", "type", "kind of organization"),
		},
		"Location": {
			tok("identifier", "identifier", "a location identifier"),
			{Name: "name", Type: String, Paths: []string{"name", "alias"}, Doc: "name or alias"},
			ref("organization", []string{"managingOrganization"}, []string{"Organization"}, "the organization responsible for the location"),
			tok("status", "status", "active | suspended | inactive"),
			str("address", "address", "any part of the address"),
		},
		"Appointment": {
			tok("identifier", "identifier", "an appointment identifier"),
			ref("patient", []string{"participant.actor"}, patient, "a patient taking part"),
			ref("practitioner", []string{"participant.actor"}, practitioner, "a practitioner taking part"),
			ref("location", []string{"participant.actor"}, []string{"Location"}, "a location taking part"),
			ref("actor", []string{"participant.actor"}, nil, "any participant"),
			date("date", "start", "appointment start"),
			tok("status", "status", "proposed | pending | booked | arrived | fulfilled | cancelled | noshow | entered-in-error | checked-in | waitlist"),
			tok("service-type", "serviceType", "the kind of service"),
			tok("appointment-type", "appointmentType", "the style of appointment"),
			ref("slot", []string{"slot"}, []string{"Slot"}, "the slots the appointment fills"),
		},
		"Schedule": {
			ref("actor", []string{"actor"}, nil, "who or what the schedule is for"),
			tok("active", "active", "whether the schedule is in use"),
			date("date", "planningHorizon", "the period the schedule covers"),
			tok("identifier", "identifier", "a schedule identifier"),
			tok("service-type", "serviceType", "the kind of service"),
		},
		"Slot": {
			ref("schedule", []string{"schedule"}, []string{"Schedule"}, "the schedule the slot belongs to"),
			date("start", "start", "slot start"),
			tok("status", "status", "busy | free | busy-unavailable | busy-tentative | entered-in-error"),
			tok("identifier", "identifier", "a slot identifier"),
			tok("service-type", "serviceType", "the kind of service"),
		},
		"Coverage": {
			tok("identifier", "identifier", "a coverage identifier (member id, ...)"),
			ref("patient", []string{"beneficiary"}, patient, "the covered patient"),
			ref("beneficiary", []string{"beneficiary"}, nil, "the covered party"),
			ref("subscriber", []string{"subscriber"}, nil, "the subscriber"),
			ref("payor", []string{"payor"}, nil, "the insurer or responsible party"),
			tok("status", "status", "active | cancelled | draft | entered-in-error"),
			tok("type", "type", "kind of coverage"),
		},
		"Encounter": {
			tok("identifier", "identifier", "an encounter identifier"),
			ref("patient", []string{"subject"}, patient, "the patient"),
			ref("subject", []string{"subject"}, nil, "the patient or group"),
			date("date", "period", "the period of the encounter"),
			tok("status", "status", "planned | arrived | triaged | in-progress | onleave | finished | cancelled | ..."),
			tok("class", "class", "inpatient | outpatient | ambulatory | emergency | ..."),
			tok("type", "type", "specific type of encounter"),
			ref("practitioner", []string{"participant.individual"}, practitioner, "a practitioner taking part"),
			ref("participant", []string{"participant.individual"}, nil, "anyone taking part"),
			ref("location", []string{"location.location"}, []string{"Location"}, "where the encounter took place"),
			ref("service-provider", []string{"serviceProvider"}, []string{"Organization"}, "the organization responsible"),
		},
		"Condition": {
			ref("patient", []string{"subject"}, patient, "the patient"),
			ref("subject", []string{"subject"}, nil, "the patient or group"),
			tok("clinical-status", "clinicalStatus", "active | recurrence | relapse | inactive | remission | resolved"),
			tok("verification-status", "verificationStatus", "confirmed | provisional | refuted | ..."),
			tok("category", "category", "problem-list-item | encounter-diagnosis | health-concern ..."),
			tok("code", "code", "the condition's code (SNOMED CT, ICD-10, ...)"),
			date("onset-date", "onset[x]", "when the condition began (onsetDateTime or onsetPeriod)"),
			date("recorded-date", "recordedDate", "when the condition was recorded"),
			ref("encounter", []string{"encounter"}, []string{"Encounter"}, "the encounter it was recorded in"),
		},
		"Observation": {
			ref("patient", []string{"subject"}, patient, "the patient"),
			ref("subject", []string{"subject"}, nil, "the subject"),
			tok("category", "category", "vital-signs | laboratory | social-history | ..."),
			{Name: "code", Type: Token, Paths: []string{"code"}, Doc: "what was observed (LOINC, ...)"},
			date("date", "effective[x]", "when the observation applies (effectiveDateTime, effectivePeriod, effectiveInstant, ...)"),
			tok("status", "status", "registered | preliminary | final | amended | ..."),
			ref("encounter", []string{"encounter"}, []string{"Encounter"}, "the encounter it belongs to"),
			tok("value-concept", "valueCodeableConcept", "a coded value"),
			str("value-string", "valueString", "a text value"),
			date("value-date", "value[x]", "a date, dateTime or Period value"),
			ref("performer", []string{"performer"}, nil, "who performed it"),
		},
		"DiagnosticReport": {
			ref("patient", []string{"subject"}, patient, "the patient"),
			ref("subject", []string{"subject"}, nil, "the subject"),
			tok("identifier", "identifier", "a report identifier (the order's filler or placer number)"),
			tok("code", "code", "what the report is about (LOINC panel, ...)"),
			tok("category", "category", "LAB | RAD | ... (service section)"),
			tok("status", "status", "registered | partial | preliminary | final | amended | corrected | cancelled | ..."),
			date("date", "effective[x]", "the clinically relevant time of the report"),
			date("issued", "issued", "when the report was released"),
			ref("encounter", []string{"encounter"}, []string{"Encounter"}, "the encounter it belongs to"),
			ref("result", []string{"result"}, []string{"Observation"}, "an Observation the report includes"),
			ref("performer", []string{"performer"}, nil, "who is responsible for the report"),
		},
		"AllergyIntolerance": {
			ref("patient", []string{"patient"}, nil, "the patient"),
			tok("clinical-status", "clinicalStatus", "active | inactive | resolved"),
			tok("verification-status", "verificationStatus", "unconfirmed | confirmed | refuted | entered-in-error"),
			tok("code", "code", "the substance or product"),
			tok("category", "category", "food | medication | environment | biologic"),
			tok("criticality", "criticality", "low | high | unable-to-assess"),
			date("onset", "onset[x]", "when the reaction began"),
		},
		"MedicationRequest": {
			ref("patient", []string{"subject"}, patient, "the patient"),
			ref("subject", []string{"subject"}, nil, "the patient or group"),
			tok("status", "status", "active | on-hold | cancelled | completed | entered-in-error | stopped | draft | unknown"),
			tok("intent", "intent", "proposal | plan | order | original-order | ..."),
			date("authoredon", "authoredOn", "when the request was written"),
			ref("encounter", []string{"encounter"}, []string{"Encounter"}, "the encounter it was written in"),
			tok("code", "medicationCodeableConcept", "the medication code"),
			ref("medication", []string{"medicationReference"}, []string{"Medication"}, "the medication resource"),
			ref("requester", []string{"requester"}, nil, "who asked for it"),
			tok("category", "category", "inpatient | outpatient | community | discharge"),
		},
		"DocumentReference": {
			ref("patient", []string{"subject"}, patient, "the patient"),
			ref("subject", []string{"subject"}, nil, "the subject"),
			tok("type", "type", "kind of document (LOINC)"),
			tok("category", "category", "categorization of the document"),
			date("date", "date", "when the reference was created"),
			date("period", "context.period", "the time of service the document covers"),
			tok("status", "status", "current | superseded | entered-in-error"),
			tok("doc-status", "docStatus", "preliminary | final | amended | entered-in-error"),
			ref("encounter", []string{"context.encounter"}, []string{"Encounter"}, "the encounter it belongs to"),
			{Name: "identifier", Type: Token, Paths: []string{"masterIdentifier", "identifier"}, Doc: "master or other identifier"},
			ref("author", []string{"author"}, nil, "who wrote it"),
		},
	}
}

// catalog is the immutable, fully built set of definitions.
type catalog struct {
	defs  map[string][]Def
	types []string
}

func buildCatalog() *catalog {
	c := &catalog{defs: map[string][]Def{}}
	for rt, ds := range table() {
		all := append(common(), ds...)
		sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
		c.defs[rt] = all
		c.types = append(c.types, rt)
	}
	sort.Strings(c.types)
	return c
}

// cat is built once at package initialization and never modified afterwards;
// callers only ever receive copies.
var cat = buildCatalog()

// Defs returns the search parameters of a resource type, sorted by name.
// Every type, including ones without specific definitions, has _id and
// _lastUpdated.
func Defs(resourceType string) []Def {
	ds, ok := cat.defs[resourceType]
	if !ok {
		ds = common()
	}
	out := make([]Def, len(ds))
	for i, d := range ds {
		out[i] = d.clone()
	}
	return out
}

// clone copies d so callers cannot change the catalog through its slices.
func (d Def) clone() Def {
	d.Paths = append([]string(nil), d.Paths...)
	if d.Targets != nil {
		d.Targets = append([]string(nil), d.Targets...)
	}
	return d
}

// Lookup returns the definition of one parameter. Name may carry a modifier
// ("family:exact"); it is ignored.
func Lookup(resourceType, name string) (Def, bool) {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	ds, ok := cat.defs[resourceType]
	if !ok {
		ds = common()
	}
	for _, d := range ds {
		if d.Name == name {
			return d.clone(), true
		}
	}
	return Def{}, false
}

// ResourceTypes returns the resource types that have specific definitions, sorted.
func ResourceTypes() []string {
	out := make([]string, len(cat.types))
	copy(out, cat.types)
	return out
}

// Names returns the parameter names of a resource type, sorted.
func Names(resourceType string) []string {
	ds := Defs(resourceType)
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Name
	}
	return out
}

// UnixNanos converts t to a sort key in unix nanoseconds, clamping to the
// int64 range (years before 1678 sort first, after 2261 last).
func UnixNanos(t time.Time) int64 {
	switch {
	case t.Year() < 1678:
		return math.MinInt64
	case t.Year() > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// extractRules is bumped whenever Extract can return different entries for
// the same body (a new normalization, a fixed path walk). Definitions are
// covered by CatalogVersion on their own.
const extractRules = 1

// CatalogVersion identifies the parameter definitions and the extraction
// rules: two builds with the same CatalogVersion extract the same entries
// from the same body. Stores that keep entries derived from bodies (an
// on-disk search index) rebuild them when it changes.
func CatalogVersion() string {
	h := sha256.New()
	fmt.Fprintf(h, "extract rules %d\n", extractRules)
	for _, rt := range append(ResourceTypes(), "") {
		for _, d := range Defs(rt) {
			fmt.Fprintf(h, "%s\t%s\t%d\t%q\t%q\t%d\n", rt, d.Name, d.Type, d.Paths, d.Targets, d.kind)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Narrowing says how a reference parameter relates to a broader one on the
// same elements: every entry of Name is an entry of Broad with the same
// value whose target type is empty or one of Targets ("patient" narrows
// "subject" to Patient). An index can keep Broad's postings only and filter.
type Narrowing struct {
	Broad   string
	Targets []string
}

// NarrowsTo returns the Narrowing of a reference parameter of a resource
// type, if another reference parameter of the type indexes the same paths
// without a target restriction.
func NarrowsTo(resourceType, name string) (Narrowing, bool) {
	ds, ok := cat.defs[resourceType]
	if !ok {
		return Narrowing{}, false
	}
	var d *Def
	for i := range ds {
		if ds[i].Name == name {
			d = &ds[i]
		}
	}
	if d == nil || d.Type != Reference || len(d.Targets) == 0 {
		return Narrowing{}, false
	}
	for i := range ds {
		b := &ds[i]
		if b.Type == Reference && len(b.Targets) == 0 && b.kind == d.kind && slices.Equal(b.Paths, d.Paths) {
			return Narrowing{Broad: b.Name, Targets: append([]string(nil), d.Targets...)}, true
		}
	}
	return Narrowing{}, false
}
