package v2fhir

import (
	"sort"
	"strings"
)

// This file holds the exported description of the conversion rules: what
// the spec files under specs/ say, resolved and checked, for tools that
// render them (the mapping document) and for tests. The interpreter runs a
// compiled form of the same rules (compile.go).

// Source says where something was defined: a spec file (relative to the
// package, e.g. "specs/segments/patient.yaml") and a line in it.
type Source struct {
	File string
	Line int
}

// String renders the source as "file:line".
func (s Source) String() string {
	if s.Line == 0 {
		return s.File
	}
	return s.File + ":" + itoa(s.Line)
}

// Spec is the conversion of one message type and trigger event, e.g.
// ADT^A01: which segments make which resources, their ids, the references
// between them and the rules of the trigger event.
type Spec struct {
	MessageCode  string // MSH-9-1, e.g. "ADT"
	TriggerEvent string // MSH-9-2, e.g. "A01"
	Structure    string // the v2 message structure, e.g. "ADT_A01"
	Description  string // the trigger event's name
	Note         string
	Resources    []ResourceSpec
	Merges       []MergeSpec
	Source       Source // the trigger event's entry in the message spec file
}

// ResourceSpec is one kind of resource a message makes: one resource per
// occurrence of Segment, built by Map, then by the Include maps from the
// segments that belong to it, then by Rules and EventRules.
type ResourceSpec struct {
	Name    string // how keys and rules refer to it: "@patient"
	Type    string // FHIR resource type
	Segment string // each occurrence of this segment makes one resource
	Map     *SegmentMap
	Include []Include
	// Key lists alternative natural keys; the first whose required parts
	// are valued gives the id ("v2-" + a hash of Type and the parts). A
	// part is a message path ("PID-3-1"), "@name" (the id of another
	// resource of the message) and ends in "?" when it may be empty.
	Key [][]string
	// Parent names the resource this one belongs to in the message's
	// structure (an OBX's OBR): keys and references name the nearest one
	// before it only, and the parent's "refs" list its children.
	Parent   string
	When     []string // conditions for making the resource at all
	Required bool     // the message is not converted without one
	Emit     bool     // false: only its id is computed, for references
	MergeDup bool     // occurrences with the same key are one resource (else their ids are numbered)
	Rules    []*Rule  // the message's own rules for it (references, constants)
	// EventRules are the rules of the trigger event, applied last.
	EventRules []*Rule
	Note       string
	Source     Source
}

// Include maps a segment into the resource it belongs to: the nearest
// resource before it (or the first one when none is before); with Adjacent
// only when nothing but include segments lie between them.
type Include struct {
	Segment  string
	Map      *SegmentMap
	Adjacent bool
	Source   Source
}

// MergeSpec makes a Merge from each occurrence of Segment: From is the id
// that Type would get from the From key, Into the id of resource Into.
type MergeSpec struct {
	Type    string
	Segment string
	From    [][]string
	Into    string
	Source  Source
}

// SegmentMap maps one segment into one resource type (the IG's
// "PID[Patient]").
type SegmentMap struct {
	Name     string // "PID[Patient]"
	Segment  string
	Resource string
	IG       string // the IG map it follows
	Note     string
	Rules    []*Rule
	Source   Source
}

// DatatypeMap maps a value of one v2 data type to one FHIR type (the IG's
// "CX[Identifier]"). When Resource is set the map builds a resource of its
// own, identified by Key (component paths such as ".1" or ".9?"), and the
// rule that applies it writes a Reference (with Display) to it.
type DatatypeMap struct {
	Name     string // "CX[Identifier]"
	Datatype string // "CX"
	Target   string // "Identifier"
	IG       string
	Note     string
	Resource string
	Key      [][]string
	Display  string
	Rules    []*Rule
	Source   Source
}

