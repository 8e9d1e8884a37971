// Package flavor defines what makes one simulated EHR vendor differ from
// another — URL layout, CapabilityStatement, smart-configuration, resource
// shapes, page sizes, write rules and error vocabulary — behind one small
// interface. Each vendor lives in its own sub-package (generic, epic, ...).
package flavor

import (
	"net/http"
	"net/url"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
)

// allTypes are the resource types the simulator can serve, in a stable order.
var allTypes = [...]string{
	"Patient", "Practitioner", "Organization", "Location", "Appointment", "Schedule", "Slot", "Coverage",
	"Encounter", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest", "DocumentReference",
}

// AllTypes returns every resource type the simulator can serve.
func AllTypes() []string { return append([]string(nil), allTypes[:]...) }

// Flavor is one vendor's behaviour. Implementations are immutable and safe
// for concurrent use.
type Flavor interface {
	gen.Decorator
	// Info returns the flavour's static facts.
	Info() Info
	// CapabilityStatement renders /metadata for one tenant.
	CapabilityStatement(e Endpoint) ([]byte, error)
	// SmartConfiguration renders .well-known/smart-configuration for one tenant.
	SmartConfiguration(e Endpoint) ([]byte, error)
	// Outcome maps a problem to an HTTP status and an OperationOutcome in the
	// vendor's vocabulary.
	Outcome(p Problem) (int, *fhir.OperationOutcome)
	// CheckSearch applies the vendor's search rules beyond parameter syntax
	// (required parameters, result limits). total is -1 before the search
	// ran, the number of matches after. strict is the tenant's setting.
	CheckSearch(resourceType string, params []store.SearchParam, total int, strict bool) *Problem
	// NormalizeQuery rewrites vendor spellings of parameters (e.g.
	// "_lastupdated") to the standard ones before parsing.
	NormalizeQuery(resourceType string, q url.Values)
}

// Info is a flavour's static facts.
type Info struct {
	Name string
	// BasePath is the FHIR base relative to the tenant root ("/fhir/r4").
	BasePath string
	// TokenPath and AuthorizePath are relative to the tenant root;
	// AuthorizePath is advertised only (backend services never use it).
	TokenPath     string
	AuthorizePath string
	// ResourceTypes are the types this vendor serves (a subset of AllTypes).
	ResourceTypes []string
	// DefaultCount and MaxCount bound search page sizes.
	DefaultCount, MaxCount int
	// Creates and Updates list the types that accept POST and PUT.
	Creates, Updates []string
	// Patches lists the types that accept PATCH with a JSON Patch body
	// (application/json-patch+json).
	Patches []string
	// UpdateCreate lets PUT create a resource with a client-chosen id.
	UpdateCreate bool
	// StaleStatus is the status for a stale If-Match: 412 (FHIR) or 409.
	StaleStatus int
	// Writes is how the vendor's write interactions differ from plain FHIR.
	Writes Writes
	// VendorAPI names a proprietary write API the tenant serves beside FHIR
	// (VendorAPIAthenaV1, VendorAPIECWWriteback; "" for none).
	VendorAPI string
	// NoRetryAfter leaves Retry-After off 429 answers (eClinicalWorks).
	NoRetryAfter bool
	// TokenTTL is the access-token lifetime.
	TokenTTL time.Duration
	// V1Scopes makes the authorization server accept only v1 scope syntax.
	V1Scopes bool
	// OutcomeOnEmptySearch adds the NoResults outcome (as an entry with
	// search.mode "outcome") to a searchset with no matches.
	OutcomeOnEmptySearch bool
	// History enables vread and _history (versioned reads).
	History bool
	// StrictSearchParams, when non-nil, lists per type the parameters the
	// vendor accepts; in strict mode others are refused.
	StrictSearchParams map[string][]string
	// Bulk is the vendor's FHIR Bulk Data export ($export) behaviour.
	Bulk Bulk
	// Paging is how the vendor's next links look and behave (zero: the
	// simulator's own "_page" token and pages that do not overlap).
	Paging Paging
	// Subscriptions is how the vendor's topic-based subscriptions differ
	// from the Subscriptions R5 Backport IG (zero: as the IG says).
	Subscriptions Subscriptions
}

