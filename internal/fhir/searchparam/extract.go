package searchparam

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// node is one element of a compiled path trie for one resource type.
type node struct {
	name     string
	poly     bool // name is the stem of a polymorphic element name[x]
	children []*node
	leaves   []leaf
	// byLen[min(len(key), len(byLen)-1)] lists, in children order, the
	// children that can match a member key of that length: the exact names
	// of that length and the polymorphic stems shorter than it (the last
	// list, for keys longer than every name, holds only stems). It saves
	// comparing each key with every child; filled by index.
	byLen [][]*node
	// refs says every leaf is a Reference parameter without a filter, so
	// the reference is read once for all of them (participant.actor is the
	// patient, practitioner, location and actor parameters).
	refs bool
	// onePass says every leaf is an unfiltered Token, Date or Reference
	// parameter, whose object values objectLeaves reads in one pass.
	onePass bool
}

// leaf is a parameter whose path ends at a node.
type leaf struct {
	def       *Def
	filterKey string // optional child primitive the element must have...
	filterVal string // ...with this value
}

func (c *node) matches(key []byte) bool {
	if c.poly {
		return len(key) > len(c.name) && string(key[:len(c.name)]) == c.name && key[len(c.name)] >= 'A' && key[len(c.name)] <= 'Z'
	}
	return string(key) == c.name
}

// index fills byLen, refs and onePass of n and its descendants.
func (n *node) index() {
	longest := 0
	for _, c := range n.children {
		longest = max(longest, len(c.name))
		c.index()
	}
	if len(n.children) > 0 {
		n.byLen = make([][]*node, longest+2)
		for l := range n.byLen {
			for _, c := range n.children {
				if c.poly && len(c.name) < l || !c.poly && len(c.name) == l {
					n.byLen[l] = append(n.byLen[l], c)
				}
			}
		}
	}
	n.refs = len(n.leaves) > 0
	n.onePass = len(n.leaves) > 0
	for _, lf := range n.leaves {
		if lf.def.Type != Reference || lf.filterKey != "" {
			n.refs = false
		}
		if lf.def.Type != Token && lf.def.Type != Date && lf.def.Type != Reference || lf.filterKey != "" {
			n.onePass = false
		}
	}
}

// visitKey visits the member value at b[v] with every child of n matching key
// (an exact child and a polymorphic one may both match: valueString and
// value[x]), or skips it.
func (x *extractor) visitKey(n *node, key []byte, v int) (int, error) {
	end := -1
	for _, c := range n.byLen[min(len(key), len(n.byLen)-1)] {
		if !c.matches(key) {
			continue
		}
		e, err := x.visit(c, v)
		if err != nil {
			return 0, err
		}
		end = e
	}
	if end < 0 {
		return skipValue(x.b, v)
	}
	return end, nil
}

func (n *node) add(segs []string, lf leaf) {
	if len(segs) == 0 {
		n.leaves = append(n.leaves, lf)
		return
	}
	seg := segs[0]
	poly := false
	if strings.HasSuffix(seg, "[x]") {
		seg, poly = strings.TrimSuffix(seg, "[x]"), true
	} else if i := strings.IndexByte(seg, '['); i >= 0 && len(segs) == 1 {
		kv := strings.TrimSuffix(seg[i+1:], "]")
		seg = seg[:i]
		if k, v, ok := strings.Cut(kv, "="); ok {
			lf.filterKey, lf.filterVal = k, v
		}
	}
	for _, c := range n.children {
		if c.name == seg && c.poly == poly {
			c.add(segs[1:], lf)
			return
		}
	}
	c := &node{name: seg, poly: poly}
	n.children = append(n.children, c)
	c.add(segs[1:], lf)
}

// tries maps resource type to its compiled path trie. Built once, read-only.
type tries map[string]*node

func compile(defs map[string][]Def) tries {
	t := tries{}
	for rt, ds := range defs {
		root := &node{}
		for i := range ds {
			for _, p := range ds[i].Paths {
				root.add(strings.Split(p, "."), leaf{def: &ds[i]})
			}
		}
		t[rt] = root
	}
	root := &node{}
	cd := common()
	for i := range cd {
		root.add(strings.Split(cd[i].Paths[0], "."), leaf{def: &cd[i]})
	}
	t[""] = root
	for _, root := range t {
		root.index()
	}
	return t
}

