package mapping

import (
	"bytes"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// rawValue stands in the decoded tree for a member no rule reads (see
// plan.go): its value is the input's bytes [start, end).
type rawValue struct {
	start, end int32
	// canon says the encoder would write the value exactly as these bytes
	// (when the resource is pruned as the plan said).
	canon bool
	array bool // the value is an array (for the "_name" alignment)
	// tag says the value is a resource's meta, written with the profile
	// tag (the decoder's tagMember) added at its end (see tagMeta).
	tag bool
}

// topKey is a top-level member of a resource decodeResource read: its
// name, its rank as the encoder orders members (see objKey) and its type
// (nil: unknown, or a "_name" member).
type topKey struct {
	key  string
	typ  *model.Type
	rank int32
	// clean says the decoded map still holds val (see markClean).
	clean bool
	// raw is the member's value when no rule reads it (then, with the
	// members in encoder order, it is not in the decoded map).
	raw *rawValue
	// val is the value decoded (or raw).
	val any
}

// topMember is a top-level member decoded for the rules, at [start, end)
// of the input.
type topMember struct {
	key        string
	start, end int
}

// promoteBytesPerObject weighs encoding a decoded object against checking
// input bytes again (see materialize): a top-level member is a candidate
// for copying when it has at least one decoded object per so many bytes.
const promoteBytesPerObject = 48

// rawSlab is how many rawValues a decoder allocates at a time.
const rawSlab = 64

// newRaw returns a rawValue for data[start:end], from the decoder's slab.
// Slabs are reused from document to document (reset), as no rawValue
// outlives the Map call that decoded it.
func (d *jsonDecoder) newRaw(start, end int, canon bool) *rawValue {
	if len(d.raws) == cap(d.raws) {
		d.raws = make([]rawValue, 0, rawSlab)
		d.slabs = append(d.slabs, d.raws)
	}
	d.raws = append(d.raws, rawValue{start: int32(start), end: int32(end), canon: canon, array: d.data[start] == '['})
	return &d.raws[len(d.raws)-1]
}

// resetRaws makes the slabs free for the next document.
func (d *jsonDecoder) resetRaws() {
	if len(d.slabs) > 0 {
		d.raws = d.slabs[0][:0]
		clear(d.slabs[1:])
		d.slabs = d.slabs[:1]
	}
}

// decodeResource decodes a resource as decode does, but for the members
// the touch plan of s for its type and direction dir leaves as bytes
// (rawValues; when the resource type is the first member, and only for a
// decoder that recycles its trees). The decoded top-level members are
// listed in d.spans.
func (d *jsonDecoder) decodeResource(data []byte, s *Set, dir string) (any, error) {
	d.spans = d.spans[:0]
	clear(d.top)
	d.top, d.topOrdered, d.rt, d.te = d.top[:0], false, nil, nil
	d.meta, d.metaEnd, d.tagMember = nil, false, nil
	d.resetRaws()
	if len(data) == 0 || len(data) > 1<<31-1 || !d.track || s.decodeAll {
		return d.decode(data)
	}
	// The decoded texts share data rather than a copy of it: the tree
	// lives only for the Map call (track: nothing keeps its values), and
	// what does outlive it (the report's resource type and unmapped codes)
	// is copied where it is made.
	d.data, d.src, d.pos = data, unsafe.String(&data[0], len(data)), 0
	v, ok := d.topLazy(s, dir)
	if ok {
		// d.data and d.src stay for materialize and the encoder.
		return v, nil
	}
	d.data, d.src = nil, ""
	d.meta = nil
	// Not an object that starts with its resourceType, or bad JSON: the
	// decoder as it is (for its result or its error).
	clear(d.spans)
	d.spans = d.spans[:0]
	clear(d.kvs)
	d.kvs = d.kvs[:0]
	clear(d.vals)
	d.vals = d.vals[:0]
	d.resetRaws()
	return d.decode(data)
}

// topLazy is decodeResource's fast path; ok false sends the document to
// the plain decoder.
func (d *jsonDecoder) topLazy(s *Set, dir string) (any, bool) {
	m := s.m
	used := len(d.used)
	fail := func() (any, bool) {
		d.forgetSince(used)
		return nil, false
	}
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		return fail()
	}
	d.pos++
	d.skipSpace()
	// "resourceType" first, with a string value.
	const rtKey = `"resourceType"`
	if !bytes.HasPrefix(d.data[d.pos:], []byte(rtKey)) {
		return fail()
	}
	d.pos += len(rtKey)
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != ':' {
		return fail()
	}
	d.pos++
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return fail()
	}
	rt, err := d.str()
	if err != nil {
		return fail()
	}
	// A resource type that can be instantiated (the table has those only).
	te := s.types[rt]
	if te == nil {
		return fail()
	}
	rtT := te.t
	plan := te.plan(dir)
	if plan == nil || plan.all {
		return fail()
	}
	d.m, d.prune = m, plan.prune
	var rtv any = plan.rtName
	if name, _ := rtv.(string); name != rt {
		rtv = rt
	}
	// Each member's rank and type as the encoder finds them; members in
	// definition order are found by a walk on from the last one.
	d.top = append(d.top, topKey{key: "resourceType", rank: -2, val: rtv})
	ordered := true
	cursor, nraw := 0, 0
	for {
		d.skipSpace()
		if d.pos >= len(d.data) {
			return fail()
		}
		if d.data[d.pos] == '}' {
			break
		}
		if d.data[d.pos] != ',' {
			return fail()
		}
		d.pos++
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return fail()
		}
		var k string
		if i := plainEnd(d.data, d.pos+1); i >= 0 {
			k, d.pos = d.src[d.pos+1:i], i+1
		} else if k, err = d.str(); err != nil {
			return fail()
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return fail()
		}
		d.pos++
		d.skipSpace()
		start := d.pos
		tk := topKey{key: k, rank: unknownChild}
		if k == "resourceType" {
			tk.rank = -2
		} else {
			name, under := k, int32(0)
			if len(k) > 1 && k[0] == '_' {
				name, under = k[1:], 1
			}
			c, choice, found := lookupFrom(rtT, name, cursor)
			if !found {
				c, choice, found = rtT.Lookup(name)
			}
			if found {
				tk.rank = int32(2*c) + under
				cursor = c
				if under == 0 {
					tk.typ = rtT.ChildType(c, max(choice, 0))
				}
			}
		}
		if prev := d.top[len(d.top)-1]; tk.rank < prev.rank || tk.rank == prev.rank && compareMemberNames(prev.key, k) >= 0 {
			ordered = false
		}
		d.top = append(d.top, tk)
		var kid *planNode
		if plan.root.typ == rtT && tk.rank < unknownChild {
			kid = plan.root.kidAt(tk.rank, k)
		} else {
			kid = plan.root.kid(k)
		}
		var v any
		if kid != nil || k == "resourceType" {
			objs := d.nobj
			if v, err = d.valueIn(1, kid); err != nil {
				return fail()
			}
			// Candidates for copying when the rules leave them as they
			// are: objects and arrays whose decoded objects would cost
			// more to encode than their bytes to check again (a primitive
			// is as cheap to write as to check).
			if k != "resourceType" && k != "meta" && (d.nobj-objs)*promoteBytesPerObject >= d.pos-start {
				addMember(&d.spans, topMember{key: k, start: start, end: d.pos})
			}
		} else {
			// skipMember(k, rtT, 1), with the type found above.
			canon, err := d.skip(1, tk.typ, k == "extension" || k == "modifierExtension")
			if err != nil {
				return fail()
			}
			raw := d.newRaw(start, d.pos, canon)
			d.top[len(d.top)-1].raw = raw
			nraw++
			v = raw
			if plan.metaRaw && k == "meta" {
				// (The last one counts, as in a decoded object.) The tag
				// can go at its end when nothing in it comes after tag.
				d.meta = raw
				d.metaEnd = canon && d.data[start] == '{' && tk.typ == plan.metaType && d.lastRank < plan.tagRank
			}
		}
		d.top[len(d.top)-1].val = v
	}
	d.pos++ // }
	d.skipSpace()
	if d.pos != len(d.data) {
		return fail()
	}
	// With the members in encoder order (and so no duplicates), those no
	// rule reads stay out of the map: the encoder takes them from d.top,
	// and the map the rules work on stays small. Else the map has them
	// all, the last of a duplicate winning.
	n := len(d.top)
	if ordered {
		n -= nraw
	}
	obj := d.newMap(n)
	for i := range d.top {
		tk := &d.top[i]
		if ordered && tk.raw != nil {
			continue
		}
		obj[tk.key] = tk.val
	}
	if !ordered && obj["resourceType"] != rt {
		// A second resourceType names another type, with another plan.
		// (In encoder order there is no second one.)
		return fail()
	}
	d.rt, d.te = rtT, te
	d.topOrdered = ordered
	return obj, true
}

