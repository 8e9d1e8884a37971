// Package validate checks FHIR R4 JSON resources against the base
// definitions of package model, so that what mediflow emits can be held to
// the specification. Its messages never quote the resource's values, so
// issues are safe to log.
//
// Checked: strict JSON syntax (UTF-8, no duplicate properties); a known,
// concrete resourceType; unknown elements; cardinality (arrays versus single
// values, min and max, required elements); the JSON type and R4 format of
// every primitive (boolean, 32-bit integer, positiveInt, unsignedInt,
// decimal, string, code, id, uri, url, canonical, oid, uuid, base64Binary,
// date, dateTime, instant, time — with real calendar days — and the xhtml
// div); choice elements (one type, a valid suffix); primitive extensions
// (_name: shape, type, alignment of _array with its array, nulls only where
// they align); nested complex types and backbone elements, contentReference
// included; contained resources (and dom-2) and resources inside Bundle
// entries and Parameters; ext-1; empty strings, arrays and objects and
// nulls; and the codes of required bindings whose value sets model can
// enumerate (a code; a Coding's system and code; one Coding of a
// CodeableConcept).
//
// Not checked: other FHIRPath invariants (such as con-4 or bdl-*), profiles
// and slicing, extensible and weaker bindings, required bindings to value
// sets that cannot be enumerated (MIME types, UCUM units, currencies),
// reference targets and formats, and XHTML content beyond the namespaced
// div.
package validate

import (
	"strconv"
	"sync"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// Severities of an Issue.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Codes of an Issue.
const (
	CodeStructure    = "structure"       // not JSON, not an object, duplicate property
	CodeResourceType = "resource-type"   // missing, unknown or abstract resourceType
	CodeUnknown      = "unknown-element" // a property the type does not define
	CodeCardinality  = "cardinality"     // too few or too many values, a missing required element, two value[x]
	CodeType         = "type"            // the wrong JSON type: array for a single value, string for an object...
	CodeInvalid      = "invalid-value"   // a primitive value out of its format or range
	CodeEmpty        = "empty"           // an empty string, array or object, or null
	CodeBinding      = "binding"         // a code outside the value set of a required binding
	CodeInvariant    = "invariant"       // dom-2 (contained resources hold none), ext-1 (extension or value)
)

// Issue is one problem found in a resource. Path is FHIRPath-like
// ("Patient.name[0].given[1]", "Observation.valueQuantity.value",
// "Bundle.entry[2].resource.status"); a primitive's extension is under the
// primitive's name ("Patient.birthDate.extension[0]"). Messages name
// elements, types and value sets, never values.
type Issue struct {
	Path     string
	Severity string
	Code     string
	Message  string
}

// HasErrors reports whether any issue is an error.
func HasErrors(issues []Issue) bool {
	for _, is := range issues {
		if is.Severity == SeverityError {
			return true
		}
	}
	return false
}

// DefaultMaxIssues is how many issues Validate reports at most by default.
const DefaultMaxIssues = 100

// Validator validates resources against a model. It is safe for concurrent
// use; it keeps parse buffers for reuse.
type Validator struct {
	m         *model.Model
	maxIssues int
	// ext-1: an Extension has extensions or a value, not both.
	extension        *model.Type
	extExt, extValue int
	pool             sync.Pool // *state
}

// Option configures a Validator.
type Option func(*Validator)

// WithMaxIssues sets how many issues are reported at most (n <= 0: no
// limit); the last one says that more were left out.
func WithMaxIssues(n int) Option { return func(v *Validator) { v.maxIssues = n } }

// New returns a Validator for the model.
func New(m *model.Model, opts ...Option) *Validator {
	v := &Validator{m: m, maxIssues: DefaultMaxIssues, extension: m.Type("Extension")}
	v.extExt, _, _ = v.extension.Lookup("extension")
	v.extValue, _, _ = v.extension.Lookup("value")
	for _, o := range opts {
		o(v)
	}
	return v
}

// Validate checks one FHIR JSON resource against the model; see
// Validator.Validate.
func Validate(m *model.Model, resource []byte) []Issue { return New(m).Validate(resource) }

// slot records the properties of an object that denote one element: the
// value's node and the primitive extension's ("_name") node, -1 when absent,
// and the choice type each was named with.
type slot struct {
	val, ext         int32
	valType, extType int16
}

// state is the scratch of one validation.
type state struct {
	v       *Validator
	d       doc
	path    []byte
	slots   []slot
	issues  []Issue
	dropped int
}

// Validate checks one FHIR JSON resource (a Bundle's entries included) and
// returns its issues, nil when there are none.
func (v *Validator) Validate(resource []byte) []Issue {
	st, _ := v.pool.Get().(*state)
	if st == nil {
		st = &state{v: v}
	}
	st.issues, st.dropped, st.path = nil, 0, st.path[:0]
	issues := st.run(string(resource))
	st.issues = nil
	if cap(st.d.nodes) > 1<<17 { // keep huge documents' buffers (32 bytes a node) out of the pool
		st.d.nodes = nil
	}
	v.pool.Put(st)
	return issues
}

func (st *state) run(src string) []Issue {
	if err := st.d.parse(src); err != nil {
		st.add(SeverityError, CodeStructure, err.Error())
		return st.issues
	}
	root := &st.d.nodes[0]
	if root.kind != jObject {
		st.add(SeverityError, CodeStructure, "a resource must be a JSON object")
		return st.issues
	}
	st.resource(0, false)
	if st.dropped > 0 {
		st.issues = append(st.issues, Issue{Severity: SeverityWarning, Code: CodeStructure,
			Message: strconv.Itoa(st.dropped) + " more issues not reported"})
	}
	return st.issues
}

// add records an issue at the current path.
func (st *state) add(severity, code, msg string) {
	if max := st.v.maxIssues; max > 0 && len(st.issues) >= max {
		st.dropped++
		return
	}
	st.issues = append(st.issues, Issue{Path: string(st.path), Severity: severity, Code: code, Message: msg})
}

// push appends ".name" (or "name" at the root) to the path and returns the
// length to truncate back to.
func (st *state) push(name string) int {
	n := len(st.path)
	if n > 0 {
		st.path = append(st.path, '.')
	}
	st.path = appendName(st.path, name)
	return n
}

func (st *state) pushIndex(i int) int {
	n := len(st.path)
	st.path = append(st.path, '[')
	st.path = strconv.AppendInt(st.path, int64(i), 10)
	st.path = append(st.path, ']')
	return n
}

func (st *state) pop(n int) { st.path = st.path[:n] }

// appendName appends a property name to a path, replacing characters that
// cannot be in an element name and shortening it, so that a hostile key
// cannot smuggle text into logs.
func appendName(dst []byte, name string) []byte {
	const maxName = 64
	for i := 0; i < len(name); i++ {
		if i == maxName {
			return append(dst, "..."...)
		}
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '?')
		}
	}
	return dst
}

