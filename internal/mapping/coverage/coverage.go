// Package coverage runs a practice's mapping rules over real data and reports,
// per canonical element, how often it was populated, kept as the EHR sent
// it, left empty or failed (and why), which codes the code tables did not
// map (with counts) and masked examples, with totals per resource type. The
// data comes from the store (raw FHIR pages and HL7 v2 messages as received)
// or from a folder of FHIR Bundles, NDJSON or HL7 v2 files. The report is
// JSON (Report) or a self-contained HTML page.
package coverage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/internal/mapping/mask"
)

// Report is the outcome of a coverage run.
type Report struct {
	Practice        string    `json:"practice,omitempty"`
	Vendor          string    `json:"vendor"`
	VendorVersion   string    `json:"vendorVersion,omitempty"`
	Profile         string    `json:"profile"` // mapping.Set.Version()
	Input           string    `json:"input,omitempty"`
	Generated       time.Time `json:"generated"`
	MediflowVersion string    `json:"mediflowVersion,omitempty"`
	Totals          Totals    `json:"totals"`
	// ResourceTypes are the types that have rules or occurred in the data,
	// sorted by name.
	ResourceTypes []ResourceReport `json:"resourceTypes"`
	// Unmapped lists every code a code table did not map, over all types,
	// most frequent first.
	Unmapped []UnmappedCode `json:"unmapped"`
	// Problems are inputs that could not be read, converted or mapped,
	// grouped by reason, most frequent first.
	Problems []Problem `json:"problems"`
}

// Totals count the whole run.
type Totals struct {
	Inputs        int `json:"inputs"`        // items read: resources and problems
	Resources     int `json:"resources"`     // resources given to the mapping
	Mapped        int `json:"mapped"`        // resources mapped to canonical
	Failed        int `json:"failed"`        // resources the mapping refused (a code under the error policy)
	WithIssues    int `json:"withIssues"`    // mapped or refused resources with a failed element or an empty required one
	Problems      int `json:"problems"`      // inputs that could not be read, converted or mapped at all
	UnmappedCodes int `json:"unmappedCodes"` // occurrences of codes the code tables did not map
}

// ResourceReport is the coverage of one resource type.
type ResourceReport struct {
	ResourceType string         `json:"resourceType"`
	Resources    int            `json:"resources"`
	Mapped       int            `json:"mapped"`
	Failed       int            `json:"failed"`
	WithIssues   int            `json:"withIssues"`
	Elements     []Element      `json:"elements"`
	Unmapped     []UnmappedCode `json:"unmapped,omitempty"`
}

// Element is the coverage of one rule: every outcome of the rule over the
// resources of its type. A rule with each has one outcome per element it
// visits (one "empty" when there is none).
type Element struct {
	Rule      string `json:"rule"`
	Element   string `json:"element"` // the target, "each X › Y" for a rule with each
	Required  bool   `json:"required,omitempty"`
	Layer     string `json:"layer"`     // the layer that last set the rule
	DefinedAt string `json:"definedAt"` // file:line
	Total     int    `json:"total"`     // outcomes
	Populated int    `json:"populated"` // the rule wrote a value
	Kept      int    `json:"kept"`      // nothing to write; the EHR's value stayed
	Empty     int    `json:"empty"`     // nothing to write and nothing there
	Failed    int    `json:"failed"`    // a transform failed
	Skipped   int    `json:"skipped"`   // the rule's condition was false
	// Failures group the reasons of failed outcomes, most frequent first.
	Failures []Reason `json:"failures,omitempty"`
	// Unmapped lists the codes the rule's code table did not map, with the
	// policy applied.
	Unmapped []UnmappedCode `json:"unmapped,omitempty"`
	// Examples are masked values the rule left (at most Options.MaxExamples,
	// all different).
	Examples []string `json:"examples,omitempty"`
}

// Filled is the share of outcomes that left a value (populated or kept),
// 0 when there were none.
func (e Element) Filled() float64 {
	if e.Total == 0 {
		return 0
	}
	return float64(e.Populated+e.Kept) / float64(e.Total)
}

// Reason is one reason of failure with how often it occurred.
type Reason struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// UnmappedCode is a code a code table did not map, counted.
type UnmappedCode struct {
	Map    string `json:"map"`
	System string `json:"system"`
	Code   string `json:"code"`
	Policy string `json:"policy,omitempty"` // the rule's policy (per element only)
	Count  int    `json:"count"`
}

// Problem is a group of inputs that could not be used, for one reason.
type Problem struct {
	Reason  string   `json:"reason"`
	Count   int      `json:"count"`
	Origins []string `json:"origins"` // the first few inputs with the problem
}

// Options tune a coverage run.
type Options struct {
	// TimeZone is the practice's time zone (nil: the profile's).
	TimeZone *time.Location
	// MaxExamples is the number of masked examples kept per element
	// (0: DefaultExamples; negative: none).
	MaxExamples int
	// Report header.
	Practice        string
	VendorVersion   string // default: the Set's
	Input           string // what was read, e.g. "folder ./export"
	Generated       time.Time
	MediflowVersion string
}

