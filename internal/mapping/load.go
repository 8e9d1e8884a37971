package mapping

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhirpath"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
)

// Layer kinds.
const (
	LayerCanonical = "canonical"
	LayerVendor    = "vendor"
	LayerPractice  = "practice"
)

// Errors of Load's arguments.
var (
	ErrUnknownVendor = errors.New("unknown vendor profile")
	ErrBadVersion    = errors.New("bad vendor version")
)

// Source is a layer of rules from outside the shipped profiles: a
// practice's overrides.
type Source struct {
	// Name names the file in error messages ("sunrise-overrides.yaml").
	Name string
	// Data is YAML in the spec format (params, resource/rules or resources).
	Data []byte
	// ConceptMaps, when set, is a folder of FHIR ConceptMap JSON files
	// (read at its root) that replace shipped maps with the same url or add
	// maps.
	ConceptMaps fs.FS
}

// Rule is one loaded rule, after layering, as the engine runs it.
type Rule struct {
	ID         string
	Resource   string // resource type, or "Resource" for rules on every type
	Target     string
	Each       string
	Source     string // "" when the rule reads its target
	Condition  string
	Steps      []Step
	Default    any // nil when HasDefault is false
	HasDefault bool
	Required   bool
	Rationale  string
	Direction  string // in, out or both
	Versions   string // vendor versions the rule applies to ("" = all)
	Layer      string // the layer that last defined or changed the rule
	Layers     []string
	Pos        Pos // where the rule was last defined or changed
}

// Set is a loaded, checked set of rules for one vendor, vendor version and
// practice overrides. It is immutable and safe for concurrent use.
type Set struct {
	m             *model.Model
	vendor        string
	vendorVersion string
	version       string
	tag           map[string]any // the meta.tag canonical resources get; never changed
	tagEnc        *encodedValue  // tag with its encoding
	layers        []Layer
	params        map[string]string
	loc           *time.Location
	cmaps         *conceptmap.Set
	rules         map[string][]*crule
	common        []*crule
	specs         map[string][]Rule
	notes         map[string][]Note
	states        sync.Pool                // *runState, reused for their scratch space
	sizes         map[string]*atomic.Int32 // report size of the last resource per type
	// The top-level members the rules may touch, per direction (in, out):
	// per resource type with rules, and for the other types.
	plans     [2]map[string]*touchPlan
	otherPlan [2]*touchPlan
	// types has every resource type Map may meet, by name (buildPlans).
	types map[string]*typeEntry
	// tagMember is the profile tag as meta's member, encoded without and
	// with pruning.
	tagMember [2][]byte
	// decodeAll turns the plans off: every member is decoded and encoded
	// (the reference the differential tests compare with).
	decodeAll bool
}

// Vendor returns the vendor profile's name.
func (s *Set) Vendor() string { return s.vendor }

// VendorVersion returns the vendor version the Set was loaded for ("" when
// unknown: taken as the newest release).
func (s *Set) VendorVersion() string { return s.vendorVersion }

// Version returns the profile version recorded on canonical resources:
// "epic@2 + canonical@1", with "+ practice@<hash>" per override file (named
// by the file's name key). Shipped layers carry the version their
// profile.yaml declares (the shipped code tables belong to the canonical
// layer; package profiles' tests make sure a change raises the version); a
// practice's layer a hash of its rules and code tables.
func (s *Set) Version() string { return s.version }

// Layers describes the layers, canonical first.
func (s *Set) Layers() []Layer { return append([]Layer(nil), s.layers...) }

// Params returns the profile parameters after layering.
func (s *Set) Params() map[string]string {
	out := make(map[string]string, len(s.params))
	for k, v := range s.params {
		out[k] = v
	}
	return out
}

// ConceptMaps returns the code tables the rules use.
func (s *Set) ConceptMaps() *conceptmap.Set { return s.cmaps }

