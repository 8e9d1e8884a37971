package conceptmap

import "strings"

// rank orders equivalences from the best translation to the weakest; codes
// absent here (unmatched, disjoint) are no translation.
var rank = map[string]int{
	EquivalenceEqual:       0,
	EquivalenceEquivalent:  1,
	EquivalenceWider:       2,
	EquivalenceSubsumes:    3,
	EquivalenceNarrower:    4,
	EquivalenceSpecializes: 5,
	EquivalenceRelatedTo:   6,
	EquivalenceInexact:     7,
}

// usable reports whether a target is a translation (it has a code and its
// equivalence is not unmatched or disjoint).
func usable(t Target) bool {
	_, ok := rank[t.Equivalence]
	return ok && t.Code != ""
}

// matches reports whether the group applies to a source system: "" matches
// every group.
func (g *group) matches(system string) bool {
	if system == "" || system == g.Source {
		return true
	}
	for _, p := range g.SourcePatterns {
		if matchPattern(p, system) {
			return true
		}
	}
	return false
}

// best returns the element's best usable target.
func best(e *Element) (Target, bool) {
	var out Target
	found := false
	for _, t := range e.Targets {
		if !usable(t) {
			continue
		}
		if !found || rank[t.Equivalence] < rank[out.Equivalence] {
			out, found = t, true
		}
	}
	return out, found
}

// Translate translates a code of a source system ("" matches any group's
// source). Groups are tried in file order; the first group listing the code
// with a usable target gives its best target (equal, then equivalent, wider,
// subsumes, narrower, specializes, relatedto, inexact). A code listed only
// as unmatched or disjoint has no translation. A code no matching group
// lists takes the unmapped rule of the first matching group that has one
// (Target.Fallback is then true); otherwise ok is false.
func (m *Map) Translate(system, code string) (Target, bool) {
	listed := false
	for i := range m.groups {
		g := &m.groups[i]
		if !g.matches(system) {
			continue
		}
		if j, ok := g.index[code]; ok {
			listed = true
			if t, ok := best(&g.Elements[j]); ok {
				return t, true
			}
		}
	}
	if listed {
		return Target{}, false
	}
	return m.fallback(system, code)
}

// TranslateTo is Translate restricted to the groups whose target system is
// target: for write-back through a reversed map that has several targets
// for one canonical code (the v2 code, Epic's code, ...).
func (m *Map) TranslateTo(system, code, target string) (Target, bool) {
	listed := false
	for i := range m.groups {
		g := &m.groups[i]
		if g.Target != target || !g.matches(system) {
			continue
		}
		if j, ok := g.index[code]; ok {
			listed = true
			if t, ok := best(&g.Elements[j]); ok {
				return t, true
			}
		}
	}
	if listed {
		return Target{}, false
	}
	for i := range m.groups {
		g := &m.groups[i]
		if g.Target == target && g.matches(system) {
			if t, ok := g.fallback(code); ok {
				return t, true
			}
		}
	}
	return Target{}, false
}

// TranslateAll returns every usable target of the code over all matching
// groups, in group order and, within an element, in file order; or, when no
// matching group lists the code, the unmapped rule's target as Translate
// gives it. Use it where a source coding stands for several standard codings
// (Oracle Health pairs one proprietary code with a LOINC code and a wider
// one, or with codes of two systems).
func (m *Map) TranslateAll(system, code string) []Target {
	var out []Target
	listed := false
	for i := range m.groups {
		g := &m.groups[i]
		if !g.matches(system) {
			continue
		}
		if j, ok := g.index[code]; ok {
			listed = true
			for _, t := range g.Elements[j].Targets {
				if usable(t) {
					out = append(out, t)
				}
			}
		}
	}
	if out == nil && !listed {
		if t, ok := m.fallback(system, code); ok {
			out = append(out, t)
		}
	}
	return out
}

func (m *Map) fallback(system, code string) (Target, bool) {
	for i := range m.groups {
		g := &m.groups[i]
		if !g.matches(system) {
			continue
		}
		if t, ok := g.fallback(code); ok {
			return t, true
		}
	}
	return Target{}, false
}

// fallback applies the group's unmapped rule to a code it does not list.
func (g *group) fallback(code string) (Target, bool) {
	switch g.UnmappedMode {
	case UnmappedProvided:
		return Target{System: g.Target, Code: code, Equivalence: EquivalenceEqual, Fallback: true}, true
	case UnmappedFixed:
		return Target{System: g.Target, Code: g.UnmappedCode, Display: g.UnmappedDisplay,
			Equivalence: EquivalenceInexact, Fallback: true}, true
	}
	return Target{}, false
}

// inverse gives the equivalence of a target to its source.
var inverse = map[string]string{
	EquivalenceWider:       EquivalenceNarrower,
	EquivalenceNarrower:    EquivalenceWider,
	EquivalenceSubsumes:    EquivalenceSpecializes,
	EquivalenceSpecializes: EquivalenceSubsumes,
}

// Reverse returns the map read backwards, for write-back (canonical →
// vendor): each group goes from its target system to its source system, each
// usable target becomes a source code whose targets are the codes that map
// to it (wider and narrower, subsumes and specializes swapped), so Translate
// picks the best of several (administrative-gender "other" goes back to v2
// "O", not to "A" or "N"). A group's source patterns and a fixed unmapped
// rule do not reverse; "provided" does. The reverse has the same url and
// Reversed() true; it is built once.
func (m *Map) Reverse() *Map {
	m.reverseOnce.Do(func() { m.reverse = m.buildReverse() })
	return m.reverse
}

func (m *Map) buildReverse() *Map {
	r := &Map{url: m.url, version: m.version, name: m.name, title: m.title, description: m.description,
		status: m.status, publisher: m.publisher, file: m.file, reversed: !m.reversed}
	for _, g := range m.groups {
		rg := group{Group: Group{Source: g.Target, SourceVersion: g.TargetVersion,
			Target: g.Source, TargetVersion: g.SourceVersion}, index: map[string]int{}}
		if g.UnmappedMode == UnmappedProvided {
			rg.UnmappedMode = UnmappedProvided
		}
		for _, e := range g.Elements {
			for _, t := range e.Targets {
				if !usable(t) {
					continue
				}
				eq := t.Equivalence
				if inv, ok := inverse[eq]; ok {
					eq = inv
				}
				back := Target{System: g.Source, Code: e.Code, Display: e.Display, Equivalence: eq, Comment: t.Comment}
				j, ok := rg.index[t.Code]
				if !ok {
					j = len(rg.Elements)
					rg.index[t.Code] = j
					rg.Elements = append(rg.Elements, Element{Code: t.Code, Display: t.Display})
				}
				rg.Elements[j].Targets = append(rg.Elements[j].Targets, back)
			}
		}
		r.groups = append(r.groups, rg)
	}
	return r
}

// matchPattern reports whether s matches a source pattern, where "*"
// stands for one or more characters other than "/" and every other
// character for itself.
func matchPattern(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) ||
		!strings.HasSuffix(s, pattern[strings.LastIndexByte(pattern, '*')+1:]) {
		return false
	}
	s, rest := s[star:], pattern[star+1:]
	// The star takes 1..n characters up to the next "/".
	for n := 1; n <= len(s) && s[n-1] != '/'; n++ {
		if matchPattern(rest, s[n:]) {
			return true
		}
	}
	return false
}