// resource validates the resource at node id, whose path is already pushed
// (nothing for the root), and returns its type (nil when it has none).
func (st *state) resource(id int32, contained bool) *model.Type {
	d := &st.d
	var rt string
	found := false
	for c := d.nodes[id].first; c >= 0; c = d.nodes[c].next {
		n := &d.nodes[c]
		if d.key(n) == "resourceType" {
			found = true
			if n.kind == jString {
				rt = d.str(n)
			}
			break
		}
	}
	root := len(st.path) == 0
	switch {
	case !found:
		st.add(SeverityError, CodeResourceType, "resource has no resourceType")
		return nil
	case rt == "":
		st.add(SeverityError, CodeResourceType, "resourceType must be a non-empty string")
		return nil
	}
	t := st.v.m.Type(rt)
	if t == nil || t.Kind() != model.KindResource {
		st.add(SeverityError, CodeResourceType, "resourceType is not an R4 resource type")
		return nil
	}
	if t.Abstract() {
		st.add(SeverityError, CodeResourceType, "resourceType names an abstract type")
		return nil
	}
	mark := len(st.path)
	if root {
		st.path = append(st.path, t.Name()...)
	}
	if contained {
		for c := d.nodes[id].first; c >= 0; c = d.nodes[c].next {
			if d.key(&d.nodes[c]) == "contained" {
				st.add(SeverityError, CodeInvariant, "a contained resource must not contain resources (dom-2)")
			}
		}
	}
	st.object(id, t, true)
	st.pop(mark)
	return t
}