// valueIn decodes a value as value does, leaving the members of objects
// that n (a partial plan node) does not name as rawValues.
func (d *jsonDecoder) valueIn(depth int, n *planNode) (any, error) {
	if n == nil || n.full || d.pos >= len(d.data) || depth > maxJSONDepth {
		return d.value(depth)
	}
	switch d.data[d.pos] {
	case '{':
		if n.opaque() {
			// Checked as value would read it, and kept as bytes.
			start := d.pos
			canon, err := d.skip(depth, n.typ, n.ext)
			if err != nil {
				return nil, err
			}
			return d.newRaw(start, d.pos, canon), nil
		}
		return d.object(depth, n)
	case '[':
		return d.array(depth, n)
	}
	return d.value(depth)
}

// addMember records a member in list; a later duplicate replaces an
// earlier one (as in a decoded object, the last value wins).
func addMember(list *[]topMember, l topMember) {
	for i := range *list {
		if (*list)[i].key == l.key {
			(*list)[i] = l
			return
		}
	}
	*list = append(*list, l)
}

// forgetSince drops the maps recorded for recycling since mark (they are
// garbage when the fast path gives up; the plain decoder makes its own).
func (d *jsonDecoder) forgetSince(mark int) {
	if mark < len(d.used) {
		clear(d.used[mark:])
		d.used = d.used[:mark]
	}
}