// Proprietary write APIs (Info.VendorAPI).
const (
	// VendorAPIAthenaV1 is athenahealth's v1 REST API at
	// {tenant root}/v1/{practiceid}/...: patient registration and
	// appointment booking (form-encoded requests, JSON answers).
	VendorAPIAthenaV1 = "athenahealth-v1"
	// VendorAPIECWWriteback is eClinicalWorks' writeback API at
	// {tenant root}/writeback/{type}: JSON answers with numeric statuses.
	VendorAPIECWWriteback = "eclinicalworks-writeback"
)

// Writes describes a vendor's write behaviour (zero: plain FHIR R4 with
// conditional create refused).
type Writes struct {
	// ConditionalCreate honours If-None-Exist on create: no match creates,
	// one match answers 200 with the existing resource, several answer 412.
	// When false a create carrying If-None-Exist is refused (400), because
	// silently ignoring it would create duplicates the client meant to avoid.
	ConditionalCreate bool
	// EmptyBody answers successful creates, updates and patches without a
	// body (ETag, Location and Last-Modified only), whatever Prefer asks.
	EmptyBody bool
	// ZeroBasedVersions numbers a resource's first version 0 (ETag W/"0").
	ZeroBasedVersions bool
	// RequireIfMatch refuses an update or patch without If-Match
	// (PreconditionRequired).
	RequireIfMatch bool
	// LocationWithoutHistory makes Location [base]/{type}/{id} instead of
	// [base]/{type}/{id}/_history/{vid}.
	LocationWithoutHistory bool
}

// Write is a write the simulator is about to store, for WriteChecker.
type Write struct {
	Tenant string
	// Op is "create", "update" or "patch".
	Op           string
	ResourceType string
	// New is the resource as it would be stored (without meta on create).
	// Checkers must not modify it.
	New *gen.Obj
	// Old is the current version (update and patch; nil on create).
	Old *gen.Obj
	// Patch holds the values of a JSON Patch's operations (patch only).
	Patch []any
	// Exists reports whether a resource exists in the tenant.
	Exists func(resourceType, id string) bool
	// Get returns the current version of a resource (nil when absent).
	Get func(resourceType, id string) *gen.Obj
	// FindByIdentifier returns the ids of resources of a type carrying the
	// identifier system|value.
	FindByIdentifier func(resourceType, system, value string) []string
}

// WriteChecker is an optional Flavor hook: the vendor's business rules on
// creates, updates and patches, applied after the simulator's own checks of
// the request and before the write is stored.
type WriteChecker interface {
	CheckWrite(w Write) *Problem
}

// Subscriptions describes a vendor's deviations from the Subscriptions
// R5 Backport IG (rest-hook notifications).
type Subscriptions struct {
	// HubSignature signs notifications the WebSub way: a secret the client
	// sends in the X-Hub-Secret header of the Subscription create makes
	// every notification carry "X-Hub-Signature: sha256=<hex HMAC-SHA256
	// of the body>". Without the header notifications go unsigned.
	HubSignature bool
	// PerNotificationCount numbers events within each notification, not
	// per subscription: the events of a notification are 1..k,
	// eventsSinceSubscriptionStart is k, and each event carries a unique id
	// instead. There is no gap-free counter, so $events is not served.
	PerNotificationCount bool
	// StatusResource sends the SubscriptionStatus as a SubscriptionStatus
	// resource (the R4B/R5 shape, references relative) instead of the R4
	// Parameters, and an id-only notification holds no entry besides it.
	StatusResource bool
	// Payloads lists the payload contents accepted (empty: every one).
	Payloads []string
	// PracticeFilter is a filter parameter every Subscription must carry,
	// with the value PracticeValue (athenahealth: ah-practice).
	PracticeFilter, PracticeValue string
}

// Paging describes a vendor's next links.
type Paging struct {
	// Param is the query parameter that carries the page token in next
	// links (default "_page"; athenahealth "cursor", Oracle Health
	// "pageContext").
	Param string
	// Extra is a literal query suffix added to next links
	// ("direction=NEXT").
	Extra string
	// Repeat is how many entries at the end of each page are served again
	// at the start of the next one (Oracle Health: 1, so one id appears on
	// two pages).
	Repeat int
}

// PageParam returns the page-token parameter of next links.
func (i Info) PageParam() string {
	if i.Paging.Param != "" {
		return i.Paging.Param
	}
	return "_page"
}