var compiled = compile(cat.defs)

// Extract returns the search-index entries of a resource body for the
// parameters Defs(resourceType) defines. Duplicate entries are removed. It
// fails when the body is not a JSON object, or names another resourceType.
// The entries' strings never alias body.
func Extract(resourceType string, body []byte) ([]Entry, error) {
	root, ok := compiled[resourceType]
	if !ok {
		root = compiled[""]
	}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, fmt.Errorf("searchparam: %s body is not a JSON object", resourceType)
	}
	// Entries are collected in a reused buffer and copied out at the end,
	// so that the result is allocated at its final size: a guess made up
	// front was most of the bytes Extract allocated (an Entry is 104
	// bytes). Entry strings are in the arena, 15-35% of the body's size
	// on the bulk mix.
	scratch := entryBufs.Get().(*[]Entry)
	x := extractor{b: body, out: (*scratch)[:0], arena: make([]byte, 0, len(body)/3+64)}
	typeOK, err := x.root(root, i, resourceType)
	var es []Entry
	switch {
	case err != nil:
		err = fmt.Errorf("searchparam: %s body: %w", resourceType, err)
	case !typeOK:
		err = fmt.Errorf("searchparam: body is not a %s (resourceType missing or different)", resourceType)
	default:
		d := dedupe(x.out)
		es = make([]Entry, len(d))
		copy(es, d)
	}
	// The buffer goes back with the entries of this body still in it: they
	// are overwritten by the next use, and the pool is emptied by the
	// garbage collector, so at most a few small arenas stay reachable a
	// little longer. Clearing them would cost what the reuse saves.
	if cap(x.out) <= maxPooledEntries {
		*scratch = x.out[:0]
		entryBufs.Put(scratch)
	}
	return es, err
}

// maxPooledEntries bounds the buffers kept for reuse: a body with
// thousands of entries should not leave its buffer behind.
const maxPooledEntries = 1024

// entryBufs holds the buffers Extract collects entries in (*[]Entry).
var entryBufs = sync.Pool{New: func() any { b := make([]Entry, 0, 32); return &b }}

// root walks the members of the resource object at b[i] and reports
// whether the (last) resourceType member is the string resourceType.
func (x *extractor) root(root *node, i int, resourceType string) (typeOK bool, err error) {
	b := x.b
	m, more := openObject(b, i)
	for more {
		k, v, err := member(b, m)
		if err != nil {
			return false, err
		}
		var end int
		if string(k) == "resourceType" && b[v] == '"' {
			raw, _, e, err := rawStringAt(b, v)
			if err != nil {
				return false, err
			}
			typeOK, end = string(raw) == resourceType, e
		} else if end, err = x.visitKey(root, k, v); err != nil {
			return false, err
		}
		if m, more, err = nextMember(b, end); err != nil {
			return false, err
		}
	}
	return typeOK, nil
}

type extractor struct {
	b     []byte
	out   []Entry
	arena []byte // backing store of entry strings; bytes once handed out are never written again
	// onePass is set while objectLeaves reads a value: skipped scalars are
	// then checked (see skip).
	onePass bool
}

// alloc returns n fresh bytes from the arena. When the arena is full a new
// one is started: strings already made keep the old one alive.
func (x *extractor) alloc(n int) []byte {
	if cap(x.arena)-len(x.arena) < n {
		x.arena = make([]byte, 0, max(256, n))
	}
	start := len(x.arena)
	x.arena = x.arena[:start+n]
	return x.arena[start : start+n : start+n]
}

// bstr makes a string over b without copying. b must never change afterwards.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// str copies the raw contents of a JSON string into a new string.
func (x *extractor) str(raw []byte, esc bool) (string, error) {
	if esc {
		return unescape(raw)
	}
	if len(raw) == 0 {
		return "", nil
	}
	buf := x.alloc(len(raw))
	copy(buf, raw)
	return bstr(buf), nil
}