// skipMember skips the value of member k of an object of type t (see
// skip), at the given depth.
func (d *jsonDecoder) skipMember(k string, t *model.Type, depth int) (bool, error) {
	// The member's type, as the encoder finds it.
	var ct *model.Type
	if t != nil && len(k) > 0 && k[0] != '_' {
		if c, choice, found := t.Lookup(k); found {
			ct = t.ChildType(c, max(choice, 0))
		}
	}
	return d.skip(depth, ct, k == "extension" || k == "modifierExtension")
}

// skipMemberFrom is skipMember for the members of one object in turn:
// cursor, the child index of the last member found, lets members in
// definition order be found without hashing.
func (d *jsonDecoder) skipMemberFrom(k string, t *model.Type, depth int, cursor *int) (bool, error) {
	var ct *model.Type
	if t != nil && len(k) > 0 && k[0] != '_' {
		c, choice, found := lookupFrom(t, k, *cursor)
		if !found {
			c, choice, found = t.Lookup(k)
		}
		if found {
			*cursor = c
			ct = t.ChildType(c, max(choice, 0))
		}
	}
	return d.skip(depth, ct, k == "extension" || k == "modifierExtension")
}

// materialize prepares the encoding of a resource decodeResource read and
// the rules then changed: the decoded top-level members not in dirty whose
// input bytes the encoder would write as they are become rawValues, so they
// are copied. Whether the encoder prunes is known at Load; should prune
// differ from what the plan said, nothing is copied (raw reports that).
func (d *jsonDecoder) materialize(res map[string]any, prune bool, dirty []string) (raw bool) {
	if d.data == nil {
		return false // decoded in full
	}
	if prune != d.prune {
		return false
	}
	for _, l := range d.spans {
		if slices.Contains(dirty, l.key) {
			continue
		}
		if _, ok := res[l.key]; !ok {
			continue
		}
		d.pos = l.start
		if canon, err := d.skipMember(l.key, d.rt, 1); err != nil || !canon || d.pos != l.end {
			continue
		}
		raw := d.newRaw(l.start, l.end, true)
		res[l.key] = raw
		if d.topOrdered {
			// (No duplicates: the one entry of the name.)
			for i := range d.top {
				if d.top[i].key == l.key && d.top[i].raw == nil {
					d.top[i].val = raw
				}
			}
		}
	}
	return true
}