// ResourceTypes lists the resource types that have rules, sorted.
// "Resource" (rules for every type) is not among them.
func (s *Set) ResourceTypes() []string {
	var out []string
	for rt := range s.specs {
		if rt != "Resource" {
			out = append(out, rt)
		}
	}
	sort.Strings(out)
	return out
}

// Rules returns the rules for a resource type in the order they run,
// followed by the rules for every type ("Resource"). Rules("Resource")
// returns only those.
func (s *Set) Rules(resourceType string) []Rule {
	var out []Rule
	if resourceType != "Resource" {
		out = append(out, s.specs[resourceType]...)
	}
	return append(out, s.specs["Resource"]...)
}

// NotAvailable returns the notes on elements of a resource type the EHR
// cannot fill.
func (s *Set) NotAvailable(resourceType string) []Note {
	return append([]Note(nil), s.notes[resourceType]...)
}

// Vendors lists the vendor profiles in fsys: its folders that hold a
// profile.yaml, other than canonical.
func Vendors(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || e.Name() == LayerCanonical {
			continue
		}
		if _, err := fs.Stat(fsys, path.Join(e.Name(), "profile.yaml")); err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

type layerIn struct {
	kind string
	info Layer
	docs []*yDoc
	hash string
}

// mergedRule is a rule being layered.
type mergedRule struct {
	resource string
	y        yRule
	layers   []string
	pos      Pos
}

type resRules struct {
	order []*mergedRule
	byID  map[string]*mergedRule
	notes []Note
}

// Load reads the canonical layer and the vendor's profile from fsys (the
// shipped profiles: package profiles' FS), applies the practice overrides
// in order and compiles every rule. version is the vendor's software
// version ("May 2026", "5.0.1.698"; "" = newest): rules and notes with a
// versions range that excludes it are left out. Every problem of every file
// is reported, each as "file:line: message (hint: ...)".
func Load(fsys fs.FS, vendor, version string, overrides ...Source) (*Set, error) {
	var el errList
	var vv []int
	if version != "" {
		v, err := parseVersion(version)
		if err != nil {
			return nil, fmt.Errorf("mapping: %w: %v", ErrBadVersion, err)
		}
		vv = v
	}
	vendors, err := Vendors(fsys)
	if err != nil {
		return nil, err
	}
	if !contains(vendors, vendor) {
		return nil, fmt.Errorf("mapping: %w %q (known: %s)", ErrUnknownVendor, vendor, strings.Join(vendors, ", "))
	}
	layers := []*layerIn{
		readLayer(fsys, LayerCanonical, LayerCanonical, &el),
		readLayer(fsys, vendor, LayerVendor, &el),
	}
	for i, src := range overrides {
		name := src.Name
		if name == "" {
			name = fmt.Sprintf("overrides-%d.yaml", i+1)
		}
		h := sha256.New()
		h.Write(src.Data)
		doc := parseDoc(name, src.Data, &el)
		li := &layerIn{kind: LayerPractice, info: Layer{Kind: LayerPractice, Name: LayerPractice}}
		if doc != nil {
			li.docs = []*yDoc{doc}
			if doc.name != "" {
				li.info.Name = doc.name
			}
			li.info.Title, li.info.Description = doc.title, doc.desc
		}
		if src.ConceptMaps != nil {
			_ = fs.WalkDir(src.ConceptMaps, ".", func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
					if b, err := fs.ReadFile(src.ConceptMaps, p); err == nil {
						h.Write([]byte(p))
						h.Write(b)
					}
				}
				return nil
			})
		}
		li.info.Version = hex.EncodeToString(h.Sum(nil))[:12]
		layers = append(layers, li)
	}
	s := &Set{
		m:             model.R4(),
		vendor:        vendor,
		vendorVersion: version,
		params:        map[string]string{},
		rules:         map[string][]*crule{},
		specs:         map[string][]Rule{},
		notes:         map[string][]Note{},
	}
	s.states.New = s.newState
	// Code tables: shipped, then the practices'.
	cm, err := conceptmap.Load(fsys, "conceptmaps")
	if err != nil {
		return nil, fmt.Errorf("mapping: code tables: %w", err)
	}
	for _, src := range overrides {
		if src.ConceptMaps == nil {
			continue
		}
		pm, err := conceptmap.Load(src.ConceptMaps, ".")
		if err != nil {
			el = append(el, err)
			continue
		}
		cm = cm.With(pm)
	}
	s.cmaps = cm

	// Params: declared by the shipped layers, set by any.
	for _, li := range layers {
		for _, d := range li.docs {
			for _, k := range sortedStrings(d.params) {
				p := d.params[k]
				if _, ok := s.params[k]; !ok && li.kind == LayerPractice {
					el.add(p.pos, "parameters a practice may set: "+strings.Join(sortedStrings(s.params), ", "), "unknown parameter %q", k)
					continue
				}
				s.params[k] = p.value
			}
		}
	}
	s.loc = time.UTC
	if tz := s.params["timeZone"]; tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			el.add(Pos{"params", 0}, "use an IANA name such as America/Chicago", "timeZone %q: %v", tz, err)
		} else {
			s.loc = loc
		}
	}

	// Layer info and version.
	for _, li := range layers {
		s.layers = append(s.layers, li.info)
	}
	parts := []string{fmt.Sprintf("%s@%s", vendor, layers[1].info.Version), fmt.Sprintf("canonical@%s", layers[0].info.Version)}
	for _, li := range layers[2:] {
		parts = append(parts, fmt.Sprintf("%s@%s", li.info.Name, li.info.Version))
	}
	s.version = strings.Join(parts, " + ")
	s.tag = map[string]any{"system": ProfileTagSystem, "code": s.version}
	if s.tagEnc, err = newEncodedValue(s.m, s.tag, s.m.Type("Coding")); err != nil {
		return nil, fmt.Errorf("mapping: the profile tag: %w", err)
	}

	// Layer the rules.
	byRes := map[string]*resRules{}
	var resOrder []string
	for _, li := range layers {
		for _, d := range li.docs {
			for _, yr := range d.resources {
				rt := yr.resource
				if !s.validResource(rt) {
					hint := "use a FHIR R4 resource type such as Patient, or Resource for every type"
					if c := closest(rt, s.m.Resources()); c != "" {
						hint = "did you mean " + c + "?"
					}
					el.add(yr.pos, hint, "unknown resource type %q", rt)
					continue
				}
				rr := byRes[rt]
				if rr == nil {
					rr = &resRules{byID: map[string]*mergedRule{}}
					byRes[rt] = rr
					resOrder = append(resOrder, rt)
				}
				for _, n := range yr.notes {
					if n.Versions != "" {
						if r, err := parseRange(n.Versions); err != nil || !r.matches(vv) {
							continue
						}
					}
					rr.notes = append(rr.notes, n)
				}
				for _, r := range yr.rules {
					layerRule(li, rt, rr, r, vv, &el)
				}
			}
		}
	}

	// Compile.
	for _, rt := range resOrder {
		rr := byRes[rt]
		s.notes[rt] = rr.notes
		for _, mr := range rr.order {
			if mr.y.enabled != nil && !*mr.y.enabled {
				continue
			}
			rule, cr := s.compileRule(mr, &el)
			if cr == nil {
				continue
			}
			s.specs[rt] = append(s.specs[rt], rule)
			if rt == "Resource" {
				s.common = append(s.common, cr)
			} else {
				s.rules[rt] = append(s.rules[rt], cr)
			}
		}
	}
	if len(el) > 0 {
		return nil, errors.Join(el...)
	}
	s.sizes = map[string]*atomic.Int32{}
	for rt := range s.rules {
		s.sizes[rt] = new(atomic.Int32)
	}
	s.buildPlans()
	return s, nil
}