// object validates an object of type t whose path is pushed.
func (st *state) object(id int32, t *model.Type, isResource bool) {
	d := &st.d
	obj := &d.nodes[id]
	if obj.n == 0 {
		st.add(SeverityError, CodeEmpty, "an object must not be empty")
		return
	}
	children := t.Children()
	base := len(st.slots)
	for range children {
		st.slots = append(st.slots, slot{val: -1, ext: -1})
	}
	slots := st.slots[base : base+len(children)]

	// Pass 1: map properties to elements.
	for c := obj.first; c >= 0; c = d.nodes[c].next {
		n := &d.nodes[c]
		key := d.key(n)
		if isResource && key == "resourceType" {
			continue
		}
		ext := len(key) > 1 && key[0] == '_'
		name := key
		if ext {
			name = key[1:]
		}
		ci, choice, ok := t.Lookup(name)
		if ok && children[ci].Choice && choice < 0 {
			ok = false // a choice element needs its type in the name
		}
		if !ok {
			mark := st.push(name)
			if ext {
				st.add(SeverityError, CodeUnknown, "unknown element (primitive extension of an element "+t.Name()+" does not have)")
			} else {
				st.add(SeverityError, CodeUnknown, "unknown element: "+t.Name()+" has no such element")
			}
			st.pop(mark)
			continue
		}
		if choice < 0 {
			choice = 0
		}
		s := &slots[ci]
		if ext {
			if t.ChildType(ci, choice).Kind() != model.KindPrimitive {
				mark := st.push(name)
				st.add(SeverityError, CodeUnknown, "a primitive extension on an element that is not a primitive")
				st.pop(mark)
				continue
			}
			if s.ext >= 0 {
				st.twice(name, s.extType != int16(choice), children[ci])
				continue
			}
			s.ext, s.extType = c, int16(choice)
		} else {
			if s.val >= 0 {
				st.twice(name, s.valType != int16(choice), children[ci])
				continue
			}
			s.val, s.valType = c, int16(choice)
		}
	}

	if t == st.v.extension {
		hasExt := slots[st.v.extExt].val >= 0 || slots[st.v.extExt].ext >= 0
		hasValue := slots[st.v.extValue].val >= 0 || slots[st.v.extValue].ext >= 0
		if hasExt == hasValue {
			st.add(SeverityError, CodeInvariant, "an extension must have either extensions or a value, not both (ext-1)")
		}
	}

	// Pass 2: check each element present, in definition order, and the
	// required ones.
	for i := range children {
		s := slots[i]
		c := &children[i]
		if s.val < 0 && s.ext < 0 {
			if c.Min > 0 {
				mark := st.push(c.Name)
				st.add(SeverityError, CodeCardinality, "required element "+c.Name+" is missing (min "+strconv.Itoa(c.Min)+")")
				st.pop(mark)
			}
			continue
		}
		st.element(t, i, c, s)
	}
	st.slots = st.slots[:base]
}

// twice reports a property given twice, or two types of one choice element.
func (st *state) twice(name string, otherChoice bool, c model.Child) {
	mark := st.push(name)
	if otherChoice {
		st.add(SeverityError, CodeCardinality, "more than one type given for the choice element "+c.Name+"[x]")
	} else {
		st.add(SeverityError, CodeStructure, "property given twice")
	}
	st.pop(mark)
}

