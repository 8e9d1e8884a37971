// Package contract says, per EHR vendor profile and version, which write
// intents the EHR accepts, through which channel (FHIR REST, HL7 v2, the
// vendor's own REST API), with which required fields and constraints, and
// how the EHR reports errors. The write-back API refuses an intent the
// practice's EHR cannot accept at submission, with the contract's reason,
// and checks the canonical → vendor mapped resource against the contract's
// constraints before anything is sent (field-level messages, HTTP 422).
// The mapping document shows the contract of each practice.
//
// Default holds the shipped contracts (one per vendor profile; NextGen one
// per product, by version range). Registry.ForPractice picks a practice's
// contract and, when the practice has an HL7 v2 outbound interface, adds
// the HL7 routes (Contract.WithHL7). Contract.Check judges a vendor-shaped
// resource; Validate maps a canonical resource with the practice's mapping
// set and then checks it, which is what the write-back API calls. Markdown
// and WriteDoc render contracts for the mapping document and
// docs/writeback-contracts.md.
package contract

import (
	"fmt"
	"sort"
)

// Intent is a kind of write an app asks for.
type Intent string

// Write intents.
const (
	NoteCreate         Intent = "note.create"      // a clinical note → DocumentReference or MDM^T02
	AppointmentBook    Intent = "appointment.book" // → Appointment create, SIU^S12, or vendor booking API
	AppointmentResched Intent = "appointment.reschedule"
	AppointmentCancel  Intent = "appointment.cancel"
	ConditionUpsert    Intent = "condition.upsert"   // add or update a problem / diagnosis
	ObservationRecord  Intent = "observation.record" // vitals
	ChargePost         Intent = "charge.post"        // → DFT^P03 or the vendor's API
)

// Intents lists every intent, in a stable order.
func Intents() []Intent {
	return []Intent{NoteCreate, AppointmentBook, AppointmentResched, AppointmentCancel, ConditionUpsert, ObservationRecord, ChargePost}
}

// Channel is how a write reaches the EHR.
type Channel string

// Channels.
const (
	ChannelFHIR       Channel = "fhir"        // FHIR REST create / update / patch
	ChannelHL7        Channel = "hl7"         // an HL7 v2 message over MLLP
	ChannelVendorREST Channel = "vendor-rest" // the vendor's proprietary API
)

// FHIR operations a Support names (Support.Operation, channel fhir).
const (
	OpCreate = "create" // POST
	OpUpdate = "update" // PUT of the whole resource
	OpPatch  = "patch"  // JSON Patch
	// OpUpsert: a create when the resource has no id, an update when it
	// names the EHR's record (see Support.OperationFor).
	OpUpsert = "upsert"
)

// OperationFor is the operation to run for a resource that has (or has
// not) an id: OpUpsert resolves to OpCreate or OpUpdate; every other
// operation is returned as it is.
func (s Support) OperationFor(hasID bool) string {
	if s.Operation != OpUpsert {
		return s.Operation
	}
	if hasID {
		return OpUpdate
	}
	return OpCreate
}

// Support is what a contract says about one intent.
type Support struct {
	Intent    Intent
	Supported bool
	// Reason explains a refusal in words a practice manager can act on
	// ("Epic does not accept appointment creates through FHIR R4; book
	// through the SIU interface or the scheduling API").
	Reason string
	// Channel, ResourceType and Operation say how a supported intent is
	// written: e.g. fhir / DocumentReference / create, hl7 / - / MDM^T02.
	Channel      Channel
	ResourceType string
	Operation    string // OpCreate, OpUpdate, OpPatch, OpUpsert; an HL7 message type; a vendor endpoint
	// ConditionalCreate: the EHR honours If-None-Exist, so a create can be
	// made idempotent on our identifier; otherwise search-before-create.
	ConditionalCreate bool
	// IfMatch: updates can carry If-Match (optimistic concurrency).
	IfMatch bool
	// StaleStatus is the status a stale If-Match gets (412, or 409).
	StaleStatus int
	// EmptyCreateBody: a successful create answers without a body (the
	// engine reads the record back from Location).
	EmptyCreateBody bool
	// Required lists FHIRPath-like element paths the written resource must
	// have ("status", "content.attachment.contentType").
	Required []string
	// Rules are the vendor's constraints beyond presence.
	Rules []Rule
	// Note says more about how a supported intent is written, in words for
	// the mapping document (the endpoint, the status transitions allowed).
	Note string
}

