package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhirpath"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
)

// ProfileTagSystem is the meta.tag system under which a canonical resource
// records the profile version that produced it.
const ProfileTagSystem = "urn:mediflow:mapping-profile"

// Directions of a mapping.
const (
	DirectionIn  = "in"  // vendor → canonical
	DirectionOut = "out" // canonical → vendor (write-back)
)

// MapOptions tune one Map call.
type MapOptions struct {
	// TimeZone is the practice's time zone for the datetime and date
	// transforms (default: the profile parameter timeZone, else UTC).
	TimeZone *time.Location
	// Direction is DirectionIn (default) or DirectionOut.
	Direction string
	// Unmapped, when set, counts every code a code table did not map.
	Unmapped *conceptmap.Unmapped
	// KeepValues records in the report the values each rule wrote (for
	// examples in the coverage report; they may hold PHI).
	KeepValues bool
}

// Status is what a rule did to its element.
type Status string

// Statuses of an ElementResult.
const (
	StatusPopulated Status = "populated" // the rule wrote a value
	StatusKept      Status = "kept"      // nothing to write; the element keeps what the EHR sent
	StatusEmpty     Status = "empty"     // nothing to write and the element is empty
	StatusFailed    Status = "failed"    // a transform failed; the element is unchanged
	StatusSkipped   Status = "skipped"   // the rule's condition was false
)

// ElementResult is the outcome of one rule on one element.
type ElementResult struct {
	Rule     string // rule id
	Each     string // the rule's each expression ("" when it has none)
	Index    int    // which element of those each selected (-1: none, or no each)
	Target   string // the rule's target path, relative to that element
	Status   Status
	Required bool
	// Defaulted says the rule's default was written: nothing came from
	// the EHR.
	Defaulted bool
	Reason    string         // why it failed
	Unmapped  []UnmappedCode // codes the code tables did not list
	Values    []any          // what was written (with MapOptions.KeepValues)
}

// UnmappedCode is a code a code table did not list, and the policy applied.
type UnmappedCode struct {
	Map, System, Code, Policy string
}

// Report says, per rule, what mapping one resource did.
type Report struct {
	ResourceType string
	Profile      string // Set.Version()
	Direction    string
	Elements     []ElementResult
}

// Element names the element: "gender", "telecom.where(system = 'phone')[1].value",
// or the each expression when it selected nothing.
func (e ElementResult) Element() string {
	switch {
	case e.Each == "":
		return e.Target
	case e.Index < 0:
		return e.Each
	case e.Target == "$this":
		return e.Each + "[" + strconv.Itoa(e.Index) + "]"
	}
	return e.Each + "[" + strconv.Itoa(e.Index) + "]." + e.Target
}

// Issues returns the elements that failed and the required elements left
// empty.
func (r *Report) Issues() []ElementResult {
	var out []ElementResult
	for _, e := range r.Elements {
		if e.Status == StatusFailed || (e.Required && e.Status == StatusEmpty) {
			out = append(out, e)
		}
	}
	return out
}

// MapError is returned when a rule fails under the error policy: the
// resource cannot be mapped.
type MapError struct {
	ResourceType string
	Failures     []ElementResult
}

func (e *MapError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = fmt.Sprintf("%s (%s): %s", f.Rule, f.Element(), f.Reason)
	}
	return fmt.Sprintf("mapping: %s: %s", e.ResourceType, strings.Join(parts, "; "))
}

// runState is one Map call. States are pooled per Set: their scratch
// space, decoder and environment map serve call after call.
type runState struct {
	ctx    context.Context
	set    *Set
	opts   MapOptions
	res    map[string]any
	env    map[string]any // profile parameters and "res"
	envRes bool           // env["res"] is this call's resource
	rep    *Report
	cur    *ElementResult // the element being mapped, for unmapped codes
	strict []ElementResult
	tc     tctx
	prune  bool  // prune empty values while encoding
	vals   []any // scratch for a rule's values
	nodes  []any // scratch for the elements an each selects
	dec    jsonDecoder
	// dirty lists the top-level members a rule may have changed (see
	// plan.go); the others are written as the input had them.
	dirty []string
	out   []byte // encoding buffer
}

