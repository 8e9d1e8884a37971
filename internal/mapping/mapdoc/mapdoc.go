// Package mapdoc generates a practice's data-mapping document from the
// mapping rules the engine runs (a loaded *mapping.Set, and the HL7 v2
// conversion specs when the practice receives HL7 v2): every canonical
// element mediflow fills, where it comes from, how it is transformed and why,
// the code tables in full, defaults, what the EHR cannot provide, which data
// is read and which is written back, with a masked example per element. The
// document is built from the same loaded specs the engine maps with, so it
// cannot drift from what the engine does. Formats: Markdown, self-contained
// HTML and CSV (one row per element).
package mapdoc

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/internal/mapping/mask"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// Formats of Generate.
const (
	FormatMarkdown = "md"
	FormatHTML     = "html"
	FormatCSV      = "csv"
)

// Formats lists the formats Generate writes.
func Formats() []string { return []string{FormatMarkdown, FormatHTML, FormatCSV} }

// MaxSamples bounds how many sample resources are mapped for the example
// column.
const MaxSamples = 2000

// Input is what a document is generated from.
type Input struct {
	PracticeID   string
	PracticeName string
	// Vendor is the vendor profile name (default: Set.Vendor()) and
	// VendorVersion the EHR's software version (default: Set.VendorVersion();
	// "" means the newest release the profile knows).
	Vendor        string
	VendorVersion string
	// Set is the loaded mapping: canonical ← vendor(version) ← practice
	// overrides.
	Set *mapping.Set
	// Reads says which data classes are read and how (see ReadsFromConfig).
	Reads []Read
	// Contract is the practice's write-back contract (contract.Registry
	// ForPractice). Nil: the shipped contract of Vendor at VendorVersion
	// (contract.Default), without an HL7 outbound interface.
	Contract *contract.Contract
	// HL7, when set, are the HL7 v2 conversion specs (v2fhir.LoadCatalog):
	// the practice receives HL7 v2 and the document shows how messages
	// become FHIR resources before the rules above apply.
	HL7 *v2fhir.Catalog
	// Samples are FHIR resources (JSON) the example column is taken from:
	// each is mapped with Set and the value every rule left is shown masked.
	// They may hold PHI; the document never does. At most MaxSamples are
	// used.
	Samples [][]byte
	// SampleSource says where the samples came from ("sample folder
	// ./samples", "stored data"); shown above the examples.
	SampleSource string
	// TimeZone is the practice's time zone for mapping samples (nil: the
	// profile's timeZone parameter).
	TimeZone *time.Location
	// Generated is the generation time (zero: now) and MediflowVersion the
	// version of mediflow that generated the document.
	Generated       time.Time
	MediflowVersion string
}

// Read is one data class mediflow reads for the practice, and how.
type Read struct {
	Class         string   // data class name ("demographics")
	Description   string   // what the class holds ("patients")
	ResourceTypes []string // FHIR resource types of the class that are read
	Via           string   // "FHIR connection epic-prod, every 5m0s"; "HL7 v2 listener adt"
}

