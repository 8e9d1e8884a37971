package v2fhir

import (
	"fmt"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
)

// defaultSystemPrefix starts the Identifier.system of an assigning
// authority that no configured system maps.
const defaultSystemPrefix = "urn:mediflow:v2:id:"

// Options configure a Converter.
type Options struct {
	// IdentifierSystems maps an assigning authority (its namespace id,
	// CX-4-1, or universal id, CX-4-2) to the FHIR Identifier.system URI
	// of the identifiers it assigns.
	IdentifierSystems map[string]string
	// DefaultSystem prefixes the namespace of an assigning authority that
	// IdentifierSystems does not map and that has no usable universal id
	// (default "urn:mediflow:v2:id:", giving e.g. "urn:mediflow:v2:id:HOSP").
	DefaultSystem string
	// TimeZone is the zone of v2 times that carry no UTC offset when MSH-7
	// has none either (FHIR requires an offset beside a time of day). Nil
	// means UTC, and such messages get a warning.
	TimeZone *time.Location
}

// Converter converts parsed HL7 v2 messages to FHIR R4 resources by the
// embedded spec files. It is safe for concurrent use.
type Converter struct {
	set  *specSet
	opts Options
}

// New loads and checks the embedded spec files. An error names every spec
// file and line that is wrong.
func New(opts Options) (*Converter, error) {
	set, err := loadSpecs(specFS, "specs")
	if err != nil {
		return nil, err
	}
	return &Converter{set: set, opts: opts}, nil
}

// Resource is one FHIR resource made from a message.
type Resource struct {
	Type string
	ID   string
	Body []byte // FHIR R4 JSON, its "id" equal to ID
}

// Merge says that resource From of type Type was merged into Into (ADT^A40:
// From is the merged, old patient; Into the surviving one). References to
// From are to be re-pointed to Into (see Repoint).
type Merge struct {
	Type, From, Into string
}

// Result is what one message converts to.
type Result struct {
	Resources []Resource
	Deletes   []Resource // Type and ID only; no spec deletes resources yet
	Merges    []Merge
	Warnings  []string // what could not be converted; never holds field values
}

// UnsupportedError is returned for a message type and trigger event that no
// spec converts.
type UnsupportedError struct {
	MessageCode, TriggerEvent string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("v2fhir: no conversion for %s^%s", e.MessageCode, e.TriggerEvent)
}

// Convert converts one message. It returns an *UnsupportedError when no
// spec converts the message's type and trigger event, and an error when a
// resource the spec requires (the patient, the report, ...) cannot be made.
func (c *Converter) Convert(m *hl7.Message) (*Result, error) {
	if m == nil {
		return nil, fmt.Errorf("v2fhir: nil message")
	}
	h := m.Header()
	code := strings.ToUpper(strings.TrimSpace(h.MessageCode))
	trig := strings.ToUpper(strings.TrimSpace(h.TriggerEvent))
	msg, ok := c.set.msgs[code+"^"+trig]
	if !ok {
		return nil, &UnsupportedError{MessageCode: h.MessageCode, TriggerEvent: h.TriggerEvent}
	}
	r := newRun(c, m, msg)
	return r.convert()
}
