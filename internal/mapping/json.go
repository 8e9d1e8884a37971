package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/model"
)

// The engine decodes each resource once into plain Go values (map[string]any,
// []any, string, json.Number, bool, nil — the shape fhirpath.Eval takes),
// lets the rules change that tree in place and encodes it once. The decoder
// and encoder here do only that, several times faster than encoding/json's
// reflection-based interface{} path.

// decodeJSON parses one JSON value. Numbers stay json.Number so decimals
// keep their digits; invalid UTF-8 in strings becomes U+FFFD (as
// encoding/json does); a duplicate member keeps its last value.
func decodeJSON(data []byte) (any, error) {
	var d jsonDecoder
	return d.decode(data)
}

// decode parses data with d, whose scratch space is reused from call to
// call (one decoder serves one goroutine at a time).
func (d *jsonDecoder) decode(data []byte) (any, error) {
	// Strings without escapes are slices of one copy of the input, so
	// decoding allocates per object, array and boxed value, not per string.
	d.data, d.src, d.pos = data, string(data), 0
	defer func() { d.data, d.src = nil, "" }()
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

type jsonDecoder struct {
	data []byte
	src  string // data as a string
	pos  int
	buf  []byte // scratch for strings with escapes
	kvs  []jsonMember
	vals []any
	// With track set, the maps of a document are recorded in used so that
	// recycle can hand them to the next document through free.
	track   bool
	used    []map[string]any
	free    []map[string]any
	bigFree []map[string]any
	// For decodeResource: the members left as bytes, the model and
	// whether the resource is pruned (for skip).
	raws  []rawValue
	slabs [][]rawValue
	spans []topMember // the decoded top-level members (but meta)
	nobj  int         // objects decoded (newMap calls), for decodeResource
	m     *model.Model
	rt    *model.Type
	prune bool
	// top lists the resource's members in input order with their ranks
	// and types; topOrdered says that order is the encoder's (ranks
	// strictly increasing, no duplicates).
	top        []topKey
	topOrdered bool
	// te is the entry of the resource's type when decodeResource read it
	// with its plan (nil: decoded in full).
	te *typeEntry
	// meta is the resource's meta left as bytes by a metaRaw plan (nil:
	// none); metaEnd says the profile tag can be written at its end, and
	// lastRank is the rank of the last member of the object skipObject
	// read last (when in encoder form), for that. tagMember is the tag
	// member to write (see tagMeta).
	meta      *rawValue
	metaEnd   bool
	lastRank  int32
	tagMember []byte
}

// maxFreeMaps bounds the maps a decoder keeps for reuse; maxFreeBigMaps
// those of more than 8 members (up to maxBigMap).
const (
	maxFreeMaps    = 4096
	maxFreeBigMaps = 4
	maxBigMap      = 64
)

// newMap returns an empty map, reusing one of an earlier document when the
// decoder has one (see recycle).
func (d *jsonDecoder) newMap(n int) map[string]any {
	d.nobj++
	var m map[string]any
	if k := len(d.free); k > 0 && n <= 8 {
		m = d.free[k-1]
		d.free = d.free[:k-1]
	} else if k := len(d.bigFree); k > 0 && n > 8 {
		m = d.bigFree[k-1]
		d.bigFree = d.bigFree[:k-1]
	} else {
		m = make(map[string]any, n)
	}
	if d.track {
		d.used = append(d.used, m)
	}
	return m
}

// recycle makes the maps of the last decoded document available to the
// next one. Only call it when nothing refers to that document any more.
func (d *jsonDecoder) recycle() {
	for _, m := range d.used {
		if len(d.free) >= maxFreeMaps {
			break
		}
		// Only maps that stayed small (one group of 8 slots): a grown map
		// would make every later use of it slower to iterate and clear.
		if len(m) <= 8 {
			clear(m)
			d.free = append(d.free, m)
		} else if len(m) <= maxBigMap && len(d.bigFree) < maxFreeBigMaps {
			// A resource's own members: one such map per document.
			clear(m)
			d.bigFree = append(d.bigFree, m)
		}
	}
	clear(d.used)
	d.used = d.used[:0]
}

// forget drops the record of the last document's maps (they stay in use).
func (d *jsonDecoder) forget() {
	clear(d.used)
	d.used = d.used[:0]
}

type jsonMember struct {
	k string
	v any
}

const maxJSONDepth = 200

func (d *jsonDecoder) errorf(format string, a ...any) error {
	return fmt.Errorf("JSON at byte %d: %s", d.pos, fmt.Sprintf(format, a...))
}

func (d *jsonDecoder) skipSpace() {
	if d.pos < len(d.data) && d.data[d.pos] > ' ' {
		return // compact JSON: no space between tokens
	}
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, d.errorf("nested more than %d levels", maxJSONDepth)
	}
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object(depth, nil)
	case c == '[':
		return d.array(depth, nil)
	case c == '"':
		// Plain text without the call to str (most strings).
		var s string
		if i := plainEnd(d.data, d.pos+1); i >= 0 {
			s, d.pos = d.src[d.pos+1:i], i+1
		} else {
			var err error
			if s, err = d.str(); err != nil {
				return nil, err
			}
		}
		return s, nil
	case c == 't':
		return d.literal("true", true)
	case c == 'f':
		return d.literal("false", false)
	case c == 'n':
		return d.literal("null", nil)
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	default:
		return nil, d.errorf("unexpected character %q", c)
	}
}