// DefaultExamples is the default Options.MaxExamples.
const DefaultExamples = 3

// maxOrigins is how many origins a Problem lists.
const maxOrigins = 5

// maxReason bounds the length of a failure reason.
const maxReason = 300

// Run maps every resource of items with set (vendor → canonical) and
// returns the coverage. It stops at the first error of items or when ctx
// ends.
func Run(ctx context.Context, set *mapping.Set, items iter.Seq2[Item, error], opts Options) (*Report, error) {
	if set == nil {
		return nil, fmt.Errorf("coverage: no mapping set")
	}
	r := newRun(set, opts)
	for it, err := range items {
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.add(ctx, it); err != nil {
			return nil, err
		}
	}
	return r.report(), nil
}

type typeAcc struct {
	rep      ResourceReport
	elems    map[string]*elemAcc
	order    []string
	unmapped *conceptmap.Unmapped
}

type elemAcc struct {
	el       Element
	failures map[string]int
	unmapped map[UnmappedCode]int
	seen     map[string]bool // examples taken
	tries    int             // resources picked for examples
}

// maxTries bounds how many resources are searched for an element's
// examples, per example wanted: an element whose values are all alike
// (a status that is always "booked") stops being searched.
const maxTries = 10

type run struct {
	set         *mapping.Set
	opts        Options
	maxExamples int
	picker      *mask.Picker
	totals      Totals
	types       map[string]*typeAcc
	problems    map[string]*Problem
}

func newRun(set *mapping.Set, opts Options) *run {
	r := &run{set: set, opts: opts, picker: mask.NewPicker(set), types: map[string]*typeAcc{}, problems: map[string]*Problem{}}
	r.maxExamples = opts.MaxExamples
	if r.maxExamples == 0 {
		r.maxExamples = DefaultExamples
	}
	for _, rt := range set.ResourceTypes() {
		r.types[rt], _ = r.typeOf(rt)
	}
	return r
}

// typeOf returns the accumulator of a resource type (known true), or a new
// one with an element for every rule the type runs on reading, in rule
// order, which the caller keeps in r.types once the mapping took the type.
func (r *run) typeOf(rt string) (t *typeAcc, known bool) {
	if t, ok := r.types[rt]; ok {
		return t, true
	}
	t = &typeAcc{rep: ResourceReport{ResourceType: rt}, elems: map[string]*elemAcc{}, unmapped: &conceptmap.Unmapped{}}
	for _, rule := range r.set.Rules(rt) {
		if rule.Direction == mapping.DirectionOut {
			continue
		}
		t.elem(rule.ID, Element{Rule: rule.ID, Element: elementLabel(rule.Each, rule.Target), Required: rule.Required, Layer: rule.Layer, DefinedAt: rule.Pos.String()})
	}
	return t, false
}

func (t *typeAcc) elem(id string, init Element) *elemAcc {
	if e, ok := t.elems[id]; ok {
		return e
	}
	e := &elemAcc{el: init, failures: map[string]int{}, unmapped: map[UnmappedCode]int{}, seen: map[string]bool{}}
	t.elems[id] = e
	t.order = append(t.order, id)
	return e
}

// wants reports whether the element still wants examples.
func (ea *elemAcc) wants(max int) bool {
	return len(ea.seen) < max && ea.tries < max*maxTries
}

func (r *run) problem(reason, origin string) {
	r.totals.Problems++
	p, ok := r.problems[reason]
	if !ok {
		p = &Problem{Reason: reason, Origins: []string{}}
		r.problems[reason] = p
	}
	p.Count++
	if len(p.Origins) < maxOrigins && origin != "" {
		p.Origins = append(p.Origins, origin)
	}
}

