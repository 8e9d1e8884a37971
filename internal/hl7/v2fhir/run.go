package v2fhir

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
)

// This file is the interpreter: it runs the compiled rules of one message
// spec over one message.

// run is the state of one conversion.
type run struct {
	c     *Converter
	m     *hl7.Message
	msg   *cmsg
	segs  []*hl7.Segment
	byID  map[string][]int
	insts [][]*inst
	used  map[string]*inst // "Type/id" → the instance that has it
	seen  map[string]bool  // "Type/id" of the resources written
	res   Result
	warns map[string]bool
	joins []*joinBuf

	metaSource string
	zoneFixed  bool
	zoneOff    int
	zoneLoc    *time.Location
}

// inst is one resource of the message spec: one occurrence of its segment.
type inst struct {
	spec    *cres
	at      int // index of its segment
	incl    []inclRef
	id      string
	idState uint8 // 0 not yet, 1 computing, 2 done
	dup     bool  // another occurrence with the same key is the resource
}

type inclRef struct {
	at  int
	inc *cinclude
}

// ectx is where a rule runs: the resource being built, the segment, and
// the value in scope.
type ectx struct {
	r    *run
	in   *inst // nil for resources built by data type maps
	at   int
	v    val
	hasV bool
}

// joinBuf collects the values of a rule with join until the resource is
// finished.
type joinBuf struct {
	cr     *crule
	base   *node
	parent *node
	leaf   fpath
	parts  []string
}

func newRun(c *Converter, m *hl7.Message, msg *cmsg) *run {
	r := &run{c: c, m: m, msg: msg, byID: map[string][]int{}, used: map[string]*inst{}, seen: map[string]bool{}}
	r.segs = m.Segments()
	for i, s := range r.segs {
		r.byID[s.ID()] = append(r.byID[s.ID()], i)
	}
	h := m.Header()
	if h.SendingApplication != "" || h.SendingFacility != "" {
		r.metaSource = "urn:mediflow:hl7v2:" + uriEscape(h.SendingApplication) + "|" + uriEscape(h.SendingFacility)
	}
	if msh := r.segFor("MSH", 0); msh != nil {
		if t, err := parseDTM(val{rep: *msh.Field(7).Rep(1)}.atom()); err == nil && t.hasOff {
			r.zoneFixed, r.zoneOff = true, t.off
		}
	}
	if !r.zoneFixed && c.opts.TimeZone != nil {
		r.zoneLoc = c.opts.TimeZone
	}
	return r
}

func (r *run) warnf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if r.warns == nil {
		r.warns = map[string]bool{}
	}
	if !r.warns[s] {
		r.warns[s] = true
		r.res.Warnings = append(r.res.Warnings, s)
	}
}

// zoneOffset is the UTC offset (minutes) of a time that carries none.
func (r *run) zoneOffset(t dtm) int {
	switch {
	case r.zoneFixed:
		return r.zoneOff
	case r.zoneLoc != nil:
		_, off := time.Date(t.y, time.Month(t.mo), t.d, t.h, t.mi, t.sec, 0, r.zoneLoc).Zone()
		return off / 60
	}
	r.warnf("times without a UTC offset were read as UTC (MSH-7 has no offset and no time zone is configured)")
	return 0
}

// segFor returns the segment with the given id nearest before (or at) at,
// else the first one after it.
func (r *run) segFor(id string, at int) *hl7.Segment {
	list := r.byID[id]
	if len(list) == 0 {
		return nil
	}
	i := sort.SearchInts(list, at+1) - 1
	if i < 0 {
		i = 0
	}
	return r.segs[list[i]]
}

// lookAt returns the instance of resource ri nearest before (or at) at,
// else (unless preceding) the first one after it.
func (r *run) lookAt(ri, at int, preceding bool) *inst {
	list := r.insts[ri]
	var best *inst
	for _, in := range list {
		if in.at > at {
			break
		}
		best = in
	}
	if best == nil && !preceding && len(list) > 0 {
		best = list[0]
	}
	return best
}

// resolveAt is lookAt for an instance that has an id (nil otherwise).
func (r *run) resolveAt(ri, at int, preceding bool) *inst {
	in := r.lookAt(ri, at, preceding)
	if in == nil {
		return nil
	}
	r.ensureID(in)
	if in.id == "" {
		return nil
	}
	return in
}

// resolve finds the resource ri that the rule's resource refers to: its
// parent only before it, others the nearest.
func (r *run) resolve(ri int, cx *ectx) *inst {
	at, preceding := cx.at, false
	if cx.in != nil {
		at = cx.in.at
		preceding = cx.in.spec.parent == ri
	}
	return r.resolveAt(ri, at, preceding)
}