// maxKeptBuffer bounds the encoding buffer a pooled state keeps.
const maxKeptBuffer = 1 << 16

// markDirty records that the top-level member name may have changed.
func (st *runState) markDirty(name string) {
	if !slices.Contains(st.dirty, name) {
		st.dirty = append(st.dirty, name)
	}
}

func (s *Set) newState() any {
	st := &runState{set: s, env: make(map[string]any, len(s.params)+1)}
	for k, v := range s.params {
		st.env[k] = v
	}
	return st
}

// release returns st to the pool, dropping every reference to the call.
func (s *Set) release(st *runState) {
	if st.dec.track {
		st.dec.recycle()
	} else {
		st.dec.forget()
	}
	st.dec.data, st.dec.src = nil, ""
	clear(st.dec.spans)
	st.dec.spans = st.dec.spans[:0]
	// The names share the input and the values the tree; the types are
	// the model's and the raws in the decoder's slabs. (Clearing only what
	// refers to the call costs less while the GC marks.)
	for i := range st.dec.top {
		st.dec.top[i].key, st.dec.top[i].val = "", nil
	}
	st.dec.top, st.dec.topOrdered = st.dec.top[:0], false
	clear(st.dirty)
	st.dirty = st.dirty[:0]
	clear(st.vals[:cap(st.vals)])
	clear(st.nodes[:cap(st.nodes)])
	if st.envRes {
		st.env["res"] = nil
	}
	st.ctx, st.res, st.envRes, st.rep, st.cur, st.strict, st.prune = nil, nil, false, nil, nil, nil, false
	st.opts = MapOptions{}
	st.tc = tctx{}
	st.dec.rt, st.dec.te = nil, nil
	st.dec.meta, st.dec.metaEnd, st.dec.tagMember = nil, false, nil
	s.states.Put(st)
}

// noteUnmapped records an unmapped code on the element being mapped.
// system and code must not share the input (they outlive the call).
func (st *runState) noteUnmapped(mapURL, system, code, policy string) {
	if st.cur != nil {
		st.cur.Unmapped = append(st.cur.Unmapped, UnmappedCode{Map: mapURL, System: system, Code: code, Policy: policy})
	}
}

// environment returns the FHIRPath environment (the profile parameters and
// %res, the resource) for an expression that uses variables.
func (st *runState) environment(needed bool) map[string]any {
	if !needed {
		return nil
	}
	if !st.envRes {
		st.env["res"] = st.res
		st.envRes = true
	}
	return st.env
}

// Map maps one resource (FHIR JSON): vendor → canonical by default, or
// canonical → vendor with Direction out. The result starts as the input
// (so elements no rule names, vendor extensions included, pass through) and
// each rule for the resource type then fills its element. In direction in,
// the result records the profile version in meta.tag (system
// ProfileTagSystem); in direction out that tag is removed.
//
// A transform failure leaves its element unchanged and is reported; only a
// code under the error policy fails the resource (a *MapError, with the
// report). Map is safe for concurrent use.
func (s *Set) Map(ctx context.Context, resource []byte, opts MapOptions) ([]byte, *Report, error) {
	return s.mapInto(ctx, resource, opts, nil)
}

// MapInto is Map that writes its report into rep, reusing rep's element
// list, for callers that map many resources and recycle their reports.
// rep is reset first; it is the report Map would return (empty when the
// resource could not be read). rep must not be in use elsewhere; a
// *MapError returned stays valid when rep is reused.
func (s *Set) MapInto(ctx context.Context, resource []byte, opts MapOptions, rep *Report) ([]byte, error) {
	prev := len(rep.Elements)
	*rep = Report{Elements: rep.Elements[:0]}
	out, _, err := s.mapInto(ctx, resource, opts, rep)
	// The elements are overwritten as they are appended; those of the
	// earlier resource past the new ones are dropped. (Past its own, the
	// earlier call dropped them: clearing up to the capacity each time
	// cost as much as a small resource's rules.)
	if n := len(rep.Elements); n < prev && prev <= cap(rep.Elements) {
		clear(rep.Elements[n:prev])
	} else if prev > cap(rep.Elements) {
		clear(rep.Elements[n:cap(rep.Elements)])
	}
	return out, err
}

