package searchparam

import (
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// node is one element of a compiled path trie for one resource type.
type node struct {
	name     string
	poly     bool // name is the stem of a polymorphic element name[x]
	children []*node
	leaves   []leaf
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

// visitKey visits the member value at b[v] with every child of n matching key
// (an exact child and a polymorphic one may both match: valueString and
// value[x]), or skips it.
func (x *extractor) visitKey(n *node, key []byte, v int) (int, error) {
	end := -1
	for _, c := range n.children {
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
	x := extractor{b: body, out: make([]Entry, 0, min(64, 8+len(body)/128)), arena: make([]byte, 0, len(body)/2+64)}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, fmt.Errorf("searchparam: %s body is not a JSON object", resourceType)
	}
	typeOK := false
	_, err := objectFields(body, i, func(k []byte, v int) (int, error) {
		if string(k) == "resourceType" && body[v] == '"' {
			raw, _, end, err := rawStringAt(body, v)
			typeOK = string(raw) == resourceType
			return end, err
		}
		return x.visitKey(root, k, v)
	})
	if err != nil {
		return nil, fmt.Errorf("searchparam: %s body: %w", resourceType, err)
	}
	if !typeOK {
		return nil, fmt.Errorf("searchparam: body is not a %s (resourceType missing or different)", resourceType)
	}
	return dedupe(x.out), nil
}

type extractor struct {
	b     []byte
	out   []Entry
	arena []byte // backing store of entry strings; bytes once handed out are never written again
}

// alloc returns n fresh bytes from the arena. When the arena is full a new
// one is started: strings already made keep the old one alive.
func (x *extractor) alloc(n int) []byte {
	if cap(x.arena)-len(x.arena) < n {
		x.arena = make([]byte, 0, max(1024, n))
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

func (x *extractor) visit(n *node, i int) (int, error) {
	b := x.b
	if b[i] == '[' {
		return arrayElems(b, i, func(v int) (int, error) { return x.visit(n, v) })
	}
	end := -1
	if len(n.leaves) > 0 {
		e, err := skipValue(b, i)
		if err != nil {
			return 0, err
		}
		end = e
		for k := range n.leaves {
			if err := x.leaf(&n.leaves[k], b[i:end]); err != nil {
				return 0, err
			}
		}
	}
	if len(n.children) > 0 && b[i] == '{' {
		return objectFields(b, i, func(k []byte, v int) (int, error) {
			return x.visitKey(n, k, v)
		})
	}
	if end < 0 {
		return skipValue(b, i)
	}
	return end, nil
}

// leaf indexes one element value v (never an array) for one parameter.
func (x *extractor) leaf(lf *leaf, v []byte) error {
	if lf.filterKey != "" {
		raw, _, ok := fieldRaw(v, lf.filterKey)
		if !ok || string(raw) != lf.filterVal {
			return nil
		}
	}
	d := lf.def
	switch d.Type {
	case String:
		return x.stringLeaf(d, v)
	case Token:
		return x.tokenLeaf(d, v)
	case Reference:
		return x.referenceLeaf(d, v)
	case Date:
		return x.dateLeaf(d, v)
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

func (x *extractor) stringLeaf(d *Def, v []byte) error {
	switch v[0] {
	case '"':
		raw, esc, _, err := rawStringAt(v, 0)
		if err != nil {
			return err
		}
		return x.emitString(d, raw, esc)
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

func (x *extractor) tokenLeaf(d *Def, v []byte) error {
	switch v[0] {
	case '"':
		raw, esc, _, err := rawStringAt(v, 0)
		if err != nil {
			return err
		}
		return x.emitToken(d, nil, false, raw, esc)
	case 't', 'f':
		if string(v) == "true" || string(v) == "false" {
			return x.emitToken(d, nil, false, v, false)
		}
		return nil
	case '{':
	default:
		return nil
	}
	var system, code, value []byte
	var sysEsc, codeEsc, valueEsc bool
	sawCoding := false
	_, err := objectFields(v, 0, func(k []byte, i int) (int, error) {
		switch string(k) {
		case "coding":
			if v[i] != '[' {
				return skipValue(v, i)
			}
			sawCoding = true
			return arrayElems(v, i, func(j int) (int, error) {
				if v[j] != '{' {
					return skipValue(v, j)
				}
				var s, cd []byte
				var se, ce bool
				end, err := objectFields(v, j, func(k []byte, f int) (int, error) {
					if v[f] == '"' && (string(k) == "system" && s == nil || string(k) == "code" && cd == nil) {
						raw, esc, e, err := rawStringAt(v, f)
						if err != nil {
							return 0, err
						}
						if k[0] == 's' {
							s, se = raw, esc
						} else {
							cd, ce = raw, esc
						}
						return e, nil
					}
					return skipValue(v, f)
				})
				if err != nil {
					return 0, err
				}
				return end, x.emitToken(d, s, se, cd, ce)
			})
		case "system", "code", "value":
			if v[i] != '"' {
				return skipValue(v, i)
			}
			raw, esc, end, err := rawStringAt(v, i)
			if err != nil {
				return 0, err
			}
			switch string(k) {
			case "system":
				system, sysEsc = raw, esc
			case "code":
				code, codeEsc = raw, esc
			default:
				value, valueEsc = raw, esc
			}
			return end, nil
		}
		return skipValue(v, i)
	})
	if err != nil || sawCoding {
		return err
	}
	switch {
	case d.kind == kindContactPoint:
		return x.emitToken(d, nil, false, value, valueEsc)
	case len(code) > 0: // Coding
		return x.emitToken(d, system, sysEsc, code, codeEsc)
	case len(value) > 0: // Identifier
		return x.emitToken(d, system, sysEsc, value, valueEsc)
	}
	return nil
}

func (x *extractor) referenceLeaf(d *Def, v []byte) error {
	if v[0] != '{' {
		return nil
	}
	raw, esc, ok := fieldRaw(v, "reference")
	if !ok || len(raw) == 0 {
		return nil
	}
	ref, err := x.str(raw, esc)
	if err != nil {
		return err
	}
	typ, id, ok := SplitReference(ref)
	if !ok {
		return nil
	}
	if typ == "" {
		typ = fieldString(v, "type")
	}
	if len(d.Targets) > 0 && typ != "" && !contains(d.Targets, typ) {
		return nil
	}
	value := ref
	if len(ref) != len(typ)+1+len(id) || !strings.HasPrefix(ref, typ) || ref[len(typ)] != '/' {
		value = typ + "/" + id
	}
	x.out = append(x.out, Entry{Name: d.Name, Type: Reference, Value: value})
	return nil
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

func (x *extractor) dateLeaf(d *Def, v []byte) error {
	switch v[0] {
	case '"':
		raw, esc, _, err := rawStringAt(v, 0)
		if err != nil {
			return err
		}
		if lo, hi, ok := dateRangeRaw(raw, esc); ok {
			x.emitDate(d, lo, hi)
		}
	case '{':
		var start, end []byte
		var startEsc, endEsc bool
		_, err := objectFields(v, 0, func(k []byte, i int) (int, error) {
			switch string(k) {
			case "start", "end":
				if v[i] != '"' {
					return skipValue(v, i)
				}
				raw, esc, e, err := rawStringAt(v, i)
				if string(k) == "start" {
					start, startEsc = raw, esc
				} else {
					end, endEsc = raw, esc
				}
				return e, err
			case "event": // Timing
				if v[i] != '[' {
					return skipValue(v, i)
				}
				return arrayElems(v, i, func(j int) (int, error) {
					if v[j] != '"' {
						return skipValue(v, j)
					}
					raw, esc, e, err := rawStringAt(v, j)
					if err == nil {
						if lo, hi, ok := dateRangeRaw(raw, esc); ok {
							x.emitDate(d, lo, hi)
						}
					}
					return e, err
				})
			}
			return skipValue(v, i)
		})
		if err != nil {
			return err
		}
		if len(start) == 0 && len(end) == 0 {
			return nil
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
	}
	return nil
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
			out = append(out, *e) // len(out) <= i: never overwrites an entry still to be read
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