// ReadsFromConfig lists the data classes a practice's configuration reads:
// each connection's sync classes, and, when the practice has HL7 v2
// listeners, the classes of the resources the HL7 conversion specs make
// (catalog may be nil: v2fhir.Specs is used then).
func ReadsFromConfig(p *config.Practice, catalog *v2fhir.Catalog) []Read {
	var out []Read
	for _, c := range p.Connections {
		for _, s := range c.Sync {
			cl, ok := dataclass.Lookup(s.Class)
			if !ok {
				continue
			}
			out = append(out, Read{
				Class: cl.Name, Description: cl.Description, ResourceTypes: slices.Clone(cl.ResourceTypes),
				Via: fmt.Sprintf("FHIR connection %s (%s), every %s", c.Name, c.Vendor, s.Interval),
			})
		}
	}
	if len(p.HL7Listeners) == 0 {
		return out
	}
	var specs []v2fhir.Spec
	if catalog != nil {
		specs = catalog.Messages
	} else {
		specs = v2fhir.Specs()
	}
	classes := map[string][]string{}
	msgs := map[string][]string{}
	for _, sp := range specs {
		for _, r := range sp.Resources {
			if !r.Emit {
				continue
			}
			cl, ok := dataclass.ForResourceType(r.Type)
			if !ok {
				continue
			}
			if !slices.Contains(classes[cl.Name], r.Type) {
				classes[cl.Name] = append(classes[cl.Name], r.Type)
			}
			m := sp.MessageCode
			if !slices.Contains(msgs[cl.Name], m) {
				msgs[cl.Name] = append(msgs[cl.Name], m)
			}
		}
	}
	var names []string
	for _, l := range p.HL7Listeners {
		names = append(names, l.Name)
	}
	for _, cl := range dataclass.All() {
		rts, ok := classes[cl.Name]
		if !ok {
			continue
		}
		sort.Strings(rts)
		out = append(out, Read{
			Class: cl.Name, Description: cl.Description, ResourceTypes: rts,
			Via: fmt.Sprintf("HL7 v2 listener %s (%s messages)", strings.Join(names, ", "), strings.Join(msgs[cl.Name], ", ")),
		})
	}
	return out
}

// Generate writes the data-mapping document in format (md, html or csv).
func Generate(in Input, format string, w io.Writer) error {
	if in.Set == nil {
		return fmt.Errorf("mapdoc: no mapping set")
	}
	if !slices.Contains(Formats(), format) {
		return fmt.Errorf("mapdoc: unknown format %q (use %s)", format, strings.Join(Formats(), ", "))
	}
	d := build(in)
	switch format {
	case FormatMarkdown:
		return writeMarkdown(w, d)
	case FormatHTML:
		return writeHTML(w, d)
	default:
		return writeCSV(w, d)
	}
}

// document is what every format renders.
type document struct {
	PracticeID, PracticeName string
	Vendor, VendorTitle      string
	VendorVersion            string // as given, "" = newest
	Profile                  string
	Generated                string
	Mediflow                 string
	Layers                   []layerRow
	Params                   []param
	Reads                    []Read
	WriteBack                []writeBackRow
	Contract                 writeContract
	Sections                 []section // per resource type, then "Resource" (every type)
	Transforms               []mapping.TransformInfo
	Defaults                 []defaultRow
	NotAvailable             []noteRow
	CodeTables               []codeTable
	HL7                      *hl7Doc
	SampleSource             string
	SampleCount              int
	ElementCount             int
}

type layerRow struct {
	Kind, Name, Version, Title, Description string
	Releases                                []mapping.Release
}

type param struct{ Name, Value string }

type writeBackRow struct {
	ResourceType string
	ReadBy       string // data classes that read the type, "" = not read
	How          string
	Layer        string
	OutRules     []string // ids of the rules that run on write-back
}

// writeContract is the practice's write-back contract: which write intents
// its EHR accepts, how, with which required elements and rules.
type writeContract struct {
	Title    string
	Rows     []contract.Row
	Errors   string
	Markdown string // the contract as a Markdown table (contract.Markdown)
	Missing  string // why there is none ("" when there is one)
}

func contractOf(c *contract.Contract, vendor, version string) writeContract {
	if c == nil {
		var err error
		if c, err = contract.Default().For(vendor, version); err != nil {
			return writeContract{Missing: "No write contract is known for " + vendor + " at this version: mediflow refuses every write-back intent for this practice."}
		}
	}
	return writeContract{Title: c.Title(), Rows: c.Rows(), Errors: strings.Join(strings.Fields(c.Errors), " "), Markdown: contract.Markdown(c)}
}

type section struct {
	ResourceType string
	Title        string
	Class        string // data class of the type
	// NotRead is set when the practice's reads are known and none covers
	// the type: its rules are shown but do not run for this practice.
	NotRead  bool
	Elements []element
}

// heading is the section's title with its data class and whether it is read.
func (s section) heading() string {
	h := s.Title
	switch {
	case s.Class != "" && s.NotRead:
		h += " (" + s.Class + ", not read for this practice)"
	case s.Class != "":
		h += " (" + s.Class + ")"
	case s.NotRead:
		h += " (not read for this practice)"
	}
	return h
}