// visit indexes the value at b[i] (i inside b) for node n: each element of
// an array, else n's parameters and then, in an object, n's children. It
// returns the index after the value.
func (x *extractor) visit(n *node, i int) (int, error) {
	b := x.b
	if b[i] == '[' {
		e, more, err := openArray(b, i)
		for more {
			end, err := x.visit(n, e)
			if err != nil {
				return 0, err
			}
			if e, more, err = nextElem(b, end); err != nil {
				return 0, err
			}
		}
		return e, err
	}
	end := -1
	if len(n.leaves) > 0 {
		e, err := x.leaves(n, i)
		if err != nil {
			return 0, err
		}
		end = e
	}
	if len(n.children) > 0 && b[i] == '{' {
		m, more := openObject(b, i)
		for more {
			k, v, err := member(b, m)
			if err != nil {
				return 0, err
			}
			e, err := x.visitKey(n, k, v)
			if err != nil {
				return 0, err
			}
			if m, more, err = nextMember(b, e); err != nil {
				return 0, err
			}
		}
		return m, nil
	}
	if end < 0 {
		return skipValue(b, i)
	}
	return end, nil
}

// leaves indexes the value at b[i] (never an array) for every parameter of
// n and returns the index after it.
//
// The reference behaviour is two passes: skipValue finds the end of the
// value (checking only that brackets balance), then each parameter reads
// the value between. A string is read once instead, and so is an object
// whose parameters objectLeaves can read in one pass; when that pass finds
// anything unusual the two passes run after all.
func (x *extractor) leaves(n *node, i int) (int, error) {
	b := x.b
	switch b[i] {
	case '"':
		q, esc := stringEnd(b, i+1)
		if q < 0 {
			return 0, errSyntax
		}
		v := b[i : q+1]
		for k := range n.leaves {
			if err := x.leaf(&n.leaves[k], v, esc); err != nil {
				return 0, err
			}
		}
		return q + 1, nil
	case '{':
		if n.onePass {
			mark := len(x.out)
			x.onePass = true
			end, err := x.objectLeaves(n, b[i:])
			x.onePass = false
			if err == nil {
				return i + end, nil
			}
			x.out = x.out[:mark] // the two passes make these entries again
		}
	}
	end, err := skipValue(b, i)
	if err != nil {
		return 0, err
	}
	v := b[i:end]
	if n.refs {
		err = x.referenceLeaves(n.leaves, v)
	} else {
		for k := range n.leaves {
			if err = x.leaf(&n.leaves[k], v, false); err != nil {
				break
			}
		}
	}
	if err != nil {
		return 0, err
	}
	return end, nil
}

// errTwoPass stops objectLeaves where its result could differ from the two
// passes'; it never leaves the package.
var errTwoPass = errors.New("searchparam: value needs two passes")

// objectLeaves indexes the object at the start of v (which may go on past
// it) for every parameter of n (all Token, Date or Reference, unfiltered)
// and returns the index after the object.
//
// The result is the two passes' whenever it returns no error. The walk
// reads the members the second pass reads, in the same order and with the
// same steps (a reference's reader stops at the first reference or type
// member, but finds the same one), and when it succeeds it ends where
// skipValue would have: every byte it passes over outside strings is a
// bracket it counts as skipValue does, a separator, or part of a number,
// true, false or null that it skipped, and skip makes sure no such scalar
// holds a quote or an opening bracket (skipValue would start a string or a
// level there). Any error, a real one or errTwoPass, sends the caller back
// to the two passes, which then report it or not as they always did.
func (x *extractor) objectLeaves(n *node, v []byte) (int, error) {
	if n.refs {
		r, ok, end, err := x.referenceObject(v)
		if err != nil {
			return 0, err
		}
		if ok {
			for k := range n.leaves {
				x.emitReference(n.leaves[k].def, &r)
			}
		}
		return end, nil
	}
	end := -1
	for k := range n.leaves {
		d := n.leaves[k].def
		var e int
		var err error
		switch d.Type {
		case Token:
			e, err = x.tokenObject(d, v)
		case Date:
			e, err = x.dateObject(d, v)
		default: // Reference
			var r reference
			var ok bool
			r, ok, e, err = x.referenceObject(v)
			if ok && err == nil {
				x.emitReference(d, &r)
			}
		}
		if err != nil {
			return 0, err
		}
		if end >= 0 && e != end {
			return 0, errTwoPass // cannot happen (see above); kept as a guard
		}
		end = e
	}
	return end, nil
}