func (s *Set) mapInto(ctx context.Context, resource []byte, opts MapOptions, reuse *Report) ([]byte, *Report, error) {
	st := s.states.Get().(*runState)
	defer s.release(st)
	// The decoder's maps are reused from resource to resource: once the
	// result is encoded nothing refers to the tree (unless the report keeps
	// values).
	st.dec.track = !opts.KeepValues
	dir := opts.Direction
	if dir == "" {
		dir = DirectionIn
	}
	// Members no rule touches stay bytes until the encoder (see plan.go).
	v, err := st.dec.decodeResource(resource, s, dir)
	if err != nil {
		return nil, nil, fmt.Errorf("mapping: %w", err)
	}
	res, ok := v.(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("mapping: a resource must be a JSON object")
	}
	// The entry of the type decodeResource found (its resourceType member
	// is that type's name), else the type the member names.
	te := st.dec.te
	if te == nil {
		rt, _ := res["resourceType"].(string)
		if rt == "" {
			return nil, nil, fmt.Errorf("mapping: the resource has no resourceType")
		}
		if te = s.types[rt]; te == nil {
			return nil, nil, fmt.Errorf("mapping: unknown resource type %q", rt)
		}
	}
	t := te.t
	// The model's own copy of the name: texts of the decoded resource may
	// share the caller's input (see decodeResource) and must not outlive
	// the call.
	rt := t.Name()
	if dir != DirectionIn && dir != DirectionOut {
		return nil, nil, fmt.Errorf("mapping: direction must be in or out, not %q", dir)
	}
	loc := opts.TimeZone
	if loc == nil {
		loc = s.loc
	}
	if ctx == nil {
		ctx = context.Background()
	}
	rules := te.rules
	st.ctx, st.opts, st.res = ctx, opts, res
	// Size the report by what the last resource of the type needed.
	hint := len(rules) + len(s.common)
	if h := te.size; h != nil {
		hint = max(hint, int(h.Load()))
	}
	if reuse != nil && cap(reuse.Elements) > 0 {
		*reuse = Report{ResourceType: rt, Profile: s.version, Direction: dir, Elements: reuse.Elements[:0]}
		st.rep = reuse
	} else if reuse != nil {
		*reuse = Report{ResourceType: rt, Profile: s.version, Direction: dir, Elements: make([]ElementResult, 0, hint)}
		st.rep = reuse
	} else {
		st.rep = &Report{ResourceType: rt, Profile: s.version, Direction: dir, Elements: make([]ElementResult, 0, hint)}
	}
	st.tc = tctx{ctx: ctx, loc: loc, st: st}
	for _, group := range [2][]*crule{rules, s.common} {
		for _, r := range group {
			if !r.appliesTo(dir) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, st.rep, err
			}
			r.run(st)
		}
	}
	if h := te.size; h != nil {
		h.Store(int32(min(len(st.rep.Elements), 1<<12)))
	}
	if len(st.strict) > 0 {
		return nil, st.rep, &MapError{ResourceType: rt, Failures: st.strict}
	}
	switch {
	case dir != DirectionIn:
		setProfileTag(res, nil)
	case s.decodeAll:
		setProfileTag(res, s.tag) // the reference: the tag as a map
	default:
		// Into meta's bytes when they allow it, else on the decoded meta.
		done, err := st.dec.tagMeta(res, st.prune, s)
		if err != nil {
			return nil, st.rep, fmt.Errorf("mapping: %s: %w", rt, err)
		}
		if !done {
			setProfileTag(res, s.tagEnc)
		}
	}
	copyRaw := st.dec.materialize(res, st.prune, st.dirty)
	st.dec.markClean(st.dirty)
	// Encode into the state's buffer and return a copy of exactly the
	// output's size (a fresh buffer sized for the worst case would be
	// zeroed in full and mostly wasted).
	buf, err := encodeResourceRaw(st.out[:0], s.m, res, st.prune, &st.dec, copyRaw)
	if err != nil {
		return nil, st.rep, fmt.Errorf("mapping: %s: %w", rt, err)
	}
	out := append([]byte(nil), buf...)
	if cap(buf) <= maxKeptBuffer {
		st.out = buf
	}
	return out, st.rep, nil
}