// element checks the value and primitive extension of element i of t.
func (st *state) element(t *model.Type, i int, c *model.Child, s slot) {
	d := &st.d
	choice := int(s.valType)
	if s.val < 0 {
		choice = int(s.extType)
	} else if s.ext >= 0 && s.extType != s.valType {
		mark := st.push(c.Name)
		st.path = appendUpperFirst(st.path, c.Types[s.extType])
		st.add(SeverityError, CodeType, "the primitive extension's type differs from the value's")
		st.pop(mark)
		return
	}
	ct := t.ChildType(i, choice)
	mark := st.push(c.Name)
	if c.Choice {
		st.path = appendUpperFirst(st.path, c.Types[choice])
	}
	defer st.pop(mark)

	var val, ext *node
	if s.val >= 0 {
		val = &d.nodes[s.val]
	}
	if s.ext >= 0 {
		ext = &d.nodes[s.ext]
	}
	contained := c.Name == "contained" && t.Kind() == model.KindResource
	var binding *model.Binding
	if c.Binding != nil && c.Binding.Strength == "required" {
		binding = c.Binding
	}

	if !c.Array {
		if val != nil {
			switch val.kind {
			case jArray:
				st.add(SeverityError, CodeType, "a single value is expected, not an array")
			case jNull:
				st.add(SeverityError, CodeEmpty, "null is not a value")
			default:
				st.value(s.val, ct, binding, false)
			}
		}
		if ext != nil {
			switch ext.kind {
			case jObject:
				st.object(s.ext, ct, false)
			case jNull:
				st.add(SeverityError, CodeEmpty, "null is not a primitive extension")
			default:
				st.add(SeverityError, CodeType, "a primitive extension must be an object")
			}
		}
		return
	}

	// An array element. Count values: the value array and the extension
	// array pair by index.
	count := 0
	if val != nil {
		if val.kind != jArray {
			st.add(SeverityError, CodeType, "an array is expected")
			return
		}
		if val.n == 0 {
			st.add(SeverityError, CodeEmpty, "an array must not be empty")
			return
		}
		count = int(val.n)
	}
	if ext != nil {
		if ext.kind != jArray {
			st.add(SeverityError, CodeType, "a primitive extension of a repeating element must be an array")
			return
		}
		if ext.n == 0 {
			st.add(SeverityError, CodeEmpty, "an array must not be empty")
			return
		}
		if val != nil && ext.n != val.n {
			st.add(SeverityError, CodeStructure, "the primitive extension array and the value array differ in length")
			return
		}
		count = int(ext.n)
	}
	if count < c.Min || (c.Max >= 0 && count > c.Max) {
		st.add(SeverityError, CodeCardinality, "has "+strconv.Itoa(count)+" values, allowed "+card(c.Min, c.Max))
	}
	vi, ei := int32(-1), int32(-1)
	if val != nil {
		vi = val.first
	}
	if ext != nil {
		ei = ext.first
	}
	for k := 0; k < count; k++ {
		m := st.pushIndex(k)
		var vn, en *node
		if vi >= 0 {
			vn = &d.nodes[vi]
		}
		if ei >= 0 {
			en = &d.nodes[ei]
		}
		vNull := vn == nil || vn.kind == jNull
		eNull := en == nil || en.kind == jNull
		switch {
		case vNull && eNull:
			st.add(SeverityError, CodeEmpty, "null is not a value")
		default:
			if !vNull {
				st.value(vi, ct, binding, contained)
			}
			if !eNull {
				if en.kind == jObject {
					st.object(ei, ct, false)
				} else {
					st.add(SeverityError, CodeType, "a primitive extension must be an object")
				}
			}
		}
		st.pop(m)
		if vi >= 0 {
			vi = d.nodes[vi].next
		}
		if ei >= 0 {
			ei = d.nodes[ei].next
		}
	}
}

func card(min, max int) string {
	s := strconv.Itoa(min) + ".."
	if max < 0 {
		return s + "*"
	}
	return s + strconv.Itoa(max)
}

// value checks one (non-null) value of type ct; contained says it is a
// contained resource.
func (st *state) value(id int32, ct *model.Type, binding *model.Binding, contained bool) {
	n := &st.d.nodes[id]
	switch ct.Kind() {
	case model.KindPrimitive:
		st.primitive(n, ct, binding)
	case model.KindResource:
		if n.kind != jObject {
			st.add(SeverityError, CodeType, "a resource must be a JSON object")
			return
		}
		st.containedResource(id, ct, contained)
	default:
		if n.kind != jObject {
			st.add(SeverityError, CodeType, "a "+ct.Name()+" must be a JSON object")
			return
		}
		st.object(id, ct, false)
		if binding != nil {
			st.codedBinding(id, ct, binding)
		}
	}
}

// containedResource validates a resource inside another (contained, a
// Bundle entry, a Parameters value) declared as type decl.
func (st *state) containedResource(id int32, decl *model.Type, contained bool) {
	if t := st.resource(id, contained); t != nil && !t.IsA(decl.Name()) {
		st.add(SeverityError, CodeType, "the resource must be a "+decl.Name())
	}
}