func (d *jsonDecoder) literal(word string, v any) (any, error) {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return nil, d.errorf("invalid literal")
	}
	d.pos += len(word)
	return v, nil
}

// object decodes an object; with a plan node n (decodeResource), the
// members n does not name are left as rawValues (see valueIn).
func (d *jsonDecoder) object(depth int, n *planNode) (any, error) {
	d.pos++ // {
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return map[string]any{}, nil
	}
	// Members collect on a stack shared by all levels, so the map is made
	// once with its final size.
	base := len(d.kvs)
	m, err := d.members(depth, base, n)
	clear(d.kvs[base:])
	d.kvs = d.kvs[:base]
	return m, err
}

func (d *jsonDecoder) members(depth, base int, n *planNode) (any, error) {
	// A decoder that recycles maps assigns straight into one (most
	// objects below a resource have a few members); else the members
	// collect on kvs, and the map is made with its final size.
	var direct map[string]any
	if d.track && (depth > 0 || n != nil) && len(d.free) > 0 {
		direct = d.newMap(0)
	}
	cursor := 0 // for skipMemberFrom
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("expected a member name")
		}
		var (
			k   string
			err error
		)
		if i := plainEnd(d.data, d.pos+1); i >= 0 {
			k, d.pos = d.src[d.pos+1:i], i+1
		} else if k, err = d.str(); err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected ':' after a member name")
		}
		d.pos++
		d.skipSpace()
		var v any
		if n == nil {
			v, err = d.value(depth + 1)
		} else if kid := n.kid(k); kid != nil {
			v, err = d.valueIn(depth+1, kid)
		} else {
			// Not named by the plan: kept as the input's bytes.
			start := d.pos
			var canon bool
			if canon, err = d.skipMemberFrom(k, n.typ, depth+1, &cursor); err == nil {
				v = d.newRaw(start, d.pos, canon)
			}
		}
		if err != nil {
			return nil, err
		}
		if direct != nil {
			direct[k] = v
		} else {
			d.kvs = append(d.kvs, jsonMember{k, v})
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in an object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			if direct != nil {
				return direct, nil
			}
			m := d.newMap(len(d.kvs) - base)
			for _, e := range d.kvs[base:] {
				m[e.k] = e.v
			}
			return m, nil
		default:
			return nil, d.errorf("expected ',' or '}' in an object")
		}
	}
}

// array decodes an array; n, when set, is the plan node of its items.
func (d *jsonDecoder) array(depth int, n *planNode) (any, error) {
	d.pos++ // [
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return []any{}, nil
	}
	base := len(d.vals)
	a, err := d.items(depth, base, n)
	clear(d.vals[base:])
	d.vals = d.vals[:base]
	return a, err
}

func (d *jsonDecoder) items(depth, base int, n *planNode) (any, error) {
	for {
		d.skipSpace()
		var v any
		var err error
		if n == nil {
			v, err = d.value(depth + 1)
		} else {
			v, err = d.valueIn(depth+1, n)
		}
		if err != nil {
			return nil, err
		}
		d.vals = append(d.vals, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in an array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return append(make([]any, 0, len(d.vals)-base), d.vals[base:]...), nil
		default:
			return nil, d.errorf("expected ',' or ']' in an array")
		}
	}
}