type element struct {
	ResourceType string
	Rule         string
	Each         string
	Target       string
	Element      string // how the element is shown: each › target
	Source       string // "" = the element itself
	Condition    string
	Steps        []stepRow
	Default      string // "" = none
	Required     bool
	Direction    string
	Versions     string
	LayerKind    string
	Layer        string
	Layers       []string
	DefinedAt    string
	Rationale    string
	Example      string
}

type stepRow struct {
	Name    string
	Args    []param
	Summary string
}

// Text renders the step as "name (arg: value, ...)".
func (s stepRow) Text() string {
	if len(s.Args) == 0 {
		return s.Name
	}
	parts := make([]string, len(s.Args))
	for i, a := range s.Args {
		parts[i] = a.Name + ": " + a.Value
	}
	return s.Name + " (" + strings.Join(parts, ", ") + ")"
}

type defaultRow struct {
	ResourceType, Rule, Element, Value, When string
}

type noteRow struct {
	ResourceType, Element, Text, Versions, DefinedAt string
}

type codeTable struct {
	URL, Name, Title, Version, Status, File, Description string
	UsedBy                                               []string
	Groups                                               []codeGroup
	Codes                                                int
}

type codeGroup struct {
	Source, Target string
	Patterns       []string
	Unmapped       string
	Rows           []codeRow
}

type codeRow struct {
	Code, Display, Target, TargetDisplay, Equivalence, Comment string
	First                                                      bool // the first target of its source code
}