// skip is skipValue for the walks inside a parameter's value. In
// objectLeaves' one pass it fails with errTwoPass on a scalar holding a
// quote or an opening bracket, where skipValue's balance count would read
// the bytes differently.
func (x *extractor) skip(v []byte, i int) (int, error) {
	end, err := skipValue(v, i)
	if err != nil || !x.onePass {
		return end, err
	}
	switch v[i] {
	case '"', '{', '[':
		return end, nil
	}
	for _, c := range v[i:end] {
		if c == '"' || c == '{' || c == '[' {
			return 0, errTwoPass
		}
	}
	return end, nil
}

// leaf indexes one element value v (never an array) for one parameter; esc
// says whether a string value holds escapes.
func (x *extractor) leaf(lf *leaf, v []byte, esc bool) error {
	if lf.filterKey != "" {
		raw, _, ok := fieldRaw(v, lf.filterKey)
		if !ok || string(raw) != lf.filterVal {
			return nil
		}
	}
	d := lf.def
	switch d.Type {
	case String:
		return x.stringLeaf(d, v, esc)
	case Token:
		return x.tokenLeaf(d, v, esc)
	case Reference:
		return x.referenceLeaf(d, v)
	case Date:
		return x.dateLeaf(d, v, esc)
	}
	return nil
}

// emitString indexes the raw contents of a JSON string for a string parameter.
func (x *extractor) emitString(d *Def, raw []byte, esc bool) error {
	if len(raw) == 0 {
		return nil
	}
	exact, err := x.str(raw, esc)
	if err != nil {
		return err
	}
	value := exact
	ascii, upper := true, false
	for _, c := range raw {
		if c >= 0x80 {
			ascii = false
			break
		}
		if c >= 'A' && c <= 'Z' {
			upper = true
		}
	}
	switch {
	case !ascii || esc:
		value = Fold(exact)
	case upper:
		buf := x.alloc(len(exact))
		for k := 0; k < len(exact); k++ {
			c := exact[k]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[k] = c
		}
		value = bstr(buf)
	}
	x.out = append(x.out, Entry{Name: d.Name, Type: String, Value: value, Exact: exact})
	return nil
}

// emitToken indexes "system|code" from the raw contents of two JSON strings.
func (x *extractor) emitToken(d *Def, sys []byte, sysEsc bool, code []byte, codeEsc bool) error {
	if len(code) == 0 && len(sys) == 0 {
		return nil
	}
	if sysEsc || codeEsc {
		s, err := unescape(sys)
		if err != nil {
			return err
		}
		c, err := unescape(code)
		if err != nil {
			return err
		}
		x.out = append(x.out, Entry{Name: d.Name, Type: Token, Value: s + "|" + c})
		return nil
	}
	buf := x.alloc(len(sys) + 1 + len(code))
	copy(buf, sys)
	buf[len(sys)] = '|'
	copy(buf[len(sys)+1:], code)
	x.out = append(x.out, Entry{Name: d.Name, Type: Token, Value: bstr(buf)})
	return nil
}

// stringParts are the members of HumanName and Address a string search covers.
func isStringPart(k []byte) bool {
	switch string(k) {
	case "family", "given", "prefix", "suffix", "text", "line", "city", "district", "state", "postalCode", "country":
		return true
	}
	return false
}

func (x *extractor) stringLeaf(d *Def, v []byte, esc bool) error {
	switch v[0] {
	case '"':
		return x.emitString(d, v[1:len(v)-1], esc)
	case '{':
		_, err := objectFields(v, 0, func(k []byte, i int) (int, error) {
			if !isStringPart(k) {
				return skipValue(v, i)
			}
			switch v[i] {
			case '"':
				raw, esc, end, err := rawStringAt(v, i)
				if err != nil {
					return 0, err
				}
				return end, x.emitString(d, raw, esc)
			case '[':
				return arrayElems(v, i, func(j int) (int, error) {
					if v[j] != '"' {
						return skipValue(v, j)
					}
					raw, esc, end, err := rawStringAt(v, j)
					if err != nil {
						return 0, err
					}
					return end, x.emitString(d, raw, esc)
				})
			}
			return skipValue(v, i)
		})
		return err
	}
	return nil
}