// Rule is one constraint of a vendor on a written resource.
type Rule struct {
	ID          string // stable id, e.g. "oracle-health.docref.one-content"
	Description string // what it requires, in plain words
	// Check returns the violations of resource (a parsed FHIR JSON object).
	Check func(resource map[string]any) []FieldError `json:"-"`
}

// FieldError is one violation, reported to the app with HTTP 422.
type FieldError struct {
	Path    string `json:"path"`    // element path, e.g. "content[0].attachment.contentType"
	Rule    string `json:"rule"`    // the rule id, or "required"
	Message string `json:"message"` // what is wrong and how to fix it
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// Contract is one vendor's (and version range's) write contract.
type Contract struct {
	Vendor   string
	Versions string // version range the contract applies to ("" all)
	// Errors describes how the EHR reports a failed write, for the docs.
	Errors string
	// HL7 is set on a contract WithHL7 made: it counts the practice's HL7
	// v2 outbound interface.
	HL7     bool
	intents map[Intent]Support
}

// New returns a contract from its supports (one per intent; intents left
// out are unsupported with a generic reason).
func New(vendor, versions, errors string, supports ...Support) *Contract {
	c := &Contract{Vendor: vendor, Versions: versions, Errors: errors, intents: map[Intent]Support{}}
	for _, s := range supports {
		c.intents[s.Intent] = s
	}
	return c
}

// Support returns what the contract says about an intent.
func (c *Contract) Support(i Intent) Support {
	if s, ok := c.intents[i]; ok {
		return s
	}
	return Support{Intent: i, Reason: fmt.Sprintf("%s: no write path is known for %s", c.Vendor, i)}
}

// Supports lists what the contract says about every intent, in Intents order.
func (c *Contract) Supports() []Support {
	out := make([]Support, 0, len(c.intents))
	for _, i := range Intents() {
		out = append(out, c.Support(i))
	}
	return out
}

// Registry holds the contracts by vendor.
type Registry struct {
	byVendor map[string][]*Contract
}

// NewRegistry returns a registry of contracts.
func NewRegistry(cs ...*Contract) *Registry {
	r := &Registry{byVendor: map[string][]*Contract{}}
	for _, c := range cs {
		r.byVendor[c.Vendor] = append(r.byVendor[c.Vendor], c)
	}
	return r
}

// Vendors lists the vendors with a contract, sorted.
func (r *Registry) Vendors() []string {
	out := make([]string, 0, len(r.byVendor))
	for v := range r.byVendor {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// For returns the contract of a vendor at a version ("May 2026",
// "5.0.1.698"; "" = unknown, taken as the newest release). Contracts with a
// version range are tried in the order they were given, then a contract
// without one. A version or range that cannot be read is an error.
func (r *Registry) For(vendor, version string) (*Contract, error) {
	cs := r.byVendor[vendor]
	if len(cs) == 0 {
		return nil, fmt.Errorf("contract: no write contract for vendor %q", vendor)
	}
	var fallback *Contract
	for _, c := range cs {
		if c.Versions == "" {
			if fallback == nil {
				fallback = c
			}
			continue
		}
		ok, err := MatchVersion(c.Versions, version)
		if err != nil {
			return nil, fmt.Errorf("contract: %s: %w", vendor, err)
		}
		if ok {
			return c, nil
		}
	}
	if fallback != nil {
		if _, err := MatchVersion("", version); err != nil {
			return nil, fmt.Errorf("contract: %s: %w", vendor, err)
		}
		return fallback, nil
	}
	return nil, fmt.Errorf("contract: no write contract for %s version %q", vendor, version)
}

// Options are what a practice's configuration adds to its vendor's
// contract.
type Options struct {
	// HL7Outbound: the practice has an HL7 v2 outbound destination to its
	// EHR (write-back over MLLP), so the intents mediflow's HL7 channel
	// carries are accepted even where the vendor's APIs refuse them.
	HL7Outbound bool
}

// ForPractice returns the contract of a practice: its vendor's contract at
// the version (see For), with the HL7 v2 routes when the practice has an
// HL7 outbound destination (see Contract.WithHL7).
func (r *Registry) ForPractice(vendor, version string, o Options) (*Contract, error) {
	c, err := r.For(vendor, version)
	if err != nil {
		return nil, err
	}
	if o.HL7Outbound {
		c = c.WithHL7()
	}
	return c, nil
}