func (d *jsonDecoder) str() (string, error) {
	d.pos++ // opening quote
	start := d.pos
	// Plain ASCII text, the common case, in one pass.
	if i := scanPlain(d.data, start); i < len(d.data) && d.data[i] == '"' {
		d.pos = i + 1
		return d.src[start:i], nil
	}
	q := bytes.IndexByte(d.data[start:], '"')
	if q < 0 {
		return "", d.errorf("unterminated string")
	}
	seg := d.data[start : start+q]
	if bytes.IndexByte(seg, '\\') >= 0 {
		return d.strSlow(start)
	}
	ascii := true
	for i, c := range seg {
		if c < 0x20 {
			d.pos = start + i
			return "", d.errorf("control character in a string")
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	d.pos = start + q + 1
	if s := d.src[start : start+q]; ascii || utf8.ValidString(s) {
		return s, nil
	}
	return string(toValidUTF8(nil, seg)), nil
}

func (d *jsonDecoder) strSlow(start int) (string, error) {
	b := append(d.buf[:0], d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			d.buf = b
			if utf8.Valid(b) {
				return string(b), nil
			}
			return string(toValidUTF8(nil, b)), nil
		case c < 0x20:
			return "", d.errorf("control character in a string")
		case c != '\\':
			b = append(b, c)
			d.pos++
			continue
		}
		d.pos++ // backslash
		if d.pos >= len(d.data) {
			break
		}
		e := d.data[d.pos]
		d.pos++
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
					save := d.pos
					d.pos += 2
					if x, ok := d.hex4(); ok {
						r2 = x
					} else {
						d.pos = save
					}
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
				} else {
					if r2 >= 0 {
						d.pos -= 6 // the second escape is read on its own
					}
					r = utf8.RuneError
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", d.errorf("invalid escape \\%c", e)
		}
	}
	return "", d.errorf("unterminated string")
}

func (d *jsonDecoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}

func toValidUTF8(dst, s []byte) []byte {
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[:n]...)
		}
		s = s[n:]
	}
	return dst
}

func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	if err := d.skipNumber(); err != nil {
		return nil, err
	}
	return json.Number(d.src[start:d.pos]), nil
}

// errUnencodable reports a value the encoder does not know.
var errUnencodable = errors.New("value cannot be encoded as JSON")

// encodeResource appends a resource as compact JSON with members in the order
// of the FHIR definitions (resourceType first, then id, meta, ...; a
// primitive's "_name" right after it; an extension's url first; members the
// model does not know last, sorted), so canonical output is stable and reads
// like the specification. With prune, empty strings, nulls, empty arrays and
// objects and extensions without a value are left out as they are met (see
// the prune transform), which costs nothing beyond the encoding itself.
func encodeResource(dst []byte, m *model.Model, res map[string]any, prune bool) ([]byte, error) {
	return encodeResourceRaw(dst, m, res, prune, nil, false)
}

// encodeResourceRaw is encodeResource for a resource decodeResource read
// with dec: the rawValues in it are copied from dec's input when copy is
// set and they are in encoder form, else decoded and encoded.
func encodeResourceRaw(dst []byte, m *model.Model, res map[string]any, prune bool, dec *jsonDecoder, copy bool) ([]byte, error) {
	e := encoder{m: m, prune: prune, dec: dec, copyRaw: copy}
	var t *model.Type
	if dec != nil && dec.topOrdered && dec.data != nil {
		e.root, e.top = true, dec.top
		if dec.top[0].clean {
			// resourceType as decodeResource read it (see markClean).
			t, e.rootType = dec.rt, dec.rt
		}
	}
	if t == nil {
		t = e.typeOf(res)
	}
	// (Only the resource's own encoding may use e.top: see object.)
	dst, _, err := e.value(dst, res, t, false, false)
	return dst, err
}

type encoder struct {
	m     *model.Model
	prune bool
	// dec decoded the tree; its input holds the rawValues' bytes.
	dec     *jsonDecoder
	copyRaw bool
	// root says the first object encoded is the resource decodeResource
	// read with its top-level members in encoder order, top those members;
	// rootType is its type when known to be the one decodeResource found.
	root     bool
	top      []topKey
	rootType *model.Type
}

// encodedValue stands in a tree for an object whose encoding is known
// (the profile tag, the same in every resource): the encoder writes enc
// when it writes the object as an element of type typ, else encodes v.
type encodedValue struct {
	v     map[string]any // never changed
	typ   *model.Type
	enc   [2][]byte // without and with pruning
	empty [2]bool
	list  any // a list ([]any) holding just this value
}