// makeID is "v2-" + a hash of the resource type and the key's parts.
func makeID(typ string, parts []string) string {
	h := sha256.New()
	h.Write([]byte(typ))
	for _, p := range parts {
		h.Write([]byte{0x1f})
		h.Write([]byte(p))
	}
	var sum [sha256.Size]byte
	return "v2-" + hex.EncodeToString(h.Sum(sum[:0])[:12])
}

// keyParts evaluates one key alternative; ok is false when a required part
// is empty or every part is.
func (r *run) keyParts(alt []kpart, cx *ectx) ([]string, bool) {
	parts := make([]string, 0, len(alt))
	some := false
	for _, kp := range alt {
		var s string
		switch {
		case kp.res >= 0:
			if t := r.resolve(kp.res, cx); t != nil {
				s = t.id
			}
		case kp.mp != nil:
			s = strings.TrimSpace(kp.mp.first(r.segFor(kp.mp.seg, cx.at)).text())
		case kp.cp != nil:
			if cx.hasV {
				s = strings.TrimSpace(cx.v.at(*kp.cp).text())
			}
		}
		if s == "" && !kp.opt {
			return nil, false
		}
		some = some || s != ""
		parts = append(parts, s)
	}
	return parts, some
}

// ensureID computes an instance's id from its key (once).
func (r *run) ensureID(in *inst) {
	if in.idState != 0 {
		return
	}
	in.idState = 1
	defer func() { in.idState = 2 }()
	typ := in.spec.spec.Type
	cx := &ectx{r: r, in: in, at: in.at}
	if !cx.holds(in.spec.when) {
		r.warnf("%s from %s (segment %d) left out: its conditions do not hold", typ, in.spec.segment, in.at+1)
		return
	}
	var parts []string
	for _, alt := range in.spec.key {
		if p, ok := r.keyParts(alt, cx); ok {
			parts = p
			break
		}
	}
	if parts == nil {
		r.warnf("%s from %s (segment %d) left out: no value for its key", typ, in.spec.segment, in.at+1)
		return
	}
	id := makeID(typ, parts)
	if prev := r.used[typ+"/"+id]; prev != nil {
		if prev.spec.idx == in.spec.idx && in.spec.mergeDup {
			in.id, in.dup = id, true
			return
		}
		for n := 2; ; n++ {
			id = makeID(typ, append(parts, "#"+strconv.Itoa(n)))
			if r.used[typ+"/"+id] == nil {
				break
			}
		}
		r.warnf("several %s resources from %s have the same key; the ids of the later ones are numbered", typ, in.spec.segment)
	}
	in.id = id
	r.used[typ+"/"+id] = in
}

// convert runs the message spec.
func (r *run) convert() (*Result, error) {
	res := r.msg.res
	r.insts = make([][]*inst, len(res))
	for ri, cr := range res {
		for _, at := range r.byID[cr.segment] {
			r.insts[ri] = append(r.insts[ri], &inst{spec: cr, at: at})
		}
	}
	for ri, cr := range res {
		for k := range cr.include {
			inc := &cr.include[k]
			for _, at := range r.byID[inc.segment] {
				if owner := r.includeOwner(ri, at, inc.adjacent); owner != nil {
					owner.incl = append(owner.incl, inclRef{at: at, inc: inc})
				}
			}
		}
		for _, in := range r.insts[ri] {
			sort.SliceStable(in.incl, func(i, j int) bool { return in.incl[i].at < in.incl[j].at })
		}
	}
	for _, list := range r.insts {
		for _, in := range list {
			r.ensureID(in)
		}
	}
	h := r.m.Header()
	for ri, cr := range res {
		if !cr.required {
			continue
		}
		ok := false
		for _, in := range r.insts[ri] {
			ok = ok || in.id != ""
		}
		if !ok {
			return nil, fmt.Errorf("v2fhir: %s^%s: no %s could be made (segment %s missing or without the values its id is made from)",
				h.MessageCode, h.TriggerEvent, cr.spec.Type, cr.segment)
		}
	}
	for ri, cr := range res {
		if !cr.emit {
			continue
		}
		for _, in := range r.insts[ri] {
			if in.id != "" && !in.dup {
				r.build(in)
			}
		}
	}
	for _, mg := range r.msg.merges {
		r.merge(mg)
	}
	out := r.res
	return &out, nil
}