func (r *run) add(ctx context.Context, it Item) error {
	r.totals.Inputs++
	if it.Problem != "" || it.Resource == nil {
		reason := it.Problem
		if reason == "" {
			reason = "empty input"
		}
		r.problem(reason, it.Origin)
		return nil
	}
	r.totals.Resources++
	// The type is looked up first so the unmapped codes count under it; a
	// type seen for the first time is kept once the mapping took it.
	t, known := r.typeOf(resourceType(it.Resource))
	out, rep, err := r.set.Map(ctx, it.Resource, mapping.MapOptions{TimeZone: r.opts.TimeZone, Unmapped: t.unmapped})
	var me *mapping.MapError
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil && (!errors.As(err, &me) || rep == nil):
		r.problem(cut(err.Error()), it.Origin)
		return nil
	}
	if !known {
		r.types[t.rep.ResourceType] = t
	}
	t.rep.Resources++
	if err != nil {
		t.rep.Failed++
		r.totals.Failed++
	} else {
		t.rep.Mapped++
		r.totals.Mapped++
	}
	if len(rep.Issues()) > 0 {
		t.rep.WithIssues++
		r.totals.WithIssues++
	}
	wantExamples := false
	for _, e := range rep.Elements {
		ea := t.elem(e.Rule, Element{Rule: e.Rule, Element: elementLabel(e.Each, e.Target), Required: e.Required})
		ea.el.Total++
		switch e.Status {
		case mapping.StatusPopulated:
			ea.el.Populated++
		case mapping.StatusKept:
			ea.el.Kept++
		case mapping.StatusEmpty:
			ea.el.Empty++
		case mapping.StatusFailed:
			ea.el.Failed++
			ea.failures[cut(e.Reason)]++
		case mapping.StatusSkipped:
			ea.el.Skipped++
		}
		for _, u := range e.Unmapped {
			ea.unmapped[UnmappedCode{Map: u.Map, System: u.System, Code: u.Code, Policy: u.Policy}]++
		}
		if (e.Status == mapping.StatusPopulated || e.Status == mapping.StatusKept) && ea.wants(r.maxExamples) && mask.HasExample(e) {
			wantExamples = true
		}
	}
	if wantExamples && err == nil {
		picked := map[string]bool{}
		exs, perr := r.picker.Pick(ctx, out, rep, func(e mapping.ElementResult) bool {
			ea := t.elems[e.Rule]
			if !ea.wants(r.maxExamples) {
				return false
			}
			if !picked[e.Rule] {
				picked[e.Rule] = true
				ea.tries++
			}
			return true
		})
		if perr != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		for _, x := range exs {
			ea := t.elems[x.Rule]
			if len(ea.seen) < r.maxExamples && !ea.seen[x.Value] {
				ea.seen[x.Value] = true
				ea.el.Examples = append(ea.el.Examples, x.Value)
			}
		}
	}
	return nil
}

func (r *run) report() *Report {
	rep := &Report{
		Practice: r.opts.Practice, Vendor: r.set.Vendor(), VendorVersion: r.opts.VendorVersion,
		Profile: r.set.Version(), Input: r.opts.Input, Generated: r.opts.Generated.UTC(),
		MediflowVersion: r.opts.MediflowVersion, Totals: r.totals,
		ResourceTypes: []ResourceReport{}, Unmapped: []UnmappedCode{}, Problems: []Problem{},
	}
	if rep.VendorVersion == "" {
		rep.VendorVersion = r.set.VendorVersion()
	}
	if r.opts.Generated.IsZero() {
		rep.Generated = time.Now().UTC()
	}
	all := map[UnmappedCode]int{}
	for _, rt := range sortedKeys(r.types) {
		t := r.types[rt]
		rr := t.rep
		rr.Elements = []Element{}
		for _, id := range t.order {
			ea := t.elems[id]
			el := ea.el
			for reason, n := range ea.failures {
				el.Failures = append(el.Failures, Reason{Reason: reason, Count: n})
			}
			sort.Slice(el.Failures, func(i, j int) bool {
				a, b := el.Failures[i], el.Failures[j]
				return a.Count > b.Count || (a.Count == b.Count && a.Reason < b.Reason)
			})
			el.Unmapped = sortUnmapped(ea.unmapped)
			rr.Elements = append(rr.Elements, el)
		}
		for _, u := range t.unmapped.Entries() {
			uc := UnmappedCode{Map: u.MapURL, System: u.System, Code: u.Code, Count: u.Count}
			rr.Unmapped = append(rr.Unmapped, uc)
			all[UnmappedCode{Map: u.MapURL, System: u.System, Code: u.Code}] += u.Count
			rep.Totals.UnmappedCodes += u.Count
		}
		rep.ResourceTypes = append(rep.ResourceTypes, rr)
	}
	if u := sortUnmapped(all); u != nil {
		rep.Unmapped = u
	}
	for _, p := range r.problems {
		rep.Problems = append(rep.Problems, *p)
	}
	sort.Slice(rep.Problems, func(i, j int) bool {
		a, b := rep.Problems[i], rep.Problems[j]
		return a.Count > b.Count || (a.Count == b.Count && a.Reason < b.Reason)
	})
	return rep
}

// sortUnmapped turns counted codes into a list, most frequent first.
func sortUnmapped(m map[UnmappedCode]int) []UnmappedCode {
	if len(m) == 0 {
		return nil
	}
	out := make([]UnmappedCode, 0, len(m))
	for k, n := range m {
		k.Count = n
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Map != b.Map {
			return a.Map < b.Map
		}
		if a.System != b.System {
			return a.System < b.System
		}
		if a.Code != b.Code {
			return a.Code < b.Code
		}
		return a.Policy < b.Policy
	})
	return out
}

// elementLabel names a rule's element as the data-mapping document does.
func elementLabel(each, target string) string {
	switch {
	case each == "":
		if target == "$this" {
			return "(the whole resource)"
		}
		return target
	case target == "$this" || target == "":
		return "each " + each
	default:
		return "each " + each + " › " + target
	}
}

// resourceType reads the resourceType of a JSON resource ("" when there is
// none). It stops at the member, which EHRs write first.
func resourceType(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if tok == "resourceType" {
			var rt string
			if dec.Decode(&rt) != nil {
				return ""
			}
			return rt
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

func cut(s string) string {
	if utf8.RuneCountInString(s) <= maxReason {
		return s
	}
	return string([]rune(s)[:maxReason]) + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
