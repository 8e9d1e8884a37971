package mapdoc

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
)

// hl7Doc is the HL7 v2 part of the document: how messages become FHIR
// resources (the rules of the HL7 v2 → FHIR specs), before the element rules
// apply.
type hl7Doc struct {
	Messages     []hl7Message
	SegmentMaps  []hl7Map
	DatatypeMaps []hl7Map
	Tables       []hl7Table
	Conversions  []param
	RuleCount    int
}

type hl7Message struct {
	Type, Structure, Description, Note, DefinedAt string
	Resources                                     []string
}

type hl7Map struct {
	Name, IG, Note, DefinedAt string
	Resource                  string // FHIR type the map builds
	Rules                     []hl7Rule
}

type hl7Rule struct {
	Path, From, How, When, Default, Note, DefinedAt string
}

type hl7Table struct {
	Name, V2, IG, System, DefinedAt string
	KeepUnmapped                    bool
	Entries                         []v2fhir.TableEntry
}

func hl7Of(c *v2fhir.Catalog) *hl7Doc {
	h := &hl7Doc{}
	for _, sp := range c.Messages {
		m := hl7Message{Type: sp.MessageCode + "^" + sp.TriggerEvent, Structure: sp.Structure, Description: sp.Description, Note: strings.TrimSpace(sp.Note), DefinedAt: sp.Source.String()}
		for _, r := range sp.Resources {
			s := fmt.Sprintf("%s (%s) from each %s", r.Type, r.Name, r.Segment)
			var inc []string
			for _, i := range r.Include {
				inc = append(inc, i.Segment)
			}
			if len(inc) > 0 {
				s += " with " + strings.Join(inc, ", ")
			}
			if !r.Emit {
				s += " (id only, for references)"
			}
			if r.Required {
				s += " (required)"
			}
			m.Resources = append(m.Resources, s)
		}
		for _, mg := range sp.Merges {
			m.Resources = append(m.Resources, fmt.Sprintf("merge of %s from each %s", mg.Type, mg.Segment))
		}
		h.Messages = append(h.Messages, m)
	}
	for _, sm := range c.SegmentMaps {
		hm := hl7Map{Name: sm.Name, IG: sm.IG, Note: strings.TrimSpace(sm.Note), DefinedAt: sm.Source.String(), Resource: sm.Resource}
		hm.Rules = flattenRules(sm.Rules, "", "")
		h.RuleCount += len(hm.Rules)
		h.SegmentMaps = append(h.SegmentMaps, hm)
	}
	for _, dm := range c.DatatypeMaps {
		hm := hl7Map{Name: dm.Name, IG: dm.IG, Note: strings.TrimSpace(dm.Note), DefinedAt: dm.Source.String(), Resource: dm.Resource}
		hm.Rules = flattenRules(dm.Rules, "", "")
		h.RuleCount += len(hm.Rules)
		h.DatatypeMaps = append(h.DatatypeMaps, hm)
	}
	for _, t := range c.Tables {
		h.Tables = append(h.Tables, hl7Table{Name: t.Name, V2: t.V2, IG: t.IG, System: t.System, KeepUnmapped: t.KeepUnmapped, DefinedAt: t.Source.String(), Entries: t.Entries})
	}
	keys := make([]string, 0, len(c.Conversions))
	for k := range c.Conversions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.Conversions = append(h.Conversions, param{k, c.Conversions[k]})
	}
	return h
}

// flattenRules lists nested rules one per row, their paths joined to the
// enclosing rule's; prefix marks the rules of a choose block.
func flattenRules(rules []*v2fhir.Rule, parent, prefix string) []hl7Rule {
	var out []hl7Rule
	for _, r := range rules {
		path := joinPath(parent, r.Path)
		row := hl7Rule{Path: path, From: ruleFrom(r), How: prefix + ruleHow(r), When: strings.Join(r.When, "; "), Default: r.Default, Note: strings.TrimSpace(r.Note), DefinedAt: r.Source.String()}
		if row.Path == "" {
			row.Path = "(this element)"
		}
		out = append(out, row)
		out = append(out, flattenRules(r.Rules, path, "")...)
		out = append(out, flattenRules(r.Choose, path, "first that applies: ")...)
	}
	return out
}

func joinPath(parent, p string) string {
	switch {
	case parent == "":
		return p
	case p == "":
		return parent
	default:
		return parent + "." + p
	}
}

func ruleFrom(r *v2fhir.Rule) string {
	var parts []string
	if len(r.From) > 0 {
		parts = append(parts, strings.Join(r.From, " or "))
	}
	if len(r.Comp) > 0 {
		parts = append(parts, "component "+strings.Join(r.Comp, "+"))
	}
	return strings.Join(parts, ", ")
}

func ruleHow(r *v2fhir.Rule) string {
	var parts []string
	if r.Table != nil {
		parts = append(parts, "code table "+r.Table.Name)
	}
	if r.Map != nil {
		parts = append(parts, "map "+r.Map.Name)
	}
	if r.As != "" {
		parts = append(parts, "as "+r.As)
	}
	if r.Value != "" {
		parts = append(parts, "constant "+r.Value)
	}
	if r.Format != "" {
		parts = append(parts, "text "+r.Format)
	}
	if r.Ref != "" {
		parts = append(parts, "reference to the message's "+r.Ref)
	}
	if r.Refs != "" {
		parts = append(parts, "references to its "+r.Refs)
	}
	if r.Join != "" {
		parts = append(parts, fmt.Sprintf("values joined with %q", r.Join))
	}
	for _, p := range r.Plus {
		parts = append(parts, fmt.Sprintf("plus the duration %s %s", p[0], p[1]))
	}
	if r.Remove {
		parts = append(parts, "removed")
	}
	if r.Warn != "" {
		parts = append(parts, "warning: "+r.Warn)
	}
	if len(parts) == 0 && (len(r.Rules) > 0 || len(r.Choose) > 0) {
		parts = append(parts, "built by the rules below")
	}
	if len(parts) == 0 {
		parts = append(parts, "copied")
	}
	return strings.Join(parts, "; ")
}