// Rule is one conversion rule. It reads a value (From: message paths, the
// first valued one wins; Comp: components of the value being mapped; or
// else the value of the enclosing rule), checks When, and writes the FHIR
// element at Path (relative to the resource or the enclosing element) in
// one of these ways: with the data type map Map, with the conversion As
// (translating the code through Table first when set), as the constant
// Value, as Format, as a Reference to the message's resource Ref, as
// References to the resources Refs that belong to this one; or Remove it.
// Warn adds a warning instead. Rules apply to the element at Path; Choose
// applies only its first rule whose When holds.
//
// A path step "name[]" adds an element per value (per repetition of a
// repeating field), "name[n]" is the n-th element (from 0), "name[#tag]"
// one element shared by every rule that names the same tag.
type Rule struct {
	From    []string
	Comp    []string
	Path    string
	Map     *DatatypeMap
	As      string
	Table   *Table
	Value   string // JSON
	Format  string
	Ref     string
	Refs    string
	Join    string // values written to the same path are joined with this (and converted once)
	Plus    [][2]string
	Default string // JSON: written when nothing else was
	Remove  bool
	Warn    string
	When    []string
	Note    string
	Rules   []*Rule
	Choose  []*Rule
	Source  Source
}

// Table is a code table (an IG concept map): v2 codes to FHIR codes.
type Table struct {
	Name         string // "AdministrativeSex"
	V2           string // HL7 table number, e.g. "0001"
	IG           string // the IG concept map it follows
	System       string // FHIR code system of the targets (entries may override)
	KeepUnmapped bool   // codes not in the table are kept as they are
	Entries      []TableEntry
	Source       Source
}

// TableEntry maps one v2 code.
type TableEntry struct {
	Code    string
	Target  string
	Display string
	System  string // when it differs from the table's
	Note    string // why, where the IG gives no target
}

// V2Segment is a segment definition from specs/v2/segments.yaml.
type V2Segment struct {
	ID     string
	Name   string
	Fields []V2Field // Fields[i] is field i+1
	Source Source
}

// V2Field is a field of a segment or a component of a data type.
type V2Field struct {
	Num     int
	Name    string
	Type    string
	Repeats bool
	Source  Source
}

// V2Datatype is a data type definition from specs/v2/datatypes.yaml.
type V2Datatype struct {
	Name       string
	Title      string
	Components []V2Field // empty for primitive types
	Source     Source
}

// Catalog is everything the spec files define.
type Catalog struct {
	Messages     []Spec // sorted by message code and trigger event
	SegmentMaps  []*SegmentMap
	DatatypeMaps []*DatatypeMap
	Tables       []*Table
	Segments     []*V2Segment
	Datatypes    []*V2Datatype
	// Conversions names the conversions ("as") the interpreter provides,
	// with what each does.
	Conversions map[string]string
}

// LoadCatalog loads and checks the embedded spec files. Each call loads
// them anew, so callers may keep or change what it returns.
func LoadCatalog() (*Catalog, error) {
	set, err := loadSpecs(specFS, "specs")
	if err != nil {
		return nil, err
	}
	return set.cat, nil
}

// Specs returns the conversion of every supported message type and trigger
// event, sorted by message code and trigger. It returns nil if the embedded
// specs do not load (New reports why; the package's tests make sure they
// do).
func Specs() []Spec {
	cat, err := LoadCatalog()
	if err != nil {
		return nil
	}
	return cat.Messages
}

// SpecFor returns the conversion of one message type and trigger event.
func SpecFor(code, trigger string) (Spec, bool) {
	for _, s := range Specs() {
		if strings.EqualFold(s.MessageCode, code) && strings.EqualFold(s.TriggerEvent, trigger) {
			return s, true
		}
	}
	return Spec{}, false
}

func sortSpecs(ss []Spec) {
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].MessageCode != ss[j].MessageCode {
			return ss[i].MessageCode < ss[j].MessageCode
		}
		return ss[i].TriggerEvent < ss[j].TriggerEvent
	})
}