// setProfileTag replaces the mapping-profile tag by tag (shared: it is
// only encoded; a map or an *encodedValue), or removes it when tag is nil.
func setProfileTag(res map[string]any, tag any) {
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		if tag == nil {
			return
		}
		meta = map[string]any{}
		res["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	if x, ok := tag.(*encodedValue); ok && len(tags) == 0 {
		meta["tag"] = x.list // shared, only encoded
		return
	}
	kept := make([]any, 0, len(tags)+1)
	for _, t := range tags {
		if tm, ok := t.(map[string]any); ok && tm["system"] == ProfileTagSystem {
			continue
		}
		kept = append(kept, t)
	}
	if tag != nil {
		kept = append(kept, tag)
	}
	if len(kept) == 0 {
		delete(meta, "tag")
		if len(meta) == 0 {
			delete(res, "meta")
		}
		return
	}
	meta["tag"] = kept
}

// crule is a compiled rule.
type crule struct {
	rule      *Rule
	dirIn     bool
	dirOut    bool
	eachExpr  *fhirpath.Expr // nil: the rule works on the resource
	eachFast  *fastExpr      // each without the engine, when nothing needs typed nodes
	cond      *fhirpath.Expr
	condFast  *fastPred
	srcExpr   *fhirpath.Expr
	srcPath   *elemPath // a source that is an element path
	srcFast   *fastExpr // a source in the fast subset
	target    *elemPath
	steps     []transformFn
	def       any
	hasDef    bool
	required  bool
	sameNodes bool // the source reads the target element itself
	// root is the top-level member the rule writes below (when its touch
	// plan can say; see plan.go).
	root string
	// own says the rule's source is its target, one member without an
	// extension url (set by buildPlans).
	own bool
	// mutates says a transform may change objects it is given in place.
	mutates bool
	// pruneAll marks a rule that prunes the whole resource: it is done while
	// the resource is encoded, without a walk of its own.
	pruneAll bool
	// The expressions that refer to %variables get the environment.
	eachEnv, condEnv, srcEnv bool
}

func (r *crule) appliesTo(dir string) bool {
	if dir == DirectionOut {
		return r.dirOut
	}
	return r.dirIn
}

func (r *crule) run(st *runState) {
	if r.pruneAll {
		st.prune = true
		st.rep.Elements = append(st.rep.Elements, ElementResult{Rule: r.rule.ID, Index: -1, Target: r.rule.Target, Status: StatusPopulated})
		return
	}
	if r.eachExpr == nil {
		r.apply(st, st.res, nil, -1)
		return
	}
	if r.eachFast != nil {
		nodes := r.eachFast.eval(st.nodes[:0], st.res, st.res)
		st.nodes = nodes
		if len(nodes) == 0 {
			r.none(st)
		}
		for i, n := range nodes {
			obj, ok := n.(map[string]any)
			if !ok {
				continue
			}
			r.apply(st, obj, nil, i)
		}
		return
	}
	coll, err := r.eachExpr.Eval(st.ctx, st.res, st.environment(r.eachEnv))
	if err != nil {
		st.rep.Elements = append(st.rep.Elements, ElementResult{Rule: r.rule.ID, Each: r.rule.Each, Index: -1, Target: r.rule.Target, Status: StatusFailed, Required: r.required, Reason: "each: " + err.Error()})
		return
	}
	found := false
	for i, v := range coll {
		obj, ok := v.JSON().(map[string]any)
		if !ok {
			continue
		}
		found = true
		node := v
		r.apply(st, obj, &node, i)
	}
	if !found {
		r.none(st)
	}
}

func (r *crule) none(st *runState) {
	st.rep.Elements = append(st.rep.Elements, ElementResult{Rule: r.rule.ID, Each: r.rule.Each, Index: -1, Target: r.rule.Target, Status: StatusEmpty, Required: r.required})
}

// input is the FHIRPath input for a context: the typed node an each
// expression gave, or the resource.
func input(obj map[string]any, node *fhirpath.Value) any {
	if node != nil {
		return fhirpath.Collection{*node}
	}
	return obj
}