func (x *extractor) tokenLeaf(d *Def, v []byte, esc bool) error {
	switch v[0] {
	case '"':
		return x.emitToken(d, nil, false, v[1:len(v)-1], esc)
	case 't', 'f':
		if string(v) == "true" || string(v) == "false" {
			return x.emitToken(d, nil, false, v, false)
		}
	case '{':
		_, err := x.tokenObject(d, v)
		return err
	}
	return nil
}

// tokenObject indexes the object at the start of v for a token parameter:
// a CodeableConcept (its codings), a Coding, an Identifier or a
// ContactPoint. A later system, code or value member replaces an earlier
// one. It returns the index after the object.
func (x *extractor) tokenObject(d *Def, v []byte) (int, error) {
	var system, code, value []byte
	var sysEsc, codeEsc, valueEsc bool
	sawCoding := false
	m, more := openObject(v, 0)
	for more {
		k, i, err := member(v, m)
		if err != nil {
			return 0, err
		}
		var end int
		switch {
		case string(k) == "coding" && v[i] == '[':
			sawCoding = true
			end, err = x.codings(d, v, i)
		case v[i] == '"' && (string(k) == "system" || string(k) == "code" || string(k) == "value"):
			raw, esc, e, err := rawStringAt(v, i)
			if err != nil {
				return 0, err
			}
			switch k[0] {
			case 's':
				system, sysEsc = raw, esc
			case 'c':
				code, codeEsc = raw, esc
			default:
				value, valueEsc = raw, esc
			}
			end = e
		default:
			end, err = x.skip(v, i)
		}
		if err != nil {
			return 0, err
		}
		if m, more, err = nextMember(v, end); err != nil {
			return 0, err
		}
	}
	var err error
	switch {
	case sawCoding:
	case d.kind == kindContactPoint:
		err = x.emitToken(d, nil, false, value, valueEsc)
	case len(code) > 0: // Coding
		err = x.emitToken(d, system, sysEsc, code, codeEsc)
	case len(value) > 0: // Identifier
		err = x.emitToken(d, system, sysEsc, value, valueEsc)
	}
	return m, err
}

// codings indexes each Coding of the array at v[i] == '[' ("system|code" of
// its first system and code members) and returns the index after it.
func (x *extractor) codings(d *Def, v []byte, i int) (int, error) {
	j, more, err := openArray(v, i)
	for more {
		var end int
		if v[j] != '{' {
			if end, err = x.skip(v, j); err != nil {
				return 0, err
			}
		} else {
			var s, cd []byte
			var se, ce bool
			m, more := openObject(v, j)
			for more {
				k, f, err := member(v, m)
				if err != nil {
					return 0, err
				}
				var e int
				if v[f] == '"' && (string(k) == "system" && s == nil || string(k) == "code" && cd == nil) {
					raw, esc, after, err := rawStringAt(v, f)
					if err != nil {
						return 0, err
					}
					if k[0] == 's' {
						s, se = raw, esc
					} else {
						cd, ce = raw, esc
					}
					e = after
				} else if e, err = x.skip(v, f); err != nil {
					return 0, err
				}
				if m, more, err = nextMember(v, e); err != nil {
					return 0, err
				}
			}
			if err := x.emitToken(d, s, se, cd, ce); err != nil {
				return 0, err
			}
			end = m
		}
		if j, more, err = nextElem(v, end); err != nil {
			return 0, err
		}
	}
	return j, err
}

// referenceLeaves indexes the reference object v for every leaf of a node
// whose leaves are all unfiltered Reference parameters: it is read once,
// then each parameter keeps it or not by its target types. The entries
// and errors are those of referenceLeaf for each leaf in turn.
func (x *extractor) referenceLeaves(leaves []leaf, v []byte) error {
	r, ok, err := x.readReference(v)
	if ok && err == nil {
		for k := range leaves {
			x.emitReference(leaves[k].def, &r)
		}
	}
	return err
}

// reference is a reference read from a Reference element.
type reference struct {
	value, typ string
}

// readReference reads the reference object v (the whole value): ok is
// false when it has none that can be indexed (no reference member, a
// contained or malformed one).
func (x *extractor) readReference(v []byte) (r reference, ok bool, err error) {
	if v[0] != '{' {
		return r, false, nil
	}
	raw, esc, ok := fieldRaw(v, "reference")
	if !ok || len(raw) == 0 {
		return r, false, nil
	}
	return x.parseReference(raw, esc, func() string { return fieldString(v, "type") })
}

