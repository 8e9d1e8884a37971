// Package mask hides protected health information in FHIR resources so that
// mapped data can be shown as examples in the data-mapping document and the
// coverage report: names, identifier values, addresses, phone numbers and
// e-mail addresses, birth dates (the year stays) and free text are masked;
// codes, code systems, references and the shape of every value stay, so a
// reader still sees what a rule produced (+########### is an E.164 number,
// #####-#### a ZIP+4).
//
// Masking is driven by the FHIR R4 type model: an element is masked by what
// it is (HumanName, Identifier.value, ContactPoint.value, a string of free
// text), not by its name. Elements the model does not know (vendor junk) are
// masked whole.
package mask

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhirpath"
)

// MaxText is how many characters of a masked text are kept (as shapes);
// longer text ends in "…".
const MaxText = 40

// Narrative is what a resource's narrative (text.div) becomes.
const Narrative = `<div xmlns="http://www.w3.org/1999/xhtml">(masked)</div>`

// Binary is what base64 content (an attachment's data) becomes.
const Binary = "(masked)"

// Text masks a text by its shape: letters become x (X when upper case),
// digits #, everything else stays; at most MaxText characters are kept.
func Text(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == MaxText {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case unicode.IsDigit(r):
			b.WriteByte('#')
		case unicode.IsUpper(r):
			b.WriteByte('X')
		case unicode.IsLetter(r):
			b.WriteByte('x')
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Date masks a date or date-time but its year: "1987-04-12" becomes
// "1987-##-##". A value that does not start with a year is masked whole.
func Date(s string) string {
	if len(s) < 4 || !isDigits(s[:4]) {
		return Text(s)
	}
	b := []byte(s)
	for i := 4; i < len(b); i++ {
		if b[i] >= '0' && b[i] <= '9' {
			b[i] = '#'
		}
	}
	return string(b)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// JSON masks a FHIR resource (JSON) and returns the masked resource.
func JSON(data []byte) ([]byte, error) {
	v, err := fhirpath.DecodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("mask: %w", err)
	}
	res, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("mask: a resource must be a JSON object")
	}
	Resource(res)
	out, err := marshal(res)
	if err != nil {
		return nil, fmt.Errorf("mask: %w", err)
	}
	return out, nil
}

// marshal writes compact JSON without escaping <, > and &.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Resource masks a decoded FHIR resource in place (contained resources and
// Bundle entries included). A resource of an unknown type is masked whole
// but for its resourceType and id.
func Resource(res map[string]any) {
	m := model.R4()
	rt, _ := res["resourceType"].(string)
	t := m.Type(rt)
	if t == nil || t.Kind() != model.KindResource {
		for k, v := range res {
			if k != "resourceType" && k != "id" {
				res[k] = Any(v)
			}
		}
		return
	}
	object(m, t, res, false)
}

// Any masks a JSON value whose FHIR type is not known: every text is masked
// but for the members that carry codes, systems, urls and references
// (system, code, url, reference, use, status, resourceType, id, unit).
func Any(v any) any {
	switch x := v.(type) {
	case string:
		return Text(x)
	case map[string]any:
		for k, e := range x {
			if keepKey[k] {
				if _, ok := e.(string); ok {
					continue
				}
			}
			x[k] = Any(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = Any(e)
		}
		return x
	default:
		return v // numbers and booleans
	}
}

var keepKey = map[string]bool{
	"system": true, "code": true, "url": true, "reference": true, "use": true,
	"status": true, "resourceType": true, "id": true, "unit": true, "version": true,
}

// keepText lists string elements that hold no PHI: the text of codes,
// units, references and place names. Element ids are not among them: some
// EHRs build them from identifier values (Oracle Health's "CI-490689587-0").
var keepText = map[string]bool{
	"Coding.display":         true,
	"Coding.version":         true,
	"CodeableConcept.text":   true,
	"Quantity.unit":          true,
	"Reference.reference":    true,
	"Address.state":          true,
	"Address.country":        true,
	"Organization.name":      true,
	"Location.name":          true,
	"HealthcareService.name": true,
	"Resource.implicitRules": true,
	"Meta.source":            true,
	"Identifier.system":      true,
	"ContactPoint.system":    true,
	"Extension.url":          true,
	"Attachment.contentType": true,
	"Attachment.language":    true,
	"Narrative.status":       true,
	"HumanName.use":          true,
	"Address.use":            true,
	"Address.type":           true,
	"Identifier.use":         true,
	"ContactPoint.use":       true,
	"Bundle.entry.fullUrl":   true,
	"Bundle.link.url":        true,
	"Bundle.link.relation":   true,
	"Bundle.entry.search":    true,
	"Bundle.entry.request":   true,
	"Bundle.entry.response":  true,
}

// birthDates are the date elements that are masked but for the year.
var birthDates = map[string]bool{
	"Patient.birthDate":         true,
	"Patient.deceased":          true,
	"RelatedPerson.birthDate":   true,
	"Person.birthDate":          true,
	"Practitioner.birthDate":    true,
	"Patient.contact.birthDate": true,
}

// listed reports whether list names element name of type t or of a type t
// specialises ("Age" finds "Quantity.unit").
func listed(list map[string]bool, t *model.Type, name string) bool {
	for b := t; b != nil; b = b.Base() {
		if list[b.Name()+"."+name] {
			return true
		}
	}
	return false
}

// object masks the members of an element or resource of type t. strict
// masks every value but codes, urls and the keepText elements: the
// members of a name or an address, their extensions included (Synthea
// puts an address's latitude and longitude in one).
func object(m *model.Model, t *model.Type, obj map[string]any, strict bool) {
	for k, v := range obj {
		if k == "resourceType" {
			continue
		}
		name := k
		if strings.HasPrefix(k, "_") {
			// A primitive's id and extensions: an Element.
			obj[k] = elementOf(m, "Element", v, strict)
			continue
		}
		ci, choice, ok := t.Lookup(name)
		if !ok {
			obj[k] = Any(v)
			continue
		}
		c := t.Children()[ci]
		var ct *model.Type
		switch {
		case choice >= 0:
			ct = t.ChildType(ci, choice)
		case len(c.Types) == 1:
			ct = t.ChildType(ci, 0)
		}
		if ct == nil {
			obj[k] = Any(v)
			continue
		}
		obj[k] = value(m, ct, t, c.Name, v, strict)
	}
}

// elementOf masks a value of the named type.
func elementOf(m *model.Model, typ string, v any, strict bool) any {
	t := m.Type(typ)
	if t == nil {
		return Any(v)
	}
	return value(m, t, nil, "", v, strict)
}

// value masks v, the value (or array of values) of type t of element name
// of type parent (nil for a value that is no element of a known parent).
func value(m *model.Model, t, parent *model.Type, name string, v any, strict bool) any {
	if arr, ok := v.([]any); ok {
		for i, e := range arr {
			arr[i] = value(m, t, parent, name, e, strict)
		}
		return arr
	}
	keep := parent != nil && listed(keepText, parent, name)
	switch t.Kind() {
	case model.KindResource:
		if obj, ok := v.(map[string]any); ok {
			Resource(obj)
			return obj
		}
		return Any(v)
	case model.KindPrimitive:
		return primitive(t.Name(), keep, parent != nil && listed(birthDates, parent, name), strict, v)
	default:
		obj, ok := v.(map[string]any)
		if !ok {
			return Any(v)
		}
		if keep {
			// A whole element that holds no PHI (Bundle.entry.request).
			return obj
		}
		object(m, t, obj, strict || t.IsA("HumanName") || t.IsA("Address"))
		return obj
	}
}

// primitive masks a primitive value of FHIR type typ.
func primitive(typ string, keep, birth, strict bool, v any) any {
	s, ok := v.(string)
	if !ok {
		if strict && !keep {
			switch n := v.(type) {
			case json.Number:
				return Text(n.String())
			case float64:
				return Text(strconv.FormatFloat(n, 'f', -1, 64))
			}
		}
		return v // numbers and booleans hold no PHI by themselves
	}
	if birth {
		return Date(s)
	}
	switch typ {
	case "string", "markdown":
		if keep {
			return s
		}
		return Text(s)
	case "xhtml":
		return Narrative
	case "base64Binary":
		return Binary
	case "date", "dateTime", "instant":
		if strict {
			return Date(s)
		}
		return s
	case "decimal", "integer", "positiveInt", "unsignedInt", "integer64", "time":
		if strict && !keep {
			return Text(s)
		}
		return s
	default:
		// code, uri, id: no PHI by themselves.
		return s
	}
}

// Short renders a masked value for a table cell: text as it is, anything
// else as compact JSON, cut after max characters with "…".
func Short(v any, max int) string {
	var s string
	if str, ok := v.(string); ok {
		s = str
	} else {
		b, err := marshal(v)
		if err != nil {
			return "?"
		}
		s = string(b)
	}
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "…"
}