func (s *Set) validResource(rt string) bool {
	if rt == "Resource" {
		return true
	}
	t := s.m.Type(rt)
	return t != nil && t.Kind() == model.KindResource && !t.Abstract()
}

// readLayer reads the spec files of one folder: profile.yaml first, then
// the others by name.
func readLayer(fsys fs.FS, dir, kind string, el *errList) *layerIn {
	li := &layerIn{kind: kind, info: Layer{Kind: kind, Name: dir}}
	files, err := fs.Glob(fsys, dir+"/*.yaml")
	if err != nil {
		el.add(Pos{dir, 0}, "", "%v", err)
		return li
	}
	sort.Slice(files, func(i, j int) bool {
		pi, pj := path.Base(files[i]) == "profile.yaml", path.Base(files[j]) == "profile.yaml"
		if pi != pj {
			return pi
		}
		return files[i] < files[j]
	})
	var infoFrom string
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			el.add(Pos{f, 0}, "", "%v", err)
			continue
		}
		d := parseDoc(f, data, el)
		if d == nil {
			continue
		}
		if d.hasInfo {
			if infoFrom != "" {
				el.add(d.pos, "keep name, version, title, description, releases and writeBack in profile.yaml", "profile details given again (first in %s)", infoFrom)
			}
			infoFrom = f
			if d.name != "" && d.name != dir {
				el.add(d.pos, "the name must be the folder's name", "profile name %q in folder %q", d.name, dir)
			}
			li.info.Version, li.info.Title, li.info.Description = d.version, d.title, d.desc
			li.info.Releases, li.info.WriteBack = d.releases, d.writeBack
		}
		li.docs = append(li.docs, d)
	}
	if li.info.Version == "" {
		el.add(Pos{path.Join(dir, "profile.yaml"), 0}, "add version: 1 to profile.yaml and raise it whenever a rule changes", "profile %s has no version", dir)
	}
	return li
}