func build(in Input) *document {
	set := in.Set
	d := &document{
		PracticeID: in.PracticeID, PracticeName: in.PracticeName,
		Vendor: in.Vendor, VendorVersion: in.VendorVersion,
		Profile: set.Version(), Mediflow: in.MediflowVersion,
		Reads: in.Reads, SampleSource: in.SampleSource,
	}
	if d.Vendor == "" {
		d.Vendor = set.Vendor()
	}
	if d.VendorVersion == "" {
		d.VendorVersion = set.VendorVersion()
	}
	if d.Mediflow == "" {
		d.Mediflow = "dev"
	}
	d.Contract = contractOf(in.Contract, d.Vendor, d.VendorVersion)
	gen := in.Generated
	if gen.IsZero() {
		gen = time.Now()
	}
	d.Generated = gen.UTC().Format(time.RFC3339)

	kinds := map[string]string{}
	wb := map[string]writeBackRow{}
	for _, l := range set.Layers() {
		kinds[l.Name] = l.Kind
		d.Layers = append(d.Layers, layerRow{Kind: l.Kind, Name: l.Name, Version: l.Version, Title: l.Title, Description: l.Description, Releases: l.Releases})
		if l.Kind == mapping.LayerVendor {
			d.VendorTitle = l.Title
		}
		for rt, how := range l.WriteBack {
			wb[rt] = writeBackRow{ResourceType: rt, How: how, Layer: l.Name}
		}
	}
	if d.VendorTitle == "" {
		d.VendorTitle = d.Vendor
	}
	params := set.Params()
	for _, k := range sortedKeys(params) {
		d.Params = append(d.Params, param{k, params[k]})
	}

	examples := sampleExamples(in)
	d.SampleCount = min(len(in.Samples), MaxSamples)

	readBy := map[string][]string{}
	for _, r := range in.Reads {
		for _, rt := range r.ResourceTypes {
			if !slices.Contains(readBy[rt], r.Class) {
				readBy[rt] = append(readBy[rt], r.Class)
			}
		}
	}
	used := map[string][]string{} // map url → rule ids
	types := append(set.ResourceTypes(), "Resource")
	for _, rt := range types {
		sec := section{ResourceType: rt, Title: rt}
		if rt == "Resource" {
			sec.Title = "Every resource type"
		}
		if cl, ok := dataclass.ForResourceType(rt); ok {
			sec.Class = cl.Name
		}
		sec.NotRead = len(in.Reads) > 0 && rt != "Resource" && len(readBy[rt]) == 0
		for _, r := range set.Rules(rt) {
			if rt != "Resource" && r.Resource == "Resource" {
				continue // shown once, under every resource type
			}
			e := element{
				ResourceType: rt, Rule: r.ID, Each: r.Each, Target: r.Target, Element: elementLabel(r),
				Source: r.Source, Condition: r.Condition, Required: r.Required, Direction: r.Direction,
				Versions: r.Versions, Layer: r.Layer, LayerKind: kinds[r.Layer], Layers: r.Layers,
				DefinedAt: r.Pos.String(), Rationale: strings.TrimSpace(r.Rationale),
				Example: examples[rt+"|"+r.ID],
			}
			if e.Direction == "" {
				e.Direction = "both"
			}
			if r.HasDefault {
				e.Default = valueText(r.Default)
				d.Defaults = append(d.Defaults, defaultRow{ResourceType: rt, Rule: r.ID, Element: e.Element, Value: e.Default, When: "the EHR sends nothing"})
			}
			for _, st := range r.Steps {
				e.Steps = append(e.Steps, stepOf(st, params))
				if u, ok := st.Args["map"].(string); ok {
					u = resolveParam(u, params)
					if !slices.Contains(used[u], r.ID) {
						used[u] = append(used[u], r.ID)
					}
				}
				if st.Name == "code" {
					if def, ok := st.Args["default"]; ok && st.Args["unmapped"] == "default" {
						d.Defaults = append(d.Defaults, defaultRow{ResourceType: rt, Rule: r.ID, Element: e.Element, Value: valueText(def), When: "the code table does not list the EHR's code"})
					}
				}
			}
			if rt != "Resource" && (e.Direction == mapping.DirectionOut || e.Direction == "both") {
				row, ok := wb[rt]
				if !ok {
					row = writeBackRow{ResourceType: rt}
				}
				row.OutRules = append(row.OutRules, r.ID)
				wb[rt] = row
			}
			sec.Elements = append(sec.Elements, e)
			d.ElementCount++
		}
		if len(sec.Elements) > 0 {
			d.Sections = append(d.Sections, sec)
		}
	}
	for _, rt := range sortedKeys(wb) {
		row := wb[rt]
		row.ReadBy = strings.Join(readBy[rt], ", ")
		d.WriteBack = append(d.WriteBack, row)
	}

	// Transforms used, in name order.
	usedSteps := map[string]bool{}
	for _, s := range d.Sections {
		for _, e := range s.Elements {
			for _, st := range e.Steps {
				usedSteps[st.Name] = true
			}
		}
	}
	for _, t := range mapping.Transforms() {
		if usedSteps[t.Name] {
			d.Transforms = append(d.Transforms, t)
		}
	}

	// What the EHR cannot provide, for every resource type.
	for _, rt := range model.R4().Resources() {
		for _, n := range set.NotAvailable(rt) {
			d.NotAvailable = append(d.NotAvailable, noteRow{ResourceType: rt, Element: n.Element, Text: n.Text, Versions: n.Versions, DefinedAt: n.Pos.String()})
		}
	}

	// Code tables the rules use, in full.
	cms := set.ConceptMaps()
	for _, u := range sortedKeys(used) {
		ct := codeTable{URL: u, UsedBy: used[u]}
		if cms != nil {
			if m, ok := cms.Get(u); ok {
				ct = tableOf(m, used[u])
			}
		}
		d.CodeTables = append(d.CodeTables, ct)
	}
	if in.HL7 != nil {
		d.HL7 = hl7Of(in.HL7)
	}
	return d
}

// elementLabel shows a rule's element: its target, or, for a rule applied to
// each element of a list, the list and the target within each.
func elementLabel(r mapping.Rule) string {
	switch {
	case r.Each == "":
		if r.Target == "$this" {
			return "(the whole resource)"
		}
		return r.Target
	case r.Target == "$this" || r.Target == "":
		return "each " + r.Each
	default:
		return "each " + r.Each + " › " + r.Target
	}
}