// primitive checks a JSON value against a FHIR primitive type.
func (st *state) primitive(n *node, ct *model.Type, binding *model.Binding) {
	d := &st.d
	name := ct.Name()
	switch name {
	case "boolean":
		if n.kind != jTrue && n.kind != jFalse {
			st.add(SeverityError, CodeType, "a boolean must be JSON true or false")
		}
		return
	case "integer", "positiveInt", "unsignedInt":
		if n.kind != jNumber {
			st.add(SeverityError, CodeType, "an "+name+" must be a JSON number")
			return
		}
		v, ok := integerValue(d.src[n.v0:n.v1])
		switch {
		case !ok:
			st.add(SeverityError, CodeInvalid, "not a 32-bit integer")
		case name == "positiveInt" && v < 1:
			st.add(SeverityError, CodeInvalid, "a positiveInt must be at least 1")
		case name == "unsignedInt" && v < 0:
			st.add(SeverityError, CodeInvalid, "an unsignedInt must not be negative")
		}
		return
	case "decimal":
		if n.kind != jNumber {
			st.add(SeverityError, CodeType, "a decimal must be a JSON number")
		}
		return // the JSON number grammar is the decimal format
	}
	if n.kind != jString {
		st.add(SeverityError, CodeType, "a "+name+" must be a JSON string")
		return
	}
	s := d.str(n)
	if s == "" {
		st.add(SeverityError, CodeEmpty, "a string must not be empty")
		return
	}
	ok := true
	switch name {
	case "string", "markdown":
		ok = validString(s)
		if ok && len(s) > 1<<20 {
			st.add(SeverityError, CodeInvalid, "a string must not exceed 1 MB")
			return
		}
		if ok && onlySpace(s) {
			st.add(SeverityWarning, CodeInvalid, "the string holds only whitespace")
		} else if ok && hasControl(s) {
			st.add(SeverityWarning, CodeInvalid, "the string holds control characters")
		}
	case "code":
		ok = validCode(s)
	case "id":
		ok = validID(s)
	case "uri", "url", "canonical":
		ok = validURI(s)
	case "oid":
		ok = validOID(s)
	case "uuid":
		ok = validUUID(s)
	case "base64Binary":
		ok = validBase64(s)
	case "date":
		ok = validDate(s)
	case "dateTime":
		ok = validDateTime(s)
	case "instant":
		ok = validInstant(s)
	case "time":
		ok = validTime(s)
	case "xhtml":
		ok = validXHTML(s)
	}
	if !ok {
		st.add(SeverityError, CodeInvalid, "not a valid "+name)
		return
	}
	if binding != nil {
		if in, known := st.v.m.ValueSetContains(binding.ValueSet, "", s); known && !in {
			st.add(SeverityError, CodeBinding, "the code is not in the required value set "+binding.ValueSet)
		}
	}
}

// codedBinding checks a Coding or CodeableConcept bound to a required value
// set: the Coding, or one Coding of the CodeableConcept, must be in it.
func (st *state) codedBinding(id int32, ct *model.Type, binding *model.Binding) {
	if _, enumerable := st.v.m.ValueSetCodes(binding.ValueSet); !enumerable {
		return
	}
	d := &st.d
	switch {
	case ct.IsA("Coding"):
		if in, ok := st.codingIn(id, binding); ok && !in {
			st.add(SeverityError, CodeBinding, "the coding is not in the required value set "+binding.ValueSet)
		}
	case ct.IsA("CodeableConcept"):
		for c := d.nodes[id].first; c >= 0; c = d.nodes[c].next {
			n := &d.nodes[c]
			if d.key(n) != "coding" || n.kind != jArray {
				continue
			}
			for e := n.first; e >= 0; e = d.nodes[e].next {
				if in, _ := st.codingIn(e, binding); in {
					return
				}
			}
		}
		st.add(SeverityError, CodeBinding, "no coding is in the required value set "+binding.ValueSet)
	}
}

// codingIn reports whether the Coding at id is in the value set; ok is
// false when the Coding has no usable code (reported elsewhere if wrong).
func (st *state) codingIn(id int32, binding *model.Binding) (in, ok bool) {
	d := &st.d
	n := &d.nodes[id]
	if n.kind != jObject {
		return false, false
	}
	var system, code string
	for c := n.first; c >= 0; c = d.nodes[c].next {
		m := &d.nodes[c]
		if m.kind != jString {
			continue
		}
		switch d.key(m) {
		case "system":
			system = d.str(m)
		case "code":
			code = d.str(m)
		}
	}
	if code == "" {
		return false, true
	}
	in, _ = st.v.m.ValueSetContains(binding.ValueSet, system, code)
	if system == "" {
		in = false // a code without its system is not a member of any value set
	}
	return in, true
}

// appendUpperFirst appends a type code as a choice element's suffix:
// "dateTime" → "DateTime".
func appendUpperFirst(dst []byte, s string) []byte {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return append(dst, s...)
	}
	return append(append(dst, s[0]-'a'+'A'), s[1:]...)
}