// layerRule adds or merges one rule of a layer.
func layerRule(li *layerIn, rt string, rr *resRules, r yRule, vv []int, el *errList) {
	if r.versions != nil {
		vr, err := parseRange(*r.versions)
		if err != nil {
			el.add(r.fieldPos["versions"], `write ranges like ">= May 2024" or ">= 5.0, < 6"`, "rule %s: %v", r.id, err)
			return
		}
		if !vr.matches(vv) {
			return
		}
	}
	if r.direction != nil && !contains([]string{"in", "out", "both"}, *r.direction) {
		el.add(r.fieldPos["direction"], "in (EHR → canonical), out (canonical → EHR, for write-back) or both", "rule %s: unknown direction %q", r.id, *r.direction)
		return
	}
	if r.rationale == nil || strings.TrimSpace(*r.rationale) == "" {
		el.add(r.pos, "say in a sentence a practice manager can read why the rule exists or why this layer changes it", "rule %s has no rationale", r.id)
		return
	}
	name := li.info.Name
	if old := rr.byID[r.id]; old != nil {
		if r.after != nil || r.before != nil {
			el.add(r.pos, "after and before place new rules only", "rule %s already exists; it keeps its place", r.id)
		}
		mergeRule(&old.y, r)
		old.layers = append(old.layers, name)
		old.pos = r.pos
		return
	}
	if r.enabled != nil && !*r.enabled && r.target == nil {
		el.add(r.pos, "check the id against the rules of the layers below", "rule %s disables a rule that does not exist", r.id)
		return
	}
	if r.target == nil || *r.target == "" {
		el.add(r.pos, "name the element the rule fills, e.g. target: gender", "rule %s has no target", r.id)
		return
	}
	if r.after != nil && r.before != nil {
		el.add(r.pos, "use one of them", "rule %s has both after and before", r.id)
		return
	}
	mr := &mergedRule{resource: rt, y: r, layers: []string{name}, pos: r.pos}
	rr.byID[r.id] = mr
	if anchor, field, delta := r.after, "after", 1; anchor != nil || r.before != nil {
		if anchor == nil {
			anchor, field, delta = r.before, "before", 0
		}
		for i, x := range rr.order {
			if x.y.id == *anchor {
				at := i + delta
				rr.order = append(rr.order[:at], append([]*mergedRule{mr}, rr.order[at:]...)...)
				return
			}
		}
		el.add(r.fieldPos[field], "name a rule of the same resource", "rule %s: %s: no rule %q", r.id, field, *anchor)
		return
	}
	rr.order = append(rr.order, mr)
}