// QueryChecker is an optional Flavor hook: the vendor's rules on a search's
// raw query, checked before NormalizeQuery and parsing, for what never
// reaches the standard parser (vendor-only parameters such as
// athenahealth's ah-practice, the form a vendor accepts for a value). strict
// is the tenant's setting.
type QueryChecker interface {
	CheckQuery(resourceType string, q url.Values, strict bool) *Problem
}

// Bulk export levels (the kick-off URL).
const (
	BulkSystem  = "system"  // [base]/$export
	BulkPatient = "patient" // [base]/Patient/$export
	BulkGroup   = "group"   // [base]/Group/{id}/$export
)

// Bulk is a vendor's FHIR Bulk Data export behaviour. Paths are relative to
// the tenant root, like TokenPath; "{id}" stands for the job id.
type Bulk struct {
	// Levels lists the kick-off levels served (BulkSystem, BulkPatient,
	// BulkGroup); empty: no $export at all.
	Levels []string
	// StatusPath is the status (poll) URL of a job: "{id}" in the path
	// ("/api/FHIR/R4/BulkRequest/{id}") or as a query value
	// ("/fhir/r4/$export-poll-status?_jobId={id}").
	StatusPath string
	// FilePrefix is the path under which a job's files are served:
	// FilePrefix + "/{id}/{file name}".
	FilePrefix string
	// RetryAfter is the Retry-After (seconds) of in-progress status answers
	// and of a refused concurrent kick-off.
	RetryAfter int
	// Progress is a fixed X-Progress value ("in-progress"); empty sends a
	// percentage ("40% complete").
	Progress string
	// OneJobPerClient refuses a kick-off (429) while the same client has a
	// job in progress.
	OneJobPerClient bool
	// Since reports whether _since (incremental export) is supported; when
	// false a _since is refused, or ignored under Prefer: handling=lenient.
	Since bool
	// RequiresAccessToken is the manifest's requiresAccessToken: files need
	// the bearer token.
	RequiresAccessToken bool
	// Redirect makes file URLs answer 307 to pre-signed storage URLs (which
	// refuse requests carrying Authorization).
	Redirect bool
}

// ServesBulk reports whether the flavour serves $export at level.
func (i Info) ServesBulk(level string) bool { return contains(i.Bulk.Levels, level) }

// Bulk export OperationDefinitions (Bulk Data Access IG v2).
const (
	BulkDataCapability     = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
	ExportOperation        = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
	PatientExportOperation = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
	GroupExportOperation   = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
)

// AddBulkOperations declares the flavour's $export levels in a
// CapabilityStatement built by BuildCapability: every level on
// rest.operation ("export", "patient-export", "group-export"), the Patient
// level also on the Patient resource, and instantiates bulk-data. (Epic's
// own statement carries group-export on a Group resource entry; the
// simulator serves no Group resource, so it is declared on rest only.)
func AddBulkOperations(cs *gen.Obj, info Info) {
	if len(info.Bulk.Levels) == 0 {
		return
	}
	inst := []any{}
	for _, x := range cs.List("instantiates") {
		if x == BulkDataCapability {
			inst = nil
			break
		}
		inst = append(inst, x)
	}
	if inst != nil {
		inst = append(inst, BulkDataCapability)
		if _, ok := cs.Get("instantiates"); ok {
			cs.Set("instantiates", inst)
		} else {
			cs.SetAfter("kind", "instantiates", inst)
		}
	}
	rests := cs.List("rest")
	if len(rests) == 0 {
		return
	}
	rest, ok := rests[0].(*gen.Obj)
	if !ok {
		return
	}
	var ops []any
	if info.ServesBulk(BulkSystem) {
		ops = append(ops, gen.O("name", "export", "definition", ExportOperation))
	}
	if info.ServesBulk(BulkPatient) {
		ops = append(ops, gen.O("name", "patient-export", "definition", PatientExportOperation))
		for _, x := range rest.List("resource") {
			if r, ok := x.(*gen.Obj); ok && r.Str("type") == "Patient" {
				r.Set("operation", gen.A(gen.O("name", "export", "definition", PatientExportOperation)))
			}
		}
	}
	if info.ServesBulk(BulkGroup) {
		ops = append(ops, gen.O("name", "group-export", "definition", GroupExportOperation))
	}
	rest.Set("operation", ops)
}

// Serves reports whether the flavour serves resourceType.
func (i Info) Serves(resourceType string) bool { return contains(i.ResourceTypes, resourceType) }