// markClean marks the members of d.top that the map of a resource read
// in encoder order still holds as decoded (val): those not in dirty (which
// lists every member a rule may have written, as materialize relies on;
// rules never remove a top-level member), other than meta, which gets the
// profile tag. The encoder takes their value without a look-up. Call it
// after materialize, which keeps val up to date.
func (d *jsonDecoder) markClean(dirty []string) {
	if !d.topOrdered || d.data == nil {
		return
	}
	for i := range d.top {
		tk := &d.top[i]
		tk.clean = tk.raw == nil && tk.key != "meta" && !slices.Contains(dirty, tk.key)
	}
}

// noMembers is lastRank after an empty object.
const noMembers = -3

// tagMeta gives a resource decodeResource read with a metaRaw plan its
// profile tag (direction in), as setProfileTag(res, tag) followed by the
// encoding would: when meta is in encoder form (for prune, which must be
// what the plan said) and has nothing that comes after tag, its bytes are
// copied with the tag member written before the closing brace. Otherwise
// meta is decoded into res and done reports false: the caller sets the
// tag on the decoded meta. Without meta (or a metaRaw plan) it does
// nothing and reports false.
func (d *jsonDecoder) tagMeta(res map[string]any, prune bool, s *Set) (done bool, err error) {
	if d.meta == nil || d.data == nil {
		return false, nil
	}
	if d.metaEnd && prune == d.prune {
		d.meta.tag = true
		d.tagMember = s.tagMember[0]
		if prune {
			d.tagMember = s.tagMember[1]
		}
		return true, nil
	}
	// As the plan would have had it with meta decoded: in the map, and
	// not among the members the encoder takes from d.top.
	v, err := d.decodeRaw(d.meta)
	if err != nil {
		return false, err
	}
	if d.topOrdered {
		for i := range d.top {
			if d.top[i].raw == d.meta {
				d.top[i].raw, d.top[i].val = nil, v
			}
		}
	}
	res["meta"] = v
	d.meta = nil
	return false, nil
}

// appendTagged appends meta's bytes with the profile tag at the end (see
// tagMeta). Those bytes are compact: "{}", or members and the brace.
func (d *jsonDecoder) appendTagged(dst []byte, r *rawValue) []byte {
	b := d.data[r.start:r.end]
	dst = append(dst, b[:len(b)-1]...)
	if len(b) > 2 {
		dst = append(dst, ',')
	}
	dst = append(dst, d.tagMember...)
	return append(dst, '}')
}

// decodeRaw decodes the value a rawValue stands for.
func (d *jsonDecoder) decodeRaw(r *rawValue) (any, error) {
	d.pos = int(r.start)
	return d.value(1)
}