func stepOf(st mapping.Step, params map[string]string) stepRow {
	row := stepRow{Name: st.Name}
	for _, t := range mapping.Transforms() {
		if t.Name == st.Name {
			row.Summary = t.Summary
		}
	}
	for _, k := range sortedKeys(st.Args) {
		v := valueText(st.Args[k])
		if s, ok := st.Args[k].(string); ok && strings.HasPrefix(s, "%") {
			if pv, ok := params[s[1:]]; ok {
				if pv == "" {
					pv = "(not set)"
				}
				v = s + " = " + pv
			}
		}
		row.Args = append(row.Args, param{k, v})
	}
	return row
}

func resolveParam(s string, params map[string]string) string {
	if strings.HasPrefix(s, "%") {
		if v, ok := params[s[1:]]; ok {
			return v
		}
	}
	return s
}

// valueText renders a spec value: text as it is, anything else as compact
// JSON.
func valueText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return mask.Short(v, 1<<20)
}

// tableOf renders a code table in full: every group and element, one row
// per target.
func tableOf(m *conceptmap.Map, usedBy []string) codeTable {
	ct := codeTable{URL: m.URL(), Name: m.Name(), Title: m.Title(), Version: m.Version(), Status: m.Status(), File: m.File(), Description: strings.TrimSpace(m.Description()), UsedBy: usedBy, Codes: m.Len()}
	for _, g := range m.Groups() {
		cg := codeGroup{Source: g.Source, Target: g.Target, Patterns: g.SourcePatterns}
		switch g.UnmappedMode {
		case conceptmap.UnmappedProvided:
			cg.Unmapped = "a code not listed is kept as it is"
		case conceptmap.UnmappedFixed:
			cg.Unmapped = "a code not listed becomes " + g.UnmappedCode
			if g.UnmappedDisplay != "" {
				cg.Unmapped += " (" + g.UnmappedDisplay + ")"
			}
		}
		for _, el := range g.Elements {
			if len(el.Targets) == 0 {
				cg.Rows = append(cg.Rows, codeRow{Code: el.Code, Display: el.Display, First: true})
				continue
			}
			for i, t := range el.Targets {
				cg.Rows = append(cg.Rows, codeRow{Code: el.Code, Display: el.Display, Target: t.Code, TargetDisplay: t.Display, Equivalence: t.Equivalence, Comment: t.Comment, First: i == 0})
			}
		}
		ct.Groups = append(ct.Groups, cg)
	}
	return ct
}

// sampleExamples maps the samples and returns, per "resourceType|rule id",
// the first masked value a rule left. Rules that run on write-back get
// their example from mapping the canonical result back.
func sampleExamples(in Input) map[string]string {
	out := map[string]string{}
	if len(in.Samples) == 0 {
		return out
	}
	ctx := context.Background()
	picker := mask.NewPicker(in.Set)
	want := func(rt string) func(mapping.ElementResult) bool {
		return func(e mapping.ElementResult) bool {
			_, done := out[rt+"|"+e.Rule]
			return !done
		}
	}
	for i, s := range in.Samples {
		if i == MaxSamples {
			break
		}
		opts := mapping.MapOptions{TimeZone: in.TimeZone, KeepValues: true}
		canon, rep, err := in.Set.Map(ctx, s, opts)
		if err != nil || rep == nil {
			continue
		}
		add := func(res []byte, rep *mapping.Report) {
			exs, err := picker.Pick(ctx, res, rep, want(rep.ResourceType))
			if err != nil {
				return
			}
			for _, e := range exs {
				k := rep.ResourceType + "|" + e.Rule
				if _, ok := out[k]; !ok {
					out[k] = e.Value
				}
			}
		}
		add(canon, rep)
		opts.Direction = mapping.DirectionOut
		if back, brep, err := in.Set.Map(ctx, canon, opts); err == nil {
			add(back, brep)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// typeCount is how many resource types have rules of their own.
func (d *document) typeCount() int {
	n := 0
	for _, s := range d.Sections {
		if s.ResourceType != "Resource" {
			n++
		}
	}
	return n
}