// mergeRule applies the fields an override gives.
func mergeRule(dst *yRule, o yRule) {
	if o.target != nil {
		dst.target = o.target
	}
	if o.each != nil {
		dst.each = o.each
	}
	if o.source != nil {
		dst.source = o.source
	}
	if o.condition != nil {
		dst.condition = o.condition
	}
	if o.transform != nil {
		dst.transform = o.transform
	}
	if o.def != nil {
		dst.def = o.def
	}
	if o.required != nil {
		dst.required = o.required
	}
	if o.rationale != nil {
		dst.rationale = o.rationale
	}
	if o.direction != nil {
		dst.direction = o.direction
	}
	if o.versions != nil {
		dst.versions = o.versions
	}
	if o.enabled != nil {
		dst.enabled = o.enabled
	}
	for k, p := range o.fieldPos {
		dst.fieldPos[k] = p
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// compileRule checks a layered rule against the model and compiles its
// expressions and transforms.
func (s *Set) compileRule(mr *mergedRule, el *errList) (Rule, *crule) {
	y := mr.y
	rule := Rule{
		ID: y.id, Resource: mr.resource, Target: deref(y.target), Each: deref(y.each), Source: deref(y.source),
		Condition: deref(y.condition), Rationale: strings.TrimSpace(deref(y.rationale)), Direction: "in",
		Versions: deref(y.versions), Layer: mr.layers[len(mr.layers)-1], Layers: mr.layers, Pos: mr.pos,
	}
	if y.direction != nil {
		rule.Direction = *y.direction
	}
	if y.required != nil {
		rule.Required = *y.required
	}
	if y.def != nil {
		rule.Default, rule.HasDefault = *y.def, true
	}
	if y.transform != nil {
		rule.Steps = *y.transform
	}
	pos := func(field string) Pos {
		if p, ok := y.fieldPos[field]; ok {
			return p
		}
		return mr.pos
	}
	nerr := len(*el)
	cr := &crule{rule: &rule, required: rule.Required, def: rule.Default, hasDef: rule.HasDefault,
		dirIn: rule.Direction != "out", dirOut: rule.Direction != "in"}
	root := s.m.Type(mr.resource)
	ctx := root
	compile := func(field, expr string, rootType string) *fhirpath.Expr {
		x, err := fhirpath.Compile(expr)
		if err != nil {
			el.add(pos(field), "see the FHIRPath specification, http://hl7.org/fhirpath/", "rule %s: %s: %v", rule.ID, field, err)
			return nil
		}
		if err := x.Check(rootType); err != nil {
			el.add(pos(field), checkHint(err), "rule %s: %s: %v", rule.ID, field, err)
			return nil
		}
		return x
	}
	if rule.Each != "" {
		cr.eachExpr = compile("each", rule.Each, root.Name())
		t, err := eachType(s.m, root, rule.Each)
		if err != nil {
			el.add(pos("each"), "each selects elements: a path such as telecom.where(system = 'phone')", "rule %s: each: %v", rule.ID, err)
		} else if t.Kind() == model.KindPrimitive {
			el.add(pos("each"), "select the element that holds it and target the value inside", "rule %s: each selects %s values, which have no parts to fill", rule.ID, t.Name())
		} else {
			ctx = t
		}
	}
	if len(*el) > nerr {
		return rule, nil
	}
	tp, err := parseElemPath(s.m, ctx, rule.Target, true)
	if err != nil {
		el.add(pos("target"), targetHint(err), "rule %s: target: %v", rule.ID, err)
		return rule, nil
	}
	cr.target = tp
	if rule.Condition != "" {
		cr.cond = compile("condition", rule.Condition, ctx.Name())
		if cr.cond != nil {
			cr.condFast, _ = compileFastPred(s.m, ctx, root, rule.Condition)
		}
	}
	src := rule.Source
	if src == "" {
		cr.srcPath, cr.sameNodes = tp, true
	} else if sp, err := parseElemPath(s.m, ctx, src, false); err == nil {
		cr.srcPath = sp
		cr.sameNodes = normPath(sp) == normPath(tp)
	} else {
		var pe *pathError
		if errors.As(err, &pe) {
			el.add(pos("source"), "check the element name against the FHIR R4 definition of "+pe.Type, "rule %s: source: %v", rule.ID, err)
		} else if cr.srcExpr = compile("source", src, ctx.Name()); cr.srcExpr != nil {
			cr.srcFast, _ = compileFast(s.m, ctx, root, src)
		}
	}
	cc := &compileCtx{set: s, targetType: tp.typ, params: s.params}
	for _, st := range rule.Steps {
		at := st.Pos
		if at.File == "" {
			at = pos("transform")
		}
		d, ok := registry[st.Name]
		if !ok {
			hint := "transforms: " + strings.Join(transformNames(), ", ")
			if c := closest(st.Name, transformNames()); c != "" {
				hint = "did you mean " + c + "?"
			}
			el.add(at, hint, "rule %s: unknown transform %q", rule.ID, st.Name)
			continue
		}
		if err := checkArgs(d, st.Args); err != nil {
			el.add(at, "", "rule %s: %v", rule.ID, err)
			continue
		}
		fn, err := d.compile(st.Args, cc)
		if err != nil {
			el.add(at, "", "rule %s: transform %s: %v", rule.ID, st.Name, err)
			continue
		}
		cr.steps = append(cr.steps, fn)
		if !keepsObjects[st.Name] {
			cr.mutates = true
		}
	}
	if rule.HasDefault {
		if v, err := paramValue(rule.Default, cc); err != nil {
			el.add(pos("default"), "", "rule %s: default: %v", rule.ID, err)
		} else {
			cr.def = v
		}
	}
	cr.eachEnv = strings.Contains(rule.Each, "%")
	cr.condEnv = strings.Contains(rule.Condition, "%")
	cr.srcEnv = strings.Contains(rule.Source, "%")
	if len(rule.Steps) == 1 && rule.Steps[0].Name == "prune" && rule.Each == "" && rule.Source == "" && cr.cond == nil && tp.isThis() {
		cr.pruneAll = true
	}
	// An each in the fast subset is evaluated on the JSON tree unless the
	// rule needs the engine's typed nodes (for a condition or a source
	// outside the subset).
	if cr.eachExpr != nil {
		needTyped := (cr.cond != nil && cr.condFast == nil) || (cr.srcExpr != nil && cr.srcFast == nil)
		if fx, ok := compileFast(s.m, root, root, rule.Each); ok && !needTyped {
			cr.eachFast = fx
		}
	}
	if len(*el) > nerr {
		return rule, nil
	}
	return rule, cr
}

// keepsObjects names the transforms that never change an object or array
// they are given (they work on text, or build new values).
var keepsObjects = map[string]bool{
	"code": true, "constant": true, "default": true, "first": true, "trim": true, "lowercase": true,
	"uppercase": true, "date": true, "datetime": true, "integer": true, "phone-e164": true,
}

func normPath(p *elemPath) string {
	var b strings.Builder
	for i, s := range p.segs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.url != "" {
			b.WriteString("('" + s.url + "')")
		}
	}
	return b.String()
}

func transformNames() []string {
	return sortedStrings(registry)
}

func checkHint(err error) string {
	var ce *fhirpath.CheckError
	if errors.As(err, &ce) {
		return "check the element name against the FHIR R4 definition of " + ce.Type
	}
	return ""
}

func targetHint(err error) string {
	var pe *pathError
	if errors.As(err, &pe) {
		return "check the element name against the FHIR R4 definition of " + pe.Type
	}
	return "a target is an element path: name.text, extension('url').valueString, or $this"
}