// parseReference reads the raw contents of a reference member; typ
// supplies the type member, asked for only when the reference does not
// name its type.
func (x *extractor) parseReference(raw []byte, esc bool, typeMember func() string) (r reference, ok bool, err error) {
	ref, err := x.str(raw, esc)
	if err != nil {
		return r, false, err
	}
	typ, id, ok := SplitReference(ref)
	if !ok {
		return r, false, nil
	}
	if typ == "" {
		typ = typeMember()
	}
	value := ref
	if len(ref) != len(typ)+1+len(id) || !strings.HasPrefix(ref, typ) || ref[len(typ)] != '/' {
		value = typ + "/" + id
	}
	return reference{value: value, typ: typ}, true, nil
}

// referenceObject is readReference for the object at the start of v (which
// may go on past it), read in one pass (see objectLeaves); it also returns
// the index after the object.
func (x *extractor) referenceObject(v []byte) (r reference, ok bool, end int, err error) {
	var ref, typ []byte
	var refEsc, typEsc, sawRef, sawTyp bool
	m, more := openObject(v, 0)
	for more {
		k, i, err := member(v, m)
		if err != nil {
			return r, false, 0, err
		}
		var e int
		if v[i] == '"' {
			raw, esc, after, err := rawStringAt(v, i)
			if err != nil {
				return r, false, 0, err
			}
			switch {
			case !sawRef && string(k) == "reference":
				ref, refEsc, sawRef = raw, esc, true
			case !sawTyp && string(k) == "type":
				typ, typEsc, sawTyp = raw, esc, true
			}
			e = after
		} else if e, err = x.skip(v, i); err != nil {
			return r, false, 0, err
		}
		if m, more, err = nextMember(v, e); err != nil {
			return r, false, 0, err
		}
	}
	if !sawRef || len(ref) == 0 {
		return r, false, m, nil
	}
	r, ok, err = x.parseReference(ref, refEsc, func() string {
		// fieldString: the first string type member, "" when it is absent
		// or cannot be unescaped.
		if !sawTyp {
			return ""
		}
		if typEsc {
			s, err := unescape(typ)
			if err != nil {
				return ""
			}
			return s
		}
		return string(typ)
	})
	return r, ok, m, err
}

// emitReference indexes r for d unless d's target types exclude it.
func (x *extractor) emitReference(d *Def, r *reference) {
	if len(d.Targets) > 0 && r.typ != "" && !contains(d.Targets, r.typ) {
		return
	}
	x.out = append(x.out, Entry{Name: d.Name, Type: Reference, Value: r.value})
}