// CanCreate reports whether POST is allowed for resourceType.
func (i Info) CanCreate(resourceType string) bool { return contains(i.Creates, resourceType) }

// CanUpdate reports whether PUT is allowed for resourceType.
func (i Info) CanUpdate(resourceType string) bool { return contains(i.Updates, resourceType) }

// CanPatch reports whether PATCH is allowed for resourceType.
func (i Info) CanPatch(resourceType string) bool { return contains(i.Patches, resourceType) }

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// Endpoint is what a flavour needs to render discovery documents for one tenant.
type Endpoint struct {
	Tenant       string
	BaseURL      string // absolute FHIR base, no trailing slash
	TokenURL     string
	AuthorizeURL string
	Now          time.Time
	Strict       bool
	// OpenAuth is true when the tenant serves FHIR without tokens.
	OpenAuth bool
}

// Kind classifies a problem independently of any vendor.
type Kind int

// Problem kinds.
const (
	BadRequest           Kind = iota + 1 // malformed request, unknown or invalid parameter
	NotFound                             // no such resource or version
	UnknownType                          // resource type not served
	MethodNotAllowed                     // interaction not allowed on this type
	Unauthorized                         // missing, unknown or expired token
	Forbidden                            // token scopes do not allow the interaction
	StaleVersion                         // If-Match does not name the current version
	VersionConflict                      // concurrent-write conflict
	Unprocessable                        // business rule failed (FHIR 422)
	NoResults                            // search matched nothing (informational)
	ParamMissing                         // a required search parameter is missing
	PageExpired                          // the search session behind a page token expired
	TooManyResults                       // the search matched more than the vendor returns
	Throttled                            // rate limited (429)
	ServerError                          // internal error (500)
	Unavailable                          // temporarily unavailable (503)
	NotAcceptable                        // requested format not supported (406)
	UnsupportedMedia                     // request body format not supported (415)
	PreconditionRequired                 // an update without the If-Match the server requires
	Duplicate                            // a create would duplicate an existing resource
)

// Problem is an error (or warning) to report to the client. Diagnostics
// must not contain PHI: it may be logged.
type Problem struct {
	Kind        Kind
	Diagnostics string
	// Code is a vendor detail code chosen by the flavour's own rules (e.g.
	// Epic's "59141"); flavours render it in their vocabulary.
	Code string
}

// Standard maps a problem to the FHIR-standard status and issue code.
func Standard(p Problem) (status int, severity, code string) {
	switch p.Kind {
	case BadRequest:
		return http.StatusBadRequest, "error", "invalid"
	case NotFound:
		return http.StatusNotFound, "error", "not-found"
	case UnknownType:
		return http.StatusNotFound, "error", "not-supported"
	case MethodNotAllowed:
		return http.StatusMethodNotAllowed, "error", "not-supported"
	case Unauthorized:
		return http.StatusUnauthorized, "error", "login"
	case Forbidden:
		return http.StatusForbidden, "error", "forbidden"
	case StaleVersion:
		return http.StatusPreconditionFailed, "error", "conflict"
	case VersionConflict:
		return http.StatusConflict, "error", "conflict"
	case Unprocessable:
		return http.StatusUnprocessableEntity, "error", "processing"
	case NoResults:
		return http.StatusOK, "information", "informational"
	case ParamMissing:
		return http.StatusBadRequest, "error", "required"
	case PageExpired:
		return http.StatusGone, "error", "not-found"
	case TooManyResults:
		return http.StatusBadRequest, "error", "too-costly"
	case Throttled:
		return http.StatusTooManyRequests, "error", "throttled"
	case Unavailable:
		return http.StatusServiceUnavailable, "error", "transient"
	case NotAcceptable:
		return http.StatusNotAcceptable, "error", "not-supported"
	case UnsupportedMedia:
		return http.StatusUnsupportedMediaType, "error", "not-supported"
	case PreconditionRequired:
		return http.StatusPreconditionRequired, "error", "required"
	case Duplicate:
		return http.StatusConflict, "error", "duplicate"
	default:
		return http.StatusInternalServerError, "fatal", "exception"
	}
}

// StandardOutcome is the flavour-neutral rendering of a problem.
func StandardOutcome(p Problem) (int, *fhir.OperationOutcome) {
	status, sev, code := Standard(p)
	return status, fhir.NewOutcome(sev, code, p.Diagnostics)
}
