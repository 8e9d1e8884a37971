// Package conceptmap holds mediflow's code tables: it loads FHIR R4
// ConceptMap resources, translates codes through them in both directions
// (vendor → canonical, and canonical → vendor for write-back), applies a
// rule's policy to codes a table does not map, and counts those codes.
//
// A loaded Map is immutable and safe for concurrent use.
//
// Beyond R4, a group may carry the extension SourcePatternExtension (a
// valueString such as "https://fhir.cerner.com/*/codeSet/4"): the group then
// also applies to every source system the pattern matches. It models code
// systems that a vendor mints per installation (Epic's legal-sex OIDs, one
// per site; Oracle Health's codeSets, one URL per tenant) while group.source
// keeps one real system, the vendor sandbox's.
package conceptmap

import (
	"slices"
	"sync"
)

// SourcePatternExtension is the URL of mediflow's extension on
// ConceptMap.group whose valueString is a pattern of further source systems
// the group applies to: "*" stands for one or more characters other than
// "/". The extension may repeat.
const SourcePatternExtension = "http://mediflow.dev/fhir/StructureDefinition/conceptmap-source-pattern"

// Equivalences of R4 (value set http://hl7.org/fhir/ValueSet/concept-map-equivalence).
const (
	EquivalenceRelatedTo   = "relatedto"
	EquivalenceEquivalent  = "equivalent"
	EquivalenceEqual       = "equal"
	EquivalenceWider       = "wider"
	EquivalenceSubsumes    = "subsumes"
	EquivalenceNarrower    = "narrower"
	EquivalenceSpecializes = "specializes"
	EquivalenceInexact     = "inexact"
	EquivalenceUnmatched   = "unmatched"
	EquivalenceDisjoint    = "disjoint"
)

// Unmapped modes of a group (R4 ConceptMap.group.unmapped.mode) that this
// package honours; "other-map" is refused at load.
const (
	UnmappedProvided = "provided" // a code the group does not list maps to itself
	UnmappedFixed    = "fixed"    // a code the group does not list maps to one fixed code
)

// Target is the result of a translation, or one target of an Element.
type Target struct {
	System      string // the group's target system
	Code        string
	Display     string
	Equivalence string // R4 ConceptMapEquivalence, of the source to this target
	Comment     string
	// Fallback is true when the code was not listed and the group's
	// unmapped rule produced the target (provided: the same code, with
	// equivalence "equal"; fixed: the fixed code, with "inexact").
	Fallback bool
}

// Element is one source code of a group with its targets.
type Element struct {
	Code    string
	Display string
	Targets []Target
}

// Group maps codes of one source system to one target system.
type Group struct {
	Source         string
	SourceVersion  string
	SourcePatterns []string // from SourcePatternExtension: further source systems
	Target         string
	TargetVersion  string
	Elements       []Element
	// UnmappedMode is "", "provided" or "fixed"; UnmappedCode and
	// UnmappedDisplay are the fixed code.
	UnmappedMode    string
	UnmappedCode    string
	UnmappedDisplay string
}

// group is a Group with its lookup index.
type group struct {
	Group
	index map[string]int // element code → index in Elements
}

// Map is one loaded ConceptMap.
type Map struct {
	url, version, name, title, description, status, publisher string
	file                                                      string
	reversed                                                  bool
	groups                                                    []group

	reverseOnce sync.Once
	reverse     *Map
}

// URL returns the ConceptMap's canonical url.
func (m *Map) URL() string { return m.url }

// Version returns ConceptMap.version ("" when absent).
func (m *Map) Version() string { return m.version }

// Name returns ConceptMap.name.
func (m *Map) Name() string { return m.name }

// Title returns ConceptMap.title.
func (m *Map) Title() string { return m.title }

// Description returns ConceptMap.description (markdown).
func (m *Map) Description() string { return m.description }

// Status returns ConceptMap.status (draft, active, retired, unknown).
func (m *Map) Status() string { return m.status }

// Publisher returns ConceptMap.publisher.
func (m *Map) Publisher() string { return m.publisher }

// File returns the path, within the loaded file system, of the file the
// map came from.
func (m *Map) File() string { return m.file }

// Reversed reports whether the map is the reverse (see Reverse) of a loaded
// map.
func (m *Map) Reversed() bool { return m.reversed }

// Groups returns a copy of the map's groups in file order, for rendering the
// full table.
func (m *Map) Groups() []Group {
	out := make([]Group, len(m.groups))
	for i, g := range m.groups {
		c := g.Group
		c.SourcePatterns = slices.Clone(g.SourcePatterns)
		c.Elements = make([]Element, len(g.Elements))
		for j, e := range g.Elements {
			e.Targets = slices.Clone(e.Targets)
			c.Elements[j] = e
		}
		out[i] = c
	}
	return out
}

// Len returns how many source codes the map lists, over all groups.
func (m *Map) Len() int {
	n := 0
	for _, g := range m.groups {
		n += len(g.Elements)
	}
	return n
}

// Set is a collection of loaded maps, by url.
type Set struct {
	byURL  map[string]*Map
	sorted []*Map
}

// Get returns the map with the canonical url.
func (s *Set) Get(url string) (*Map, bool) {
	m, ok := s.byURL[url]
	return m, ok
}

// All returns the maps sorted by url.
func (s *Set) All() []*Map { return slices.Clone(s.sorted) }

// With returns a new Set holding s's maps with those of overrides in place
// of maps with the same url, and overrides' other maps added: how a
// practice's own tables (for example its Epic site's legal-sex system)
// replace shipped ones. Neither set changes.
func (s *Set) With(overrides *Set) *Set {
	out := &Set{byURL: make(map[string]*Map, len(s.byURL)+len(overrides.byURL))}
	for u, m := range s.byURL {
		out.byURL[u] = m
	}
	for u, m := range overrides.byURL {
		out.byURL[u] = m
	}
	out.sort()
	return out
}

func (s *Set) sort() {
	s.sorted = s.sorted[:0]
	for _, m := range s.byURL {
		s.sorted = append(s.sorted, m)
	}
	slices.SortFunc(s.sorted, func(a, b *Map) int {
		switch {
		case a.url < b.url:
			return -1
		case a.url > b.url:
			return 1
		}
		return 0
	})
}