func (x *extractor) referenceLeaf(d *Def, v []byte) error {
	r, ok, err := x.readReference(v)
	if ok && err == nil {
		x.emitReference(d, &r)
	}
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SplitReference splits a FHIR reference into resource type and id. It
// accepts "Type/id", absolute URLs ending in Type/id, version-specific
// references (".../_history/n") and "urn:uuid:" references (type ""), and
// rejects contained ("#...") references.
func SplitReference(ref string) (typ, id string, ok bool) {
	if ref == "" || ref[0] == '#' {
		return "", "", false
	}
	if rest, found := strings.CutPrefix(ref, "urn:uuid:"); found {
		return "", rest, rest != ""
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	i := strings.LastIndexByte(ref, '/')
	if i < 0 {
		return "", ref, true
	}
	id = ref[i+1:]
	rest := ref[:i]
	if j := strings.LastIndexByte(rest, '/'); j >= 0 {
		rest = rest[j+1:]
	}
	if rest == "" || rest[0] < 'A' || rest[0] > 'Z' || id == "" {
		return "", "", false
	}
	return rest, id, true
}

func (x *extractor) emitDate(d *Def, lo, hi time.Time) {
	x.out = append(x.out, Entry{Name: d.Name, Type: Date, Low: lo, High: hi})
}

// dateRangeRaw parses the raw contents of a JSON string as a FHIR date.
func dateRangeRaw(raw []byte, esc bool) (lo, hi time.Time, ok bool) {
	if esc {
		return time.Time{}, time.Time{}, false // dates never need escapes
	}
	return DateRange(bstr(raw)) // DateRange does not retain its argument
}

func (x *extractor) dateLeaf(d *Def, v []byte, esc bool) error {
	switch v[0] {
	case '"':
		if lo, hi, ok := dateRangeRaw(v[1:len(v)-1], esc); ok {
			x.emitDate(d, lo, hi)
		}
	case '{':
		_, err := x.dateObject(d, v)
		return err
	}
	return nil
}

// dateObject indexes the object at the start of v for a date parameter: a
// Period (start and end; a later member replaces an earlier one) or a
// Timing (each event). It returns the index after the object.
func (x *extractor) dateObject(d *Def, v []byte) (int, error) {
	var start, end []byte
	var startEsc, endEsc bool
	m, more := openObject(v, 0)
	for more {
		k, i, err := member(v, m)
		if err != nil {
			return 0, err
		}
		var after int
		switch {
		case v[i] == '"' && (string(k) == "start" || string(k) == "end"):
			raw, esc, e, err := rawStringAt(v, i)
			if err != nil {
				return 0, err
			}
			if k[0] == 's' {
				start, startEsc = raw, esc
			} else {
				end, endEsc = raw, esc
			}
			after = e
		case v[i] == '[' && string(k) == "event": // Timing
			after, err = x.events(d, v, i)
		default:
			after, err = x.skip(v, i)
		}
		if err != nil {
			return 0, err
		}
		if m, more, err = nextMember(v, after); err != nil {
			return 0, err
		}
	}
	if len(start) == 0 && len(end) == 0 {
		return m, nil
	}
	lo, hi := time.Time{}, MaxTime()
	okS, okE := len(start) == 0, len(end) == 0
	if len(start) > 0 {
		lo, _, okS = dateRangeRaw(start, startEsc)
	}
	if len(end) > 0 {
		_, hi, okE = dateRangeRaw(end, endEsc)
	}
	if okS && okE {
		x.emitDate(d, lo, hi)
	}
	return m, nil
}

// events indexes each date string of the Timing.event array at v[i] == '['
// and returns the index after it.
func (x *extractor) events(d *Def, v []byte, i int) (int, error) {
	j, more, err := openArray(v, i)
	for more {
		var end int
		if v[j] == '"' {
			raw, esc, e, err := rawStringAt(v, j)
			if err != nil {
				return 0, err
			}
			if lo, hi, ok := dateRangeRaw(raw, esc); ok {
				x.emitDate(d, lo, hi)
			}
			end = e
		} else if end, err = x.skip(v, j); err != nil {
			return 0, err
		}
		if j, more, err = nextElem(v, end); err != nil {
			return 0, err
		}
	}
	return j, err
}

// dedupe removes repeated entries in place, keeping first occurrences.
func dedupe(es []Entry) []Entry {
	if len(es) > 128 {
		return dedupeMap(es)
	}
	out := es[:0]
	for i := range es {
		e := &es[i]
		dup := false
		for k := range out {
			o := &out[k]
			// Lengths first: most pairs are different parameters or values.
			if len(o.Name) != len(e.Name) || len(o.Value) != len(e.Value) || len(o.Exact) != len(e.Exact) {
				continue
			}
			if o.Value == e.Value && o.Name == e.Name && o.Exact == e.Exact && o.Low.Equal(e.Low) && o.High.Equal(e.High) {
				dup = true
				break
			}
		}
		if !dup {
			// len(out) <= i: never overwrites an entry still to be read.
			// Until the first duplicate the entry is already in place, and
			// copying it onto itself would only cost write barriers.
			if len(out) < i {
				es[len(out)] = *e
			}
			out = out[:len(out)+1]
		}
	}
	return out
}

// dedupeMap is dedupe for large entry lists, where pairwise comparison would
// be quadratic.
func dedupeMap(es []Entry) []Entry {
	type key struct {
		name, value, exact string
		lo, hi             int64
		loN, hiN           int
	}
	seen := make(map[key]struct{}, len(es))
	out := es[:0]
	for _, e := range es {
		k := key{e.Name, e.Value, e.Exact, e.Low.Unix(), e.High.Unix(), e.Low.Nanosecond(), e.High.Nanosecond()}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, e)
	}
	return out
}