// includeOwner is the instance of resource ri an include segment at at
// belongs to.
func (r *run) includeOwner(ri, at int, adjacent bool) *inst {
	owner := r.lookAt(ri, at, adjacent)
	if owner == nil || !adjacent {
		return owner
	}
	for i := owner.at + 1; i < at; i++ {
		if !owner.spec.inclSegs[r.segs[i].ID()] {
			return nil
		}
	}
	return owner
}

func (r *run) newDoc(typ, id string) *node {
	doc := newObject()
	doc.set("resourceType", strNode(typ))
	doc.set("id", strNode(id))
	if r.metaSource != "" {
		meta := newObject()
		meta.set("source", strNode(r.metaSource))
		doc.set("meta", meta)
	}
	return doc
}

func (r *run) emit(doc *node, typ, id string) {
	doc.prune()
	r.seen[typ+"/"+id] = true
	r.res.Resources = append(r.res.Resources, Resource{Type: typ, ID: id, Body: doc.appendJSON(make([]byte, 0, 512))})
}

// build makes one resource: its segment's map, the message's rules, the
// include segments' maps, the trigger's rules.
func (r *run) build(in *inst) {
	typ := in.spec.spec.Type
	doc := r.newDoc(typ, in.id)
	r.seen[typ+"/"+in.id] = true
	cx := ectx{r: r, in: in, at: in.at}
	if in.spec.smap != nil {
		r.applyAll(in.spec.smap.rules, doc, cx)
	}
	r.applyAll(in.spec.rules, doc, cx)
	for _, ic := range in.incl {
		r.applyAll(ic.inc.smap.rules, doc, ectx{r: r, in: in, at: ic.at})
	}
	r.applyAll(in.spec.event, doc, cx)
	r.flushJoins()
	r.emit(doc, typ, in.id)
}

func (r *run) applyAll(rules []*crule, base *node, cx ectx) {
	for _, cr := range rules {
		r.apply(cr, base, cx)
	}
}

// apply runs one rule: for each value it reads whose conditions hold, it
// writes; when it wrote nothing, its default.
func (r *run) apply(cr *crule, base *node, cx ectx) {
	var buf [2]val
	vals := buf[:0]
	switch {
	case len(cr.src) > 0:
		for _, mp := range cr.src {
			if vals = mp.appendValues(vals, r.segFor(mp.seg, cx.at), cr.eachRep); len(vals) > 0 {
				break
			}
		}
	case len(cr.comps) == 1:
		if v := cx.v.at(cr.comps[0]); !v.empty() {
			vals = append(vals, v)
		}
	case len(cr.comps) > 1:
		if v := cx.v.pick(cr.comps); !v.empty() {
			vals = append(vals, v)
		}
	default:
		vals = append(vals, cx.v) // the value in scope, or none
	}
	wrote := false
	for _, v := range vals {
		ccx := cx
		if len(cr.src) > 0 {
			ccx.v, ccx.hasV = v, true
		}
		if !ccx.holds(cr.when) {
			continue
		}
		if cr.hasValue {
			ccx.v, ccx.hasV = v, true
		}
		if r.do(cr, base, ccx, v) {
			wrote = true
		}
	}
	if !wrote && cr.def != nil && cx.holds(cr.when) {
		put(base, cr.path, cr.def.clone())
	}
}

// do writes what one rule makes of one value.
func (r *run) do(cr *crule, base *node, cx ectx, v val) bool {
	switch {
	case cr.warn != "":
		r.warnf("%s", cr.warn)
		return false
	case cr.remove:
		remove(base, cr.path)
		return true
	case cr.value != nil:
		put(base, cr.path, cr.value.clone())
		return true
	case cr.ref >= 0:
		t := r.resolve(cr.ref, &cx)
		if t == nil {
			return false
		}
		put(base, cr.path, refNode(t.spec.spec.Type, t.id, ""))
		return true
	case cr.refs >= 0:
		return r.children(cr, base, cx)
	case cr.dmap != nil:
		return r.applyMap(cr, base, cx, v)
	case cr.conv != nil:
		return r.convertValue(cr, base, cx, v)
	case cr.format != nil:
		s := cr.format.render(&cx)
		if s == "" {
			return false
		}
		if cr.hasJoin {
			r.joinAdd(cr, base, s)
			return true
		}
		put(base, cr.path, strNode(s))
		return true
	}
	e := elem(base, cr.path)
	r.nested(cr, e, cx)
	return !e.empty()
}