// skip reads the value at d.pos without building it, accepting exactly
// what value accepts. canon reports whether the encoder, writing the value
// value would build as an element of type t (ext: an item of an extension
// list), would write these very bytes.
func (d *jsonDecoder) skip(depth int, t *model.Type, ext bool) (canon bool, err error) {
	if depth > maxJSONDepth {
		return false, d.errorf("nested more than %d levels", maxJSONDepth)
	}
	if d.pos >= len(d.data) {
		return false, d.errorf("unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.skipObject(depth, t, ext)
	case c == '[':
		return d.skipArray(depth, t, ext)
	case c == '"':
		if i := plainEnd(d.data, d.pos+1); i >= 0 {
			// Plain text without the call to skipString (most strings).
			empty := i == d.pos+1
			d.pos = i + 1
			return !(empty && d.prune), nil
		}
		plain, empty, err := d.skipString()
		return plain && !(empty && d.prune), err
	case c == 't':
		_, err := d.literal("true", nil)
		return true, err
	case c == 'f':
		_, err := d.literal("false", nil)
		return true, err
	case c == 'n':
		_, err := d.literal("null", nil)
		return !d.prune, err
	case c == '-' || (c >= '0' && c <= '9'):
		return true, d.skipNumber()
	default:
		return false, d.errorf("unexpected character %q", c)
	}
}

// space skips white space and reports whether there was any.
func (d *jsonDecoder) space() bool {
	if d.pos < len(d.data) && d.data[d.pos] > ' ' {
		return false
	}
	p := d.pos
	d.skipSpace()
	return d.pos != p
}

func (d *jsonDecoder) skipArray(depth int, t *model.Type, ext bool) (bool, error) {
	d.pos++ // [
	canon := !d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return canon && !d.prune, nil
	}
	for {
		if d.space() {
			canon = false
		}
		c, err := d.skip(depth+1, t, ext)
		if err != nil {
			return false, err
		}
		canon = canon && c
		if d.space() {
			canon = false
		}
		if d.pos >= len(d.data) {
			return false, d.errorf("unexpected end of input in an array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return canon, nil
		default:
			return false, d.errorf("expected ',' or ']' in an array")
		}
	}
}

func (d *jsonDecoder) skipObject(depth int, t *model.Type, ext bool) (bool, error) {
	d.pos++ // {
	canon := !d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.lastRank = noMembers
		return canon && !d.prune, nil
	}
	// The type the encoder uses: a resource names its own.
	findType := t == nil || t.Kind() == model.KindResource
	isExtension := t != nil && t.Name() == "Extension"
	var (
		prevRank int32
		prevName string
		n        int
		content  int
		cursor   int // the child index of the last member
	)
	for {
		if d.space() {
			canon = false
		}
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return false, d.errorf("expected a member name")
		}
		kstart := d.pos + 1
		plainKey := true
		var err error
		if i := plainEnd(d.data, kstart); i >= 0 {
			d.pos = i + 1
		} else if plainKey, _, err = d.skipString(); err != nil {
			return false, err
		}
		k := d.src[kstart : d.pos-1]
		if d.space() {
			canon = false
		}
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return false, d.errorf("expected ':' after a member name")
		}
		d.pos++
		if d.space() {
			canon = false
		}
		if !plainKey {
			canon = false
		}
		var ct *model.Type
		rank := int32(unknownChild)
		if canon {
			if n == 0 && k == "resourceType" && findType {
				// Only as the first member can it be in encoder order.
				if rt := d.peekString(); rt != "" {
					if x := d.m.Type(rt); x != nil && x.Kind() == model.KindResource {
						t, isExtension = x, false
					}
				}
			}
			name, under := k, int32(0)
			if len(k) > 1 && k[0] == '_' {
				name, under = k[1:], 1
			}
			if k == "resourceType" || (k == "url" && isExtension) {
				rank = -2
			} else if t != nil {
				// Members in definition order are found by a walk on from
				// the last one, without hashing.
				c, choice, found := lookupFrom(t, name, cursor)
				if !found {
					c, choice, found = t.Lookup(name)
				}
				if found {
					rank = int32(2*c) + under
					cursor = c
					if under == 0 {
						ct = t.ChildType(c, max(choice, 0))
					}
				}
			}
			if n > 0 && (rank < prevRank || rank == prevRank && compareMemberNames(prevName, k) >= 0) {
				canon = false
			}
			prevRank, prevName = rank, k
		}
		// A plain string value (most are) is read here as skip would read
		// it, without the calls.
		c, end := false, -1
		if depth+1 <= maxJSONDepth && d.pos < len(d.data) && d.data[d.pos] == '"' {
			end = plainEnd(d.data, d.pos+1)
		}
		if end >= 0 {
			c = !(end == d.pos+1 && d.prune)
			d.pos = end + 1
		} else if c, err = d.skip(depth+1, ct, k == "extension" || k == "modifierExtension"); err != nil {
			return false, err
		}
		canon = canon && c
		n++
		if k != "url" && k != "id" {
			content++
		}
		if d.space() {
			canon = false
		}
		if d.pos >= len(d.data) {
			return false, d.errorf("unexpected end of input in an object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			if ext && d.prune && content == 0 {
				canon = false // an extension without a value is pruned
			}
			d.lastRank = prevRank
			return canon, nil
		default:
			return false, d.errorf("expected ',' or '}' in an object")
		}
	}
}

