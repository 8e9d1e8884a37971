package fhirv2

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir"
)

// ErrMissingData is wrapped by every error about FHIR input that lacks what
// the HL7 v2 message requires.
var ErrMissingData = errors.New("required data missing")

// ErrInvalid is wrapped by every error about FHIR input that cannot be read:
// malformed JSON, an unexpected resourceType, a bad date or bad base64.
var ErrInvalid = errors.New("invalid FHIR input")

func missing(element string) error {
	return fmt.Errorf("%w: %s", ErrMissingData, element)
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// The FHIR R4 elements this package reads. Unknown elements are ignored.

type codeableConcept = fhir.CodeableConcept

type identifier struct {
	Use    string           `json:"use"`
	Type   *codeableConcept `json:"type"`
	System string           `json:"system"`
	Value  string           `json:"value"`
}

type reference struct {
	Reference  string      `json:"reference"`
	Type       string      `json:"type"`
	Identifier *identifier `json:"identifier"`
	Display    string      `json:"display"`
}

type humanName struct {
	Use    string   `json:"use"`
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Prefix []string `json:"prefix"`
	Suffix []string `json:"suffix"`
}

type address struct {
	Use        string   `json:"use"`
	Type       string   `json:"type"`
	Text       string   `json:"text"`
	Line       []string `json:"line"`
	City       string   `json:"city"`
	District   string   `json:"district"`
	State      string   `json:"state"`
	PostalCode string   `json:"postalCode"`
	Country    string   `json:"country"`
}

type contactPoint struct {
	System string `json:"system"`
	Value  string `json:"value"`
	Use    string `json:"use"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type quantity struct {
	Value json.Number `json:"value"`
	Unit  string      `json:"unit"`
	Code  string      `json:"code"`
}

type money struct {
	Value    json.Number `json:"value"`
	Currency string      `json:"currency"`
}

type attachment struct {
	ContentType string `json:"contentType"`
	Data        string `json:"data"`
	URL         string `json:"url"`
	Title       string `json:"title"`
	Creation    string `json:"creation"`
}

type resourceHead struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
}

type patient struct {
	resourceHead
	Identifier       []identifier     `json:"identifier"`
	Name             []humanName      `json:"name"`
	Telecom          []contactPoint   `json:"telecom"`
	Gender           string           `json:"gender"`
	BirthDate        string           `json:"birthDate"`
	DeceasedBoolean  *bool            `json:"deceasedBoolean"`
	DeceasedDateTime string           `json:"deceasedDateTime"`
	Address          []address        `json:"address"`
	MaritalStatus    *codeableConcept `json:"maritalStatus"`
}

type practitioner struct {
	resourceHead
	Identifier    []identifier `json:"identifier"`
	Name          []humanName  `json:"name"`
	Qualification []struct {
		Code codeableConcept `json:"code"`
	} `json:"qualification"`
}

type practitionerRole struct {
	resourceHead
	Practitioner *reference `json:"practitioner"`
}

type location struct {
	resourceHead
	Identifier []identifier      `json:"identifier"`
	Name       string            `json:"name"`
	Type       []codeableConcept `json:"type"`
}

type encounter struct {
	resourceHead
	Identifier []identifier `json:"identifier"`
	Class      *fhir.Coding `json:"class"`
	Period     period       `json:"period"`
	Location   []struct {
		Location reference `json:"location"`
	} `json:"location"`
	Participant []struct {
		Type       []codeableConcept `json:"type"`
		Individual *reference        `json:"individual"`
	} `json:"participant"`
}

type coverage struct {
	resourceHead
	Identifier   []identifier     `json:"identifier"`
	Status       string           `json:"status"`
	SubscriberID string           `json:"subscriberId"`
	Relationship *codeableConcept `json:"relationship"`
	Period       period           `json:"period"`
	Payor        []reference      `json:"payor"`
	Class        []struct {
		Type  codeableConcept `json:"type"`
		Value string          `json:"value"`
		Name  string          `json:"name"`
	} `json:"class"`
}

type organization struct {
	resourceHead
	Identifier []identifier `json:"identifier"`
	Name       string       `json:"name"`
}

type documentReference struct {
	resourceHead
	MasterIdentifier *identifier       `json:"masterIdentifier"`
	Identifier       []identifier      `json:"identifier"`
	Status           string            `json:"status"`
	DocStatus        string            `json:"docStatus"`
	Type             *codeableConcept  `json:"type"`
	Subject          *reference        `json:"subject"`
	Date             string            `json:"date"`
	Author           []reference       `json:"author"`
	Authenticator    *reference        `json:"authenticator"`
	SecurityLabel    []codeableConcept `json:"securityLabel"`
	Content          []struct {
		Attachment attachment `json:"attachment"`
	} `json:"content"`
	Context *struct {
		Encounter []reference `json:"encounter"`
		Period    period      `json:"period"`
	} `json:"context"`
}

type appointment struct {
	resourceHead
	Identifier         []identifier      `json:"identifier"`
	Status             string            `json:"status"`
	CancelationReason  *codeableConcept  `json:"cancelationReason"`
	ServiceCategory    []codeableConcept `json:"serviceCategory"`
	ServiceType        []codeableConcept `json:"serviceType"`
	AppointmentType    *codeableConcept  `json:"appointmentType"`
	ReasonCode         []codeableConcept `json:"reasonCode"`
	Description        string            `json:"description"`
	Start              string            `json:"start"`
	End                string            `json:"end"`
	MinutesDuration    int               `json:"minutesDuration"`
	Comment            string            `json:"comment"`
	PatientInstruction string            `json:"patientInstruction"`
	Participant        []struct {
		Type   []codeableConcept `json:"type"`
		Actor  *reference        `json:"actor"`
		Status string            `json:"status"`
	} `json:"participant"`
}

type chargeItem struct {
	resourceHead
	Identifier         []identifier     `json:"identifier"`
	Status             string           `json:"status"`
	Code               *codeableConcept `json:"code"`
	Subject            *reference       `json:"subject"`
	Context            *reference       `json:"context"`
	OccurrenceDateTime string           `json:"occurrenceDateTime"`
	OccurrencePeriod   *period          `json:"occurrencePeriod"`
	Performer          []struct {
		Function *codeableConcept `json:"function"`
		Actor    reference        `json:"actor"`
	} `json:"performer"`
	Quantity      *quantity         `json:"quantity"`
	PriceOverride *money            `json:"priceOverride"`
	Enterer       *reference        `json:"enterer"`
	EnteredDate   string            `json:"enteredDate"`
	Reason        []codeableConcept `json:"reason"`
}

// resource is what every decoded resource type embeds.
type resource interface{ head() *resourceHead }

func (h *resourceHead) head() *resourceHead { return h }

// decode reads body as a resource of the given type into v.
func decode(body []byte, want string, v resource) error {
	if len(body) == 0 {
		return missing(want)
	}
	if err := json.Unmarshal(body, v); err != nil {
		// a resource of another type may fail on its own fields: say so
		var h resourceHead
		if json.Unmarshal(body, &h) == nil && h.ResourceType != want {
			return invalid("want a %s, got resourceType %q", want, h.ResourceType)
		}
		return invalid("%s: %v", want, err)
	}
	if got := v.head().ResourceType; got != want {
		return invalid("want a %s, got resourceType %q", want, got)
	}
	return nil
}

// resolver finds and decodes the resources references point to, each once
// per message. It belongs to one call: no state outlives it.
type resolver struct {
	refs  map[string][]byte
	cache map[string]resource
}

func newResolver(refs map[string][]byte) *resolver {
	return &resolver{refs: refs, cache: map[string]resource{}}
}

// resolve returns the resource of type want that r points to, decoded, or
// nil when refs does not hold it.
func resolve[T any, PT interface {
	*T
	resource
}](res *resolver, r *reference, want string) (PT, error) {
	if r == nil || refType(r) != want {
		return nil, nil
	}
	key := refKey(r)
	if key == "" {
		key = r.Reference
	}
	if v, ok := res.cache[key]; ok {
		if pt, ok := v.(PT); ok {
			return pt, nil
		}
	}
	body := lookup(res.refs, r)
	if body == nil {
		return nil, nil
	}
	pt := PT(new(T))
	if err := decode(body, want, pt); err != nil {
		return nil, err
	}
	res.cache[key] = pt
	return pt, nil
}

// refKey reduces a reference to "Type/id": an absolute URL keeps its last two
// path segments, a _history suffix is dropped. It returns "" for contained
// ("#id"), logical-only and malformed references.
func refKey(r *reference) string {
	if r == nil {
		return ""
	}
	s := r.Reference
	if s == "" || strings.HasPrefix(s, "#") {
		return ""
	}
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimRight(s, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	typ, id := parts[len(parts)-2], parts[len(parts)-1]
	if typ == "" || id == "" {
		return ""
	}
	return typ + "/" + id
}

// refType is the resource type a reference points to.
func refType(r *reference) string {
	if r == nil {
		return ""
	}
	if k := refKey(r); k != "" {
		return k[:strings.IndexByte(k, '/')]
	}
	return r.Type
}

// lookup returns the body refs holds for r, or nil.
func lookup(refs map[string][]byte, r *reference) []byte {
	if r == nil || refs == nil {
		return nil
	}
	if b, ok := refs[r.Reference]; ok && r.Reference != "" {
		return b
	}
	if k := refKey(r); k != "" {
		return refs[k]
	}
	return nil
}

// firstCoding returns the first coding with a code (nil when none).
func firstCoding(cc *codeableConcept) *fhir.Coding {
	if cc == nil {
		return nil
	}
	for i := range cc.Coding {
		if cc.Coding[i].Code != "" {
			return &cc.Coding[i]
		}
	}
	return nil
}

// codingIn returns the first coding of cc from one of the systems.
func codingIn(cc *codeableConcept, systems ...string) *fhir.Coding {
	if cc == nil {
		return nil
	}
	for i := range cc.Coding {
		for _, s := range systems {
			if cc.Coding[i].System == s && cc.Coding[i].Code != "" {
				return &cc.Coding[i]
			}
		}
	}
	return nil
}