// nested runs a rule's own rules (all) or choices (the first that holds)
// in the element it made.
func (r *run) nested(cr *crule, e *node, cx ectx) {
	r.applyAll(cr.nested, e, cx)
	for _, ch := range cr.choose {
		if cx.holds(ch.when) {
			r.apply(ch, e, cx)
			return
		}
	}
}

// children writes a reference to every resource of kind cr.refs that
// belongs to the resource being built.
func (r *run) children(cr *crule, base *node, cx ectx) bool {
	owner := cx.in
	if owner == nil {
		return false
	}
	wrote := false
	done := map[string]bool{}
	for _, ch := range r.insts[cr.refs] {
		r.ensureID(ch)
		if ch.id == "" || done[ch.id] {
			continue
		}
		if r.lookAt(owner.spec.idx, ch.at, ch.spec.parent == owner.spec.idx) != owner {
			continue
		}
		done[ch.id] = true
		put(base, cr.path, refNode(ch.spec.spec.Type, ch.id, ""))
		wrote = true
	}
	return wrote
}

// lookupCode finds a coded value's code in a table: the first component,
// else the alternate identifier (CWE.4).
func lookupCode(t *ctable, v val) *TableEntry {
	if e := t.lookup(v.comp(1).atom()); e != nil {
		return e
	}
	if c4 := v.comp(4).atom(); c4 != "" {
		return t.lookup(c4)
	}
	return nil
}

func codingNode(t *ctable, e *TableEntry) *node {
	n := newObject()
	if s := t.system(e); s != "" {
		n.set("system", strNode(s))
	}
	n.set("code", strNode(e.Target))
	if e.Display != "" {
		n.set("display", strNode(e.Display))
	}
	return n
}

// prependCoding puts c first in a CodeableConcept's codings, dropping a
// coding with the same code and no or the same system.
func prependCoding(cc *node, c *node) {
	arr := cc.get("coding")
	if arr == nil || arr.kind != kArray {
		arr = &node{kind: kArray}
		cc.set("coding", arr)
	}
	code, sys := c.get("code"), c.get("system")
	keep := []*node{c}
	for _, x := range arr.vals {
		if x == nil {
			continue
		}
		if xc := x.get("code"); xc != nil && code != nil && xc.str == code.str {
			xs := x.get("system")
			if xs == nil || xs.str == "" || (sys != nil && xs.str == sys.str) {
				continue
			}
		}
		keep = append(keep, x)
	}
	arr.vals, arr.slots = keep, nil
}

// applyMap applies a data type map to a value.
func (r *run) applyMap(cr *crule, base *node, cx ectx, v val) bool {
	m := cr.dmap
	if m.resource != "" {
		ref := r.linked(m, v, cx)
		if ref == nil {
			return false
		}
		put(base, cr.path, ref)
		return true
	}
	var entry *TableEntry
	if cr.table != nil {
		entry = lookupCode(cr.table, v)
	}
	e := elem(base, cr.path)
	mcx := ectx{r: r, in: cx.in, at: cx.at, v: v, hasV: true}
	if entry != nil && m.target == "Coding" {
		c := codingNode(cr.table, entry)
		for _, m := range c.mem {
			e.set(m.key, m.val)
		}
	} else {
		r.applyAll(m.rules, e, mcx)
		if entry != nil {
			prependCoding(e, codingNode(cr.table, entry))
		}
	}
	r.nested(cr, e, cx)
	return !e.empty()
}

// linked builds the resource a data type map makes of a value (once per
// id) and returns the Reference to it (a display-only Reference when the
// value has no key).
func (r *run) linked(m *cmap, v val, cx ectx) *node {
	dcx := ectx{r: r, at: cx.at, v: v, hasV: true}
	display := ""
	if m.display != nil {
		display = m.display.render(&dcx)
	}
	var parts []string
	for _, alt := range m.key {
		if p, ok := r.keyParts(alt, &dcx); ok {
			parts = p
			break
		}
	}
	if parts == nil {
		if display == "" {
			return nil
		}
		return refNode("", "", display)
	}
	id := makeID(m.resource, parts)
	if !r.seen[m.resource+"/"+id] {
		r.seen[m.resource+"/"+id] = true
		doc := r.newDoc(m.resource, id)
		r.applyAll(m.rules, doc, dcx)
		r.emit(doc, m.resource, id)
	}
	return refNode(m.resource, id, display)
}