func newEncodedValue(m *model.Model, v map[string]any, t *model.Type) (*encodedValue, error) {
	x := &encodedValue{v: v, typ: t}
	x.list = []any{x} // boxed once
	for i, prune := range [2]bool{false, true} {
		e := encoder{m: m, prune: prune}
		b, empty, err := e.object(nil, v, t, false)
		if err != nil {
			return nil, err
		}
		x.enc[i], x.empty[i] = b, empty
	}
	return x, nil
}

// typeOf is resourceTypeOf, which knows the type of the resource the
// decoder read without a look-up.
func (e *encoder) typeOf(obj map[string]any) *model.Type {
	if e.dec != nil && e.dec.rt != nil {
		if rt, ok := obj["resourceType"].(string); ok && rt == e.dec.rt.Name() {
			return e.dec.rt
		}
	}
	return resourceTypeOf(e.m, obj)
}

func resourceTypeOf(m *model.Model, obj map[string]any) *model.Type {
	if rt, ok := obj["resourceType"].(string); ok {
		if t := m.Type(rt); t != nil && t.Kind() == model.KindResource {
			return t
		}
	}
	return nil
}

const unknownChild = 1 << 20

// value appends v and reports whether it was empty (and so, when pruning,
// must be left out by the caller). aligned says v is an item of an array
// that lines up with a "_name" array; ext that v is an item of an
// extension list.
func (e *encoder) value(dst []byte, v any, t *model.Type, aligned, ext bool) ([]byte, bool, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), true, nil
	case bool:
		return strconv.AppendBool(dst, x), false, nil
	case string:
		return appendString(dst, x), x == "", nil
	case json.Number:
		if !validNumber(string(x)) {
			return nil, false, fmt.Errorf("%w: number %q", errUnencodable, string(x))
		}
		return append(dst, x...), false, nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), false, nil
	case int64:
		return strconv.AppendInt(dst, x, 10), false, nil
	case float64:
		return strconv.AppendFloat(dst, x, 'g', -1, 64), false, nil
	case []any:
		return e.array(dst, x, t, aligned, ext)
	case map[string]any:
		return e.object(dst, x, t, ext)
	case *encodedValue:
		if t == x.typ {
			i := 0
			if e.prune {
				i = 1
			}
			return append(dst, x.enc[i]...), x.empty[i], nil
		}
		return e.object(dst, x.v, t, ext)
	case *rawValue:
		if e.dec == nil {
			break
		}
		if x.tag {
			// In encoder form and copied (tagMeta sees to that).
			return e.dec.appendTagged(dst, x), false, nil
		}
		if x.canon && e.copyRaw {
			// Never empty: a value with something to prune is not canon.
			return append(dst, e.dec.data[x.start:x.end]...), false, nil
		}
		v, err := e.dec.decodeRaw(x)
		if err != nil {
			return nil, false, err
		}
		return e.value(dst, v, t, aligned, ext)
	}
	return nil, false, fmt.Errorf("%w: %T", errUnencodable, v)
}

func (e *encoder) array(dst []byte, arr []any, t *model.Type, aligned, ext bool) ([]byte, bool, error) {
	dst = append(dst, '[')
	n, nonEmpty := 0, 0
	for _, x := range arr {
		mark := len(dst)
		if n > 0 {
			dst = append(dst, ',')
		}
		var (
			empty bool
			err   error
		)
		if dst, empty, err = e.value(dst, x, t, false, ext); err != nil {
			return nil, false, err
		}
		if e.prune && empty {
			if !aligned {
				dst = dst[:mark]
				continue
			}
			// Keep the position, as null.
			dst = dst[:mark]
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, "null"...)
			n++
			continue
		}
		n++
		if !empty {
			nonEmpty++
		}
	}
	return append(dst, ']'), nonEmpty == 0, nil
}

// objKey orders one member: rank is 2×(element index) (+1 for "_name");
// idx points into the member arrays. It holds no pointers, so sorting it
// needs no write barriers.
type objKey struct {
	rank int32
	idx  int32
}