func (r *crule) apply(st *runState, obj map[string]any, node *fhirpath.Value, index int) {
	st.rep.Elements = append(st.rep.Elements, ElementResult{Rule: r.rule.ID, Each: r.rule.Each, Index: index, Target: r.rule.Target, Required: r.required})
	el := &st.rep.Elements[len(st.rep.Elements)-1]
	st.cur = el
	// (No defers: apply runs for every rule and element.)
	st.vals = r.applyTo(st, el, obj, node)[:0]
	st.cur = nil
}

// applyTo does apply's work on el; it returns the values slice, for the
// next rule to reuse.
func (r *crule) applyTo(st *runState, el *ElementResult, obj map[string]any, node *fhirpath.Value) []any {
	if r.condFast != nil {
		if !r.condFast.holds(obj, st.res) {
			el.Status = StatusSkipped
			return st.vals
		}
	} else if r.cond != nil {
		c, err := r.cond.Eval(st.ctx, input(obj, node), st.environment(r.condEnv))
		if err != nil {
			el.Status, el.Reason = StatusFailed, "condition: "+err.Error()
			return st.vals
		}
		if !isTrue(c) {
			el.Status = StatusSkipped
			return st.vals
		}
	}
	vals := st.vals[:0]
	// A rule that reads its target, one member of obj, looks it up once:
	// cur is the target's value for writesSame too (transforms change
	// values, never which value obj holds).
	var (
		cur   any
		curOK bool
	)
	switch {
	case r.own:
		cur, curOK = obj[r.target.segs[0].name]
		vals = appendItems(vals, cur)
	case r.srcPath != nil:
		vals = r.srcPath.get(vals, obj)
	case r.srcFast != nil:
		vals = r.srcFast.eval(vals, obj, st.res)
	case r.srcExpr != nil:
		c, err := r.srcExpr.Eval(st.ctx, input(obj, node), st.environment(r.srcEnv))
		if err != nil {
			el.Status, el.Reason = StatusFailed, "source: "+err.Error()
			return vals
		}
		vals = collectionJSON(vals, c)
	}
	st.tc.inPlace = r.sameNodes
	if r.sameNodes && r.mutates && hasComposite(vals) {
		// The transforms may change the element's objects in place.
		st.markDirty(r.root)
	}
	for _, step := range r.steps {
		var err error
		if vals, err = step(&st.tc, vals); err != nil {
			el.Status, el.Reason = StatusFailed, err.Error()
			if te, ok := err.(*transformError); ok && te.strict {
				st.strict = append(st.strict, *el)
			}
			return vals
		}
	}
	if len(vals) == 0 {
		// Nothing to write: the element keeps what it has (a value, or an
		// extension saying why there is none); only an empty element gets
		// the default.
		if r.target.present(obj) {
			el.Status = StatusKept
			return vals
		}
		if !r.hasDef {
			el.Status = StatusEmpty
			return vals
		}
		vals = append(vals, deepCopy(r.def))
		el.Defaulted = true
	}
	var same bool
	if r.own {
		same = curOK && r.target.segs[0].holds(cur, vals)
	} else {
		same = r.writesSame(obj, vals)
	}
	if !same {
		st.markDirty(r.root)
		if err := r.write(obj, vals); err != nil {
			el.Status, el.Reason = StatusFailed, err.Error()
			return vals
		}
	} else if !r.sameNodes {
		// The target holds these very objects, read from elsewhere: the
		// write gives it copies of its own.
		if err := r.write(obj, vals); err != nil {
			el.Status, el.Reason = StatusFailed, err.Error()
			return vals
		}
	}
	// (A rule that read its own element and leaves it as it is writes
	// nothing: the write would store the same values.)
	el.Status = StatusPopulated
	if st.opts.KeepValues {
		el.Values = append([]any(nil), vals...)
	}
	return vals
}