// convertValue converts a value with the rule's conversion (and table).
func (r *run) convertValue(cr *crule, base *node, cx ectx, v val) bool {
	c := cr.conv
	if c.fromVal != nil {
		n, problem := c.fromVal(r, v)
		if problem != "" {
			r.warnf("%s: %s", cr.label, problem)
		}
		if n == nil {
			return false
		}
		put(base, cr.path, n)
		return true
	}
	s := c.extract(v)
	if cr.table != nil {
		switch e := lookupCode(cr.table, v); {
		case e != nil:
			s = e.Target
		case cr.table.t.KeepUnmapped:
		default:
			if cr.def != nil && strings.TrimSpace(s) != "" {
				r.warnf("%s: a code not in table %s; the default was used", cr.label, cr.table.t.Name)
			}
			return false
		}
	}
	if cr.hasJoin {
		if strings.TrimSpace(s) == "" {
			return false
		}
		r.joinAdd(cr, base, s)
		return true
	}
	if len(cr.plus) > 0 {
		var ok bool
		if s, ok = r.plus(cr, cx, s); !ok {
			return false
		}
	}
	n, problem := c.make(r, s)
	if problem != "" {
		r.warnf("%s: %s", cr.label, problem)
	}
	if n == nil {
		return false
	}
	put(base, cr.path, n)
	return true
}

// plus adds the first duration of cr.plus to the date/time s.
func (r *run) plus(cr *crule, cx ectx, s string) (string, bool) {
	t, err := parseDTM(s)
	if err != nil || t.prec < 10 {
		return "", false
	}
	for _, pair := range cr.plus {
		amount := strings.TrimSpace(pair[0].first(r.segFor(pair[0].seg, cx.at)).atom())
		if amount == "" {
			continue
		}
		n, err := strconv.ParseFloat(amount, 64)
		if err != nil || n <= 0 || math.IsInf(n, 0) || n > 1e7 {
			r.warnf("%s: duration %s is not a positive number", cr.label, pair[0])
			continue
		}
		unit := strings.TrimSpace(pair[1].first(r.segFor(pair[1].seg, cx.at)).atom())
		secs := 60.0
		if unit != "" {
			e := r.c.set.durationUnits.lookup(unit)
			if e == nil {
				r.warnf("%s: the units of %s are not in table DurationUnits", cr.label, pair[0])
				continue
			}
			secs, _ = strconv.ParseFloat(e.Target, 64)
		}
		return t.addSeconds(r, int64(math.Round(n*secs))).v2(), true
	}
	return "", false
}

// joinAdd keeps a value of a rule with join for flushJoins.
func (r *run) joinAdd(cr *crule, base *node, s string) {
	for _, j := range r.joins {
		if j.cr == cr && j.base == base {
			j.parts = append(j.parts, s)
			return
		}
	}
	// The element is made now, so that it keeps its place among its
	// siblings; the value is written when the resource is finished.
	parent := elem(base, cr.path[:len(cr.path)-1])
	r.joins = append(r.joins, &joinBuf{cr: cr, base: base, parent: parent, leaf: cr.path[len(cr.path)-1:], parts: []string{s}})
}

// flushJoins writes the joined values.
func (r *run) flushJoins() {
	for _, j := range r.joins {
		s := strings.Join(j.parts, j.cr.join)
		var n *node
		var problem string
		if j.cr.conv != nil {
			n, problem = j.cr.conv.make(r, s)
		} else {
			n, problem = makeString(r, s)
		}
		if problem != "" {
			r.warnf("%s: %s", j.cr.label, problem)
		}
		if n != nil {
			put(j.parent, j.leaf, n)
		}
	}
	r.joins = r.joins[:0]
}

// merge makes the Merges of one merge spec.
func (r *run) merge(mg *cmerge) {
	for _, at := range r.byID[mg.segment] {
		cx := &ectx{r: r, at: at}
		var parts []string
		for _, alt := range mg.from {
			if p, ok := r.keyParts(alt, cx); ok {
				parts = p
				break
			}
		}
		if parts == nil {
			r.warnf("%s (segment %d): no identifier of the merged %s; the merge was left out", mg.segment, at+1, mg.typ)
			continue
		}
		into := r.resolveAt(mg.into, at, false)
		if into == nil {
			r.warnf("%s (segment %d): no surviving %s; the merge was left out", mg.segment, at+1, mg.typ)
			continue
		}
		from := makeID(mg.typ, parts)
		if from == into.id {
			r.warnf("%s (segment %d): the merged and the surviving %s are the same; the merge was left out", mg.segment, at+1, mg.typ)
			continue
		}
		r.res.Merges = append(r.res.Merges, Merge{Type: mg.typ, From: from, Into: into.id})
	}
}