func (e *encoder) object(dst []byte, obj map[string]any, t *model.Type, ext bool) ([]byte, bool, error) {
	// root: obj is the resource decodeResource read (the first object
	// encoded: encodeResourceRaw starts with it), whose members no rule
	// reads are in e.top only.
	root := e.root
	e.root = false
	if root && e.rootType != nil {
		t = e.rootType
	} else if t != nil && t.Kind() == model.KindResource {
		// A contained or entry resource names its own type.
		if rt := e.typeOf(obj); rt != nil {
			t = rt
		}
	} else if t == nil {
		t = e.typeOf(obj)
	}
	var (
		nameBuf [16]string
		valBuf  [16]any
		typBuf  [16]*model.Type
		keyBuf  [16]objKey
	)
	names, vals, types, keys := nameBuf[:0], valBuf[:0], typBuf[:0], keyBuf[:0]
	isExtension := t != nil && t.Name() == "Extension"
	underscore := false
	ordered := false
	if root {
		// The resource decodeResource read, its members in encoder order
		// (those no rule reads only in e.top). When the map still holds
		// the others, and nothing more, their ranks and types are known
		// and the order is the input's.
		ordered = t == e.dec.rt
		inMap := 0
		for i := range e.top {
			m := &e.top[i]
			if m.raw == nil {
				// (A clean member is in the map: see markClean.)
				if !m.clean {
					if _, ok := obj[m.key]; !ok {
						ordered = false
						break
					}
				}
				inMap++
			}
			if len(m.key) > 1 && m.key[0] == '_' {
				underscore = true
			}
		}
		if ordered && inMap != len(obj) {
			ordered = false // a rule added a member
		}
		if ordered && !underscore {
			// Written as they come, without collecting them first.
			dst = append(dst, '{')
			w := objState{t: t}
			for i := range e.top {
				m := &e.top[i]
				v := any(m.raw)
				if m.raw == nil {
					if v = m.val; !m.clean {
						v = obj[m.key]
					}
				}
				var err error
				if dst, err = e.member(dst, &w, m.key, m.rank, v, m.typ, false); err != nil {
					return nil, false, err
				}
			}
			return w.end(dst, ext)
		}
		underscore = false
		for i := range e.top {
			if !ordered {
				break
			}
			m := &e.top[i]
			v := any(m.raw)
			if m.raw == nil {
				if v = m.val; !m.clean {
					v = obj[m.key]
				}
			}
			keys = append(keys, objKey{rank: m.rank, idx: int32(len(names))})
			names = append(names, m.key)
			vals = append(vals, v)
			types = append(types, m.typ)
			if len(m.key) > 1 && m.key[0] == '_' {
				underscore = true
			}
		}
		if !ordered {
			// The members no rule read join the others below (no rule
			// can have written them: they are not in the plan).
			clear(vals)
			names, vals, types, keys, underscore = names[:0], vals[:0], types[:0], keys[:0], false
			for _, m := range e.top {
				if m.raw == nil {
					continue
				}
				if t != e.dec.rt {
					// A rule changed the resource type: the ranks are
					// another type's (rare; the map takes them).
					obj[m.key] = m.raw
					continue
				}
				keys = append(keys, objKey{rank: m.rank, idx: int32(len(names))})
				names = append(names, m.key)
				vals = append(vals, m.raw)
				types = append(types, m.typ)
				if len(m.key) > 1 && m.key[0] == '_' {
					underscore = true
				}
			}
		}
	}
	for k, v := range obj {
		if ordered {
			break
		}
		rank := int32(unknownChild)
		var ct *model.Type
		name := k
		under := int32(0)
		if len(k) > 1 && k[0] == '_' {
			name, under, underscore = k[1:], 1, true
		}
		if k == "resourceType" || (k == "url" && isExtension) {
			rank = -2
		} else if t != nil {
			if c, choice, found := t.Lookup(name); found {
				rank = int32(2*c) + under
				if under == 0 {
					ct = t.ChildType(c, max(choice, 0))
				}
			}
		}
		keys = append(keys, objKey{rank: rank, idx: int32(len(names))})
		names = append(names, k)
		vals = append(vals, v)
		types = append(types, ct)
	}
	if ordered {
		// In order already.
	} else if len(keys) <= 16 {
		// Insertion sort: few members, often nearly in order already.
		// Members the model does not know (equal ranks) by name, "_name"
		// after "name".
		for i := 1; i < len(keys); i++ {
			k := keys[i]
			j := i
			for ; j > 0; j-- {
				p := keys[j-1]
				if p.rank < k.rank || p.rank == k.rank && compareMemberNames(names[p.idx], names[k.idx]) < 0 {
					break
				}
				keys[j] = p
			}
			keys[j] = k
		}
	} else {
		slices.SortFunc(keys, func(a, b objKey) int {
			if a.rank != b.rank {
				return int(a.rank - b.rank)
			}
			return compareMemberNames(names[a.idx], names[b.idx])
		})
	}
	dst = append(dst, '{')
	w := objState{t: t}
	for _, k := range keys {
		name := names[k.idx]
		aligned := false
		if underscore && name != "" {
			var sibling any
			switch {
			case root:
				// Members no rule reads are not in obj.
				sibling = siblingOf(names, vals, name)
			case name[0] == '_':
				sibling = obj[name[1:]]
			default:
				sibling = obj["_"+name]
			}
			switch x := sibling.(type) {
			case []any:
				aligned = true
			case *rawValue:
				aligned = x.array
			}
		}
		var err error
		if dst, err = e.member(dst, &w, name, k.rank, vals[k.idx], types[k.idx], aligned); err != nil {
			return nil, false, err
		}
	}
	return w.end(dst, ext)
}