// write stores vals at the rule's target below obj.
func (r *crule) write(obj map[string]any, vals []any) error {
	if !r.sameNodes {
		for i, v := range vals {
			vals[i] = deepCopy(v)
		}
	}
	if r.target.isThis() {
		if len(vals) != 1 {
			return fmt.Errorf("%d values for one element", len(vals))
		}
		nv, ok := vals[0].(map[string]any)
		if !ok {
			return fmt.Errorf("a value that is not an element cannot replace the element")
		}
		if !sameMap(nv, obj) {
			clear(obj)
			for k, v := range nv {
				obj[k] = v
			}
		}
		return nil
	}
	parent := r.target.parent(obj, true)
	if parent == nil {
		return fmt.Errorf("the path to the element holds something other than elements")
	}
	seg := r.target.lastSeg()
	if seg.url != "" {
		// extension('url') as the last step: the extension itself.
		if len(vals) != 1 {
			return fmt.Errorf("%d values for one extension", len(vals))
		}
		ext, ok := vals[0].(map[string]any)
		if !ok {
			return fmt.Errorf("an extension must be an element")
		}
		ext["url"] = seg.url
		arr, _ := parent["extension"].([]any)
		for i, x := range arr {
			if e, ok := x.(map[string]any); ok && e["url"] == seg.url {
				arr[i] = ext
				return nil
			}
		}
		parent["extension"] = append(arr, ext)
		return nil
	}
	if seg.array {
		parent[seg.name] = append([]any(nil), vals...)
		return nil
	}
	if len(vals) != 1 {
		return fmt.Errorf("%d values for %s, which holds one (add first() or a where() to the source)", len(vals), seg.name)
	}
	parent[seg.name] = vals[0]
	return nil
}

// writesSame reports whether write(obj, vals) would leave obj as it is:
// the target holds these very values already (the same objects, or equal
// text, numbers and booleans). It errs on the side of false.
func (r *crule) writesSame(obj map[string]any, vals []any) bool {
	if r.target.isThis() {
		if len(vals) != 1 {
			return false
		}
		nv, ok := vals[0].(map[string]any)
		return ok && sameMap(nv, obj)
	}
	parent := r.target.parent(obj, false)
	if parent == nil {
		return false
	}
	seg := r.target.lastSeg()
	cur, ok := parent[seg.name]
	if !ok {
		return false
	}
	return seg.holds(cur, vals)
}

// holds reports whether cur, the value of seg's member, is what writing
// vals at seg would store (see writesSame).
func (seg *pathSeg) holds(cur any, vals []any) bool {
	if seg.url != "" {
		if len(vals) != 1 {
			return false
		}
		ext, ok := vals[0].(map[string]any)
		if !ok || ext["url"] != seg.url {
			return false
		}
		arr, _ := cur.([]any)
		for _, x := range arr {
			if e, ok := x.(map[string]any); ok && e["url"] == seg.url {
				return sameMap(e, ext)
			}
		}
		return false
	}
	if seg.array {
		arr, ok := cur.([]any)
		if !ok || len(arr) != len(vals) {
			return false
		}
		for i, v := range vals {
			if !sameValue(arr[i], v) {
				return false
			}
		}
		return true
	}
	return len(vals) == 1 && sameValue(cur, vals[0])
}

// sameValue reports whether a and b are the same JSON value: equal scalars
// of one type, or the same object or array (not equal contents).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case string, bool, json.Number, float64, int, int64, nil:
		return a == b
	case map[string]any:
		y, ok := b.(map[string]any)
		return ok && sameMap(x, y)
	case []any:
		y, ok := b.([]any)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
	case *rawValue:
		return a == b
	}
	return false
}

// hasComposite reports whether vals hold an object or an array.
func hasComposite(vals []any) bool {
	for _, v := range vals {
		switch v.(type) {
		case map[string]any, []any, *rawValue:
			return true
		}
	}
	return false
}

// sameMap reports whether a and b are the same map (not equal contents).
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// isTrue reports whether a condition's result is the single Boolean true.
func isTrue(c fhirpath.Collection) bool {
	if len(c) != 1 {
		return false
	}
	b, err := c[0].MarshalJSON()
	return err == nil && string(b) == "true"
}

// collectionJSON appends a FHIRPath result as JSON values.
func collectionJSON(out []any, c fhirpath.Collection) []any {
	for _, v := range c {
		if v.IsNode() {
			if j := v.JSON(); j != nil {
				out = append(out, j)
			}
			continue
		}
		b, err := v.MarshalJSON()
		if err != nil {
			continue
		}
		if j, err := decodeJSON(b); err == nil && j != nil {
			out = append(out, j)
		}
	}
	return out
}