// peekString returns the plain string at d.pos without moving ("" when
// there is none, or it has escapes).
func (d *jsonDecoder) peekString() string {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return ""
	}
	q := bytes.IndexByte(d.data[d.pos+1:], '"')
	if q < 0 {
		return ""
	}
	s := d.src[d.pos+1 : d.pos+1+q]
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			return ""
		}
	}
	return s
}

// skipString reads a string as str does. plain says the encoder writes its
// value back as the same bytes: no escapes, valid UTF-8, no U+2028/U+2029.
func (d *jsonDecoder) skipString() (plain, empty bool, err error) {
	d.pos++ // opening quote
	start := d.pos
	// One pass for the common case, short plain text.
	i := scanPlain(d.data, start)
	if i < len(d.data) && d.data[i] == '"' {
		d.pos = i + 1
		return true, i == start, nil
	}
	q := bytes.IndexByte(d.data[start:], '"')
	if q < 0 {
		return false, false, d.errorf("unterminated string")
	}
	seg := d.data[start : start+q]
	if bytes.IndexByte(seg, '\\') >= 0 {
		_, err := d.strSlow(start) // rare: the escapes are checked by the one reader of them
		return false, false, err
	}
	for i, c := range seg {
		if c < 0x20 {
			d.pos = start + i
			return false, false, d.errorf("control character in a string")
		}
	}
	d.pos = start + q + 1
	// Not plain ASCII: plain when the encoder keeps the UTF-8 as it is.
	return utf8.Valid(seg) && !bytes.Contains(seg, []byte("\u2028")) && !bytes.Contains(seg, []byte("\u2029")), false, nil
}

// skipNumber reads a JSON number (number keeps its text).
func (d *jsonDecoder) skipNumber() error {
	if d.data[d.pos] == '-' {
		d.pos++
	}
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.pos < len(d.data) && d.data[d.pos] == '0' {
		d.pos++
	} else if digits() == 0 {
		return d.errorf("invalid number")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			return d.errorf("invalid number")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return d.errorf("invalid number")
		}
	}
	return nil
}

// lookupFrom looks name up as t.Lookup does, among t's children from index
// from on (found false: not there, which does not mean t has no such
// child). Element names are unique in a type, so a match is Lookup's.
func lookupFrom(t *model.Type, name string, from int) (child, choice int, found bool) {
	kids := t.Children()
	for i := from; i < len(kids); i++ {
		cn := kids[i].Name
		// (The first byte tells most names apart without a call to
		// compare the rest.)
		if len(name) < len(cn) || len(cn) > 0 && cn[0] != name[0] || name[:len(cn)] != cn {
			continue
		}
		if len(name) == len(cn) {
			return i, -1, true
		}
		if !kids[i].Choice {
			continue
		}
		// name[x]: the type's code with its first letter in upper case.
		rest := name[len(cn):]
		for j, code := range kids[i].Types {
			if len(code) == len(rest) && code[1:] == rest[1:] && upperASCII(code[0]) == rest[0] {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

func upperASCII(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