// objState is what object learns of an object's members as it writes
// them (see member).
type objState struct {
	t          *model.Type // the object's type
	n, content int         // members written; of those, ones with content other than url and id
	// lostRequired says pruning removed an element the object requires.
	lostRequired bool
}

// member appends a member of an object of type w.t (after a comma when
// one was written before it): its name, of the given rank, and its value
// v of type typ. A value pruning leaves out is not written.
func (e *encoder) member(dst []byte, w *objState, name string, rank int32, v any, typ *model.Type, aligned bool) ([]byte, error) {
	mark := len(dst)
	if w.n > 0 {
		dst = append(dst, ',')
	}
	if rank < unknownChild {
		// An element name of the model (or resourceType, url): plain.
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	} else {
		dst = appendString(dst, name)
		dst = append(dst, ':')
	}
	childExt := name == "extension" || name == "modifierExtension"
	dst, empty, err := e.value(dst, v, typ, aligned, childExt)
	if err != nil {
		return nil, err
	}
	if e.prune && empty {
		dst = dst[:mark]
		if w.t != nil && rank >= 0 && rank%2 == 0 && rank < unknownChild && w.t.Children()[rank/2].Min > 0 {
			w.lostRequired = true
		}
		return dst, nil
	}
	w.n++
	if !empty && name != "url" && name != "id" {
		w.content++
	}
	return dst, nil
}

// end closes the object and reports whether it was empty (and so, when
// pruning, must be left out by the caller).
func (w *objState) end(dst []byte, ext bool) ([]byte, bool, error) {
	dst = append(dst, '}')
	if ext {
		// An extension with nothing but its url (and id) says nothing.
		return dst, w.content == 0, nil
	}
	// An element whose required part was empty goes too (a narrative
	// without its div); a resource itself stays.
	if w.lostRequired && (w.t == nil || w.t.Kind() != model.KindResource) {
		return dst, true, nil
	}
	return dst, w.n == 0, nil
}

// siblingOf returns the value of the "_name" member of name, or of the
// name member of "_name", among names (nil: none).
func siblingOf(names []string, vals []any, name string) any {
	for i, n := range names {
		if name[0] == '_' && n == name[1:] || name[0] != '_' && len(n) == len(name)+1 && n[0] == '_' && n[1:] == name {
			return vals[i]
		}
	}
	return nil
}

// compareMemberNames orders names alphabetically, "_name" right after
// "name".
func compareMemberNames(a, b string) int {
	au, bu := strings.HasPrefix(a, "_"), strings.HasPrefix(b, "_")
	if c := strings.Compare(strings.TrimPrefix(a, "_"), strings.TrimPrefix(b, "_")); c != 0 {
		return c
	}
	switch {
	case au == bu:
		return 0
	case bu:
		return -1
	}
	return 1
}

// plainByte marks the bytes a JSON string may hold as they are: printable
// ASCII other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string: plain ASCII in one copy, the
// rest escaped by fhir.AppendJSONChars.
func appendString(dst []byte, s string) []byte {
	if scanPlainString(s, 0) < len(s) {
		dst = append(dst, '"')
		dst = fhir.AppendJSONChars(dst, s)
		return append(dst, '"')
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// validNumber reports whether s is a JSON number.
func validNumber(s string) bool {
	d := jsonDecoder{data: []byte(s), src: s}
	if s == "" {
		return false
	}
	if _, err := d.number(); err != nil {
		return false
	}
	return d.pos == len(s)
}
